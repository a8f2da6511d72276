"""The sites API: admins change a site's callback URL and team; bad input is a problem naming its field."""

from __future__ import annotations

import uuid

from sqlalchemy.ext.asyncio import AsyncEngine

from tests.conftest import RunningApi
from tests.integration.sites.conftest import create_site, seed


async def test_an_admin_changes_the_callback_and_team_and_bad_input_names_the_field(
    api: RunningApi, clean_db: AsyncEngine
) -> None:
    world = await seed(clean_db)
    async with api.client() as http:
        site = await create_site(http, world)
        path = f"/api/v1/sites/{site['id']}"

        changed = await http.patch(
            path, json={"callbackUrl": "https://shop.example/cb", "teamId": None}, headers=world.admin_headers
        )
        assert changed.status_code == 200
        assert (changed.json()["callbackUrl"], changed.json()["teamId"]) == ("https://shop.example/cb", None)
        assert (await http.get(path, headers=world.admin_headers)).json()["name"] == "Shop"  # left out: kept

        for body, field, status in (
            ({"callbackUrl": "ftp://shop.example/cb"}, "callbackUrl", 400),
            ({"teamId": str(uuid.uuid4())}, "teamId", 422),
            ({"name": ""}, "name", 400),
        ):
            refused = await http.patch(path, json=body, headers=world.admin_headers)
            assert refused.status_code == status, refused.text
            assert refused.headers["content-type"] == "application/problem+json"
            assert [e["field"] for e in refused.json()["errors"]] == [field], refused.text

        missing = await http.get(f"/api/v1/sites/{uuid.uuid4()}", headers=world.admin_headers)
        assert missing.status_code == 404
