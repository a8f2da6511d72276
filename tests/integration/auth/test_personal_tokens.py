"""Personal access tokens over REST (shown once, hashed at rest, scopes, expiry, last use) and admin networks."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from ipaddress import ip_network
from typing import Any

import httpx
import sqlalchemy as sa
from litestar import get
from litestar.di import NamedDependency
from sqlalchemy.ext.asyncio import AsyncEngine

from service.auth.principal import Principal, hash_token
from service.settings import Settings
from tests.conftest import run_api
from tests.factories import add_member, bearer, make_operator, make_team, personal_token


async def test_create_list_use_and_revoke(http: httpx.AsyncClient, clean_db: AsyncEngine) -> None:
    operator = await make_operator(clean_db, "Ada")
    owner = bearer(await personal_token(clean_db, operator))
    expires = (datetime.now(UTC) + timedelta(days=30)).replace(microsecond=0)

    created = await http.post(
        "/api/v1/me/tokens", json={"name": "ci", "scopes": ["read"], "expiresAt": expires.isoformat()}, headers=owner
    )

    assert created.status_code == 201
    body = created.json()
    secret = body.pop("token")
    assert secret.startswith("sbp_") and body["prefix"] == secret[:12]
    assert (body["name"], body["scopes"], body["lastUsedAt"]) == ("ci", ["read"], None)
    assert datetime.fromisoformat(body["expiresAt"]) == expires
    async with clean_db.connect() as conn:
        stored = (
            await conn.execute(sa.text("SELECT token_hash FROM api_token WHERE id = :id"), {"id": body["id"]})
        ).scalar_one()
    assert stored == hash_token(secret) and secret not in stored  # only the hash is kept

    assert (await http.get("/api/v1/me", headers=bearer(secret))).status_code == 200
    assert (await http.post("/api/v1/me/tokens", json={"name": "x"}, headers=bearer(secret))).status_code == 403

    listed = (await http.get("/api/v1/me/tokens", headers=owner)).json()["items"]
    mine = next(item for item in listed if item["id"] == body["id"])
    assert "token" not in mine  # never shown again
    assert mine["lastUsedAt"] is not None

    assert (await http.delete(f"/api/v1/me/tokens/{body['id']}", headers=owner)).status_code == 204
    assert (await http.get("/api/v1/me", headers=bearer(secret))).status_code == 401
    assert (await http.delete(f"/api/v1/me/tokens/{body['id']}", headers=owner)).status_code == 404
    assert body["id"] not in [
        item["id"] for item in (await http.get("/api/v1/me/tokens", headers=owner)).json()["items"]
    ]


async def test_someone_elses_token_cannot_be_revoked(http: httpx.AsyncClient, clean_db: AsyncEngine) -> None:
    ada, bob = await make_operator(clean_db, "Ada"), await make_operator(clean_db, "Bob")
    ada_secret = await personal_token(clean_db, ada)
    ada_token_id = (await http.get("/api/v1/me/tokens", headers=bearer(ada_secret))).json()["items"][0]["id"]

    response = await http.delete(
        f"/api/v1/me/tokens/{ada_token_id}", headers=bearer(await personal_token(clean_db, bob))
    )

    assert response.status_code == 404
    assert (await http.get("/api/v1/me", headers=bearer(ada_secret))).status_code == 200


async def test_admin_scope_is_for_admins_and_bad_input_names_the_field(
    http: httpx.AsyncClient, clean_db: AsyncEngine
) -> None:
    operator = bearer(await personal_token(clean_db, await make_operator(clean_db, "Ola")))
    admin = bearer(await personal_token(clean_db, await make_operator(clean_db, "Ada", is_admin=True)))

    refused = await http.post("/api/v1/me/tokens", json={"name": "x", "scopes": ["admin"]}, headers=operator)
    granted = await http.post("/api/v1/me/tokens", json={"name": "x", "scopes": ["admin"]}, headers=admin)
    bad_scope = await http.post("/api/v1/me/tokens", json={"name": "x", "scopes": ["root"]}, headers=operator)
    past = await http.post(
        "/api/v1/me/tokens", json={"name": "x", "expiresAt": "2020-01-01T00:00:00Z"}, headers=operator
    )

    assert refused.status_code == 403
    assert refused.json()["detail"] == "Only administrators may create tokens with the 'admin' scope"
    assert granted.status_code == 201
    assert (bad_scope.status_code, bad_scope.json()["errors"][0]["field"]) == (400, "scopes.0")
    assert (past.status_code, past.json()["errors"][0]["field"]) == (400, "expiresAt")


@get("/api/v1/test-admin-only", opt={"admin": True}, operation_id="testAdminOnly", sync_to_thread=False)
def admin_only(principal: NamedDependency[Principal]) -> dict[str, str]:
    return {"ok": str(principal.operator_id)}


async def test_admin_routes_only_answer_allowed_networks(settings: Settings, clean_db: AsyncEngine) -> None:
    admin = bearer(await personal_token(clean_db, await make_operator(clean_db, "Ada", is_admin=True)))
    outside = settings.model_copy(update={"admin_allowed_cidrs": [ip_network("10.0.0.0/8")]})
    inside = settings.model_copy(update={"admin_allowed_cidrs": [ip_network("10.0.0.0/8"), ip_network("127.0.0.1/32")]})

    async with run_api(outside, (admin_only,)) as api, api.client() as http:
        denied = await http.get("/api/v1/test-admin-only", headers=admin)
        me = await http.get("/api/v1/me", headers=admin)  # not an admin route: unaffected
    async with run_api(inside, (admin_only,)) as api, api.client() as http:
        allowed = await http.get("/api/v1/test-admin-only", headers=admin)

    assert denied.status_code == 403
    assert denied.json()["detail"] == "Administration is not allowed from this network"
    assert me.status_code == 200
    assert allowed.status_code == 200


NETWORK_REFUSED = "Administration is not allowed from this network"
PERIOD = "from=2026-01-01T00:00:00Z&to=2026-01-02T00:00:00Z"


async def test_every_admin_only_operation_answers_only_allowed_networks(
    settings: Settings, clean_db: AsyncEngine
) -> None:
    """An admin acting on a team they do not lead, or on other operators, is administration; a lead is not
    (also when the lead is an admin)."""
    ada = await make_operator(clean_db, "Ada", is_admin=True)
    lee = await make_operator(clean_db, "Lee")
    team = await make_team(clean_db, "support")
    max_ = await make_operator(clean_db, "Max", is_admin=True)
    await add_member(clean_db, team, lee, "lead")
    await add_member(clean_db, team, max_, "lead")
    admin = bearer(await personal_token(clean_db, ada))
    lead = bearer(await personal_token(clean_db, lee, ("read", "write")))
    outside = settings.model_copy(update={"admin_allowed_cidrs": [ip_network("10.0.0.0/8")]})
    inside = settings.model_copy(update={"admin_allowed_cidrs": [ip_network("10.0.0.0/8"), ip_network("127.0.0.1/32")]})
    calls = [
        ("GET", "/api/v1/operators", None),
        ("GET", f"/api/v1/operators/{lee}", None),
        ("PATCH", f"/api/v1/teams/{team}", {"welcomeMessage": "Hello"}),
        ("GET", f"/api/v1/teams/{team}/bridges", None),
        ("PATCH", f"/api/v1/teams/{team}/bridges", {}),
        ("GET", f"/api/v1/teams/{team}/webhooks", None),
        ("PUT", f"/api/v1/teams/{team}/rules", {"rules": []}),
        ("PATCH", f"/api/v1/teams/{team}/members/{lee}", {"role": "lead"}),
        ("POST", "/api/v1/me/tokens", {"name": "admin", "scopes": ["admin"]}),
        ("GET", f"/api/v1/analytics?teamId={team}&{PERIOD}", None),
        ("GET", f"/api/v1/analytics?{PERIOD}", None),
    ]
    pages = ["/app/teams", f"/app/teams/{team}", f"/app/teams/{team}/sections/bridges", "/app?tab=all"]
    lead_calls = [call for call in calls if "/teams/" in call[1] or "teamId" in call[1]]
    lead_calls += [("GET", page, None) for page in pages]

    async def answers(api_settings: Settings, headers: dict[str, str], todo: list[Any]) -> dict[str, Any]:
        async with run_api(api_settings) as api, api.client() as http:
            return {
                f"{method} {url}": await http.request(method, url, json=body, headers=headers)
                for method, url, body in todo
            }

    denied = await answers(outside, admin, calls)
    denied_pages = await answers(outside, admin, [("GET", page, None) for page in pages])
    allowed = await answers(inside, admin, calls + [("GET", page, None) for page in pages])
    lead_outside = await answers(outside, lead, lead_calls)
    admin_lead_outside = await answers(outside, bearer(await personal_token(clean_db, max_)), lead_calls)

    assert {
        call: (response.status_code, response.headers["content-type"], response.json().get("detail"))
        for call, response in denied.items()
    } == {call: (403, "application/problem+json", NETWORK_REFUSED) for call in denied}
    assert {
        call: (response.status_code, NETWORK_REFUSED in response.text) for call, response in denied_pages.items()
    } == {call: (403, True) for call in denied_pages}
    assert {call: response.status_code for call, response in allowed.items()} == {
        call: 201 if call.startswith("POST") else 200 for call in allowed
    }
    assert {call: response.status_code for call, response in lead_outside.items()} == {
        call: 200 for call in lead_outside
    }
    assert {call: response.status_code for call, response in admin_lead_outside.items()} == {
        call: 200 for call in admin_lead_outside
    }
