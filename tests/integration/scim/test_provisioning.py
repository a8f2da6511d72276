"""SCIM provisioning end to end: users usable without signing in, deactivation revoking everything, groups, errors."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from redis.asyncio import Redis
from sqlalchemy.ext.asyncio import AsyncEngine

from service.auth.principal import hash_token
from service.auth.sessions import create_session, session_key
from service.db.tables import oauth_grant_t, oauth_token_t
from service.settings import Settings
from tests.conftest import RunningApi, run_api
from tests.factories import add_member, bearer, make_operator, make_team, personal_token
from tests.support.routing import make_conversation

SCIM = "application/scim+json"
USER = "urn:ietf:params:scim:schemas:core:2.0:User"
GROUP = "urn:ietf:params:scim:schemas:core:2.0:Group"
PATCH_OP = "urn:ietf:params:scim:api:messages:2.0:PatchOp"
ERROR = "urn:ietf:params:scim:api:messages:2.0:Error"
APP = "switchboard-mobile"


@pytest.fixture
async def live(settings: Settings) -> AsyncIterator[RunningApi]:
    async with run_api(settings.model_copy(update={"native_client_ids": [APP]})) as running:
        yield running


@pytest.fixture
async def http(live: RunningApi) -> AsyncIterator[httpx.AsyncClient]:
    async with live.client() as client:
        yield client


@pytest.fixture
async def idp(live: RunningApi, clean_db: AsyncEngine) -> AsyncIterator[httpx.AsyncClient]:
    """The identity provider: an admin's token with only the ``scim`` scope, on ``/scim/v2``."""
    admin = await make_operator(clean_db, "Root", is_admin=True)
    token = await personal_token(clean_db, admin, ("scim",))
    async with httpx.AsyncClient(base_url=f"{live.url}/scim/v2", headers=bearer(token), timeout=10) as client:
        yield client


def base(settings: Settings) -> str:
    return f"{str(settings.public_url).rstrip('/')}/scim/v2"


def scim_error(response: httpx.Response) -> tuple[int, str, str | None]:
    """(status, the body's status, its scimType), after checking it is a SCIM Error."""
    body = response.json()
    assert response.headers["content-type"] == SCIM
    assert body["schemas"] == [ERROR] and body["detail"]
    return response.status_code, body["status"], body.get("scimType")


async def provision(idp: httpx.AsyncClient, user_name: str, **values: Any) -> dict[str, Any]:
    body = {"schemas": [USER], "userName": user_name, "emails": [{"value": user_name, "primary": True}], "active": True}
    body |= values
    response = await idp.post("/Users", json=body, headers={"Content-Type": SCIM})
    assert response.status_code == 201, response.text
    return response.json()  # type: ignore[no-any-return]


async def deactivate(idp: httpx.AsyncClient, user_id: str) -> httpx.Response:
    body = {"schemas": [PATCH_OP], "Operations": [{"op": "replace", "path": "active", "value": False}]}
    return await idp.patch(f"/Users/{user_id}", json=body)


async def native_sign_in(engine: AsyncEngine, operator_id: uuid.UUID) -> tuple[str, str]:
    """A native-app sign-in as /oauth/token leaves it: (access token, refresh token)."""
    access, refresh = f"sba_{uuid.uuid4().hex}", f"sbr_{uuid.uuid4().hex}"
    expires = datetime.now(UTC) + timedelta(hours=1)
    async with engine.begin() as conn:
        grant_id = await conn.scalar(
            sa.insert(oauth_grant_t)
            .values(operator_id=operator_id, client_id=APP, scopes=["read", "write"])
            .returning(oauth_grant_t.c.id)
        )
        await conn.execute(
            sa.insert(oauth_token_t).values(
                [
                    {"grant_id": grant_id, "kind": kind, "token_hash": hash_token(secret), "expires_at": expires}
                    for kind, secret in (("access", access), ("refresh", refresh))
                ]
            )
        )
    return access, refresh


async def test_a_provisioned_user_works_without_ever_signing_in(
    idp: httpx.AsyncClient, http: httpx.AsyncClient, clean_db: AsyncEngine, settings: Settings
) -> None:
    lead = await make_operator(clean_db, "Lena")
    team = await make_team(clean_db, "support")
    await add_member(clean_db, team, lead, "lead")
    lead_auth = bearer(await personal_token(clean_db, lead))

    user = await provision(idp, "nina@corp.example", displayName="Nina Simone", externalId="okta-17")

    assert (user["userName"], user["displayName"], user["externalId"], user["active"]) == (
        "nina@corp.example",
        "Nina Simone",
        "okta-17",
        True,
    )
    assert user["meta"]["location"] == f"{base(settings)}/Users/{user['id']}"
    added = await http.post(f"/api/v1/teams/{team}/members", json={"operatorId": user["id"]}, headers=lead_auth)
    assert (added.status_code, added.json()["displayName"], added.json()["email"]) == (
        201,
        "Nina Simone",
        "nina@corp.example",
    )
    async with clean_db.connect() as conn:
        subject = await conn.scalar(sa.text("SELECT subject FROM operator WHERE id = :id"), {"id": user["id"]})
    assert subject == "pending:nina@corp.example"  # their first sign-in takes this operator over by email
    fetched = (await idp.get(f"/Users/{user['id']}")).json()
    assert fetched["groups"] == [
        {
            "value": str(team),
            "display": "support",
            "$ref": f"{base(settings)}/Groups/{team}",
            "type": "direct",
        }
    ]


async def test_filters_and_paging(idp: httpx.AsyncClient, clean_db: AsyncEngine) -> None:
    await make_operator(clean_db, "Signed In", email="sso@corp.example")  # never provisioned: found by email
    ada = await provision(idp, "ada@corp.example", externalId="e-ada")
    bob = await provision(idp, "bob@corp.example", externalId="e-bob", active=False)

    async def names(query: str, **params: Any) -> tuple[int, list[str]]:
        body = (await idp.get("/Users", params={"filter": query, **params} if query else params)).json()
        return body["totalResults"], [resource["userName"] for resource in body["Resources"]]

    assert await names('userName eq "ADA@corp.example"') == (1, ["ada@corp.example"])
    assert await names('externalId eq "e-bob"') == (1, ["bob@corp.example"])
    assert await names("active eq false") == (1, ["bob@corp.example"])
    assert await names('userName eq "sso@corp.example"') == (1, ["sso@corp.example"])
    assert await names('userName sw "b" or externalId eq "e-ada"') == (2, ["ada@corp.example", "bob@corp.example"])
    # By creation: the IdP's own admin, the signed-in operator, then the provisioned ones.
    assert await names("", startIndex=3, count=1) == (4, ["ada@corp.example"])
    assert await names("", count=0) == (4, [])
    listed = (await idp.get("/Users", params={"startIndex": 3, "count": 5})).json()
    assert (listed["startIndex"], listed["itemsPerPage"]) == (3, 2)
    assert {ada["id"], bob["id"]} <= {resource["id"] for resource in (await idp.get("/Users")).json()["Resources"]}


async def test_bad_input_answers_the_exact_scim_error(idp: httpx.AsyncClient) -> None:
    await provision(idp, "ada@corp.example")

    malformed = await idp.get("/Users", params={"filter": 'userName eq "ada'})
    unknown_in_filter = await idp.get("/Users", params={"filter": 'shoeSize eq "42"'})
    unknown_attribute = await idp.post("/Users", json={"schemas": [USER], "userName": "x@corp.example", "shoeSize": 42})
    duplicate = await idp.post("/Users", json={"schemas": [USER], "userName": "ADA@corp.example"})
    bad_value = await idp.post("/Users", json={"schemas": [USER], "userName": "y@corp.example", "active": "maybe"})
    not_json = await idp.post("/Users", content=b"{", headers={"Content-Type": SCIM})
    bad_count = await idp.get("/Users", params={"count": "many"})
    missing = await idp.get(f"/Users/{uuid.uuid4()}")
    not_an_id = await idp.get("/Users/not-an-id")
    no_such_endpoint = await idp.get("/Devices")

    assert scim_error(malformed) == (400, "400", "invalidFilter")
    assert scim_error(unknown_in_filter) == (400, "400", "invalidFilter")
    assert "shoeSize" in unknown_in_filter.json()["detail"]
    assert scim_error(unknown_attribute) == (400, "400", "invalidSyntax")
    assert "shoeSize" in unknown_attribute.json()["detail"]
    assert scim_error(duplicate) == (409, "409", "uniqueness")
    assert duplicate.json()["detail"] == "userName: 'ADA@corp.example' is already taken"
    assert scim_error(bad_value) == (400, "400", "invalidValue")
    assert "active" in bad_value.json()["detail"]
    assert scim_error(not_json) == (400, "400", "invalidSyntax")
    assert scim_error(bad_count) == (400, "400", "invalidValue")
    assert bad_count.json()["detail"] == "count: must be an integer"
    assert scim_error(missing)[:2] == (404, "404")
    assert scim_error(not_an_id)[:2] == (404, "404")
    assert scim_error(no_such_endpoint)[:2] == (404, "404")


async def test_who_may_provision(live: RunningApi, clean_db: AsyncEngine) -> None:
    admin = await make_operator(clean_db, "Root", is_admin=True)
    operator = await make_operator(clean_db, "Olga")
    scim_token = await personal_token(clean_db, admin, ("scim",))
    callers = {
        "none": {},
        "wrong token": bearer("sbp_" + "x" * 43),
        "not bearer": {"Authorization": f"Basic {scim_token}"},
        "operator's token": bearer(await personal_token(clean_db, operator)),
        "admin's token without scim": bearer(await personal_token(clean_db, admin)),
        "scim token": bearer(scim_token),
    }
    async with live.client() as http:
        answers = {}
        for name, headers in callers.items():
            response = await http.get("/scim/v2/Users", headers=headers)
            answers[name] = response.status_code if response.status_code == 200 else scim_error(response)[:2]
        unauthorized = await http.get("/scim/v2/ServiceProviderConfig")
        # A scim token of an admin who is demoted stops provisioning at once.
        async with clean_db.begin() as conn:
            await conn.execute(sa.text("UPDATE operator SET is_admin = false WHERE id = :id"), {"id": admin})
        demoted = await http.get("/scim/v2/Users", headers=bearer(scim_token))
        # An operator cannot make themselves a scim token.
        refused = await http.post(
            "/api/v1/me/tokens", json={"name": "idp", "scopes": ["scim"]}, headers=callers["operator's token"]
        )

    assert answers == {
        "none": (401, "401"),
        "wrong token": (401, "401"),
        "not bearer": (401, "401"),
        "operator's token": (403, "403"),
        "admin's token without scim": (403, "403"),
        "scim token": 200,
    }
    assert unauthorized.headers["www-authenticate"] == 'Bearer realm="switchboard"'
    assert scim_error(demoted)[:2] == (403, "403")
    assert (refused.status_code, refused.json()["detail"]) == (
        403,
        "Only administrators may create tokens with the 'scim' scope",
    )


async def test_deactivation_revokes_every_credential_and_hands_conversations_back(
    idp: httpx.AsyncClient, http: httpx.AsyncClient, clean_db: AsyncEngine, settings: Settings, redis: Redis
) -> None:
    team = await make_team(clean_db, "support", routing_policy="round_robin")
    user = await provision(idp, "ada@corp.example", displayName="Ada")
    ada = uuid.UUID(user["id"])
    bea = await make_operator(clean_db, "Bea", status="online")
    for member in (ada, bea):
        await add_member(clean_db, team, member)
    async with clean_db.begin() as conn:
        await conn.execute(
            sa.text("UPDATE operator SET status = 'online', open_conversations = 1 WHERE id = :id"), {"id": ada}
        )
    conversation, _ = await make_conversation(clean_db, team, status="assigned", assignee_id=ada)
    async with clean_db.begin() as conn:
        await conn.execute(
            sa.text(
                "INSERT INTO assignment (conversation_id, operator_id, team_id, reason) VALUES (:c, :o, :t, 'routed')"
            ),
            {"c": conversation, "o": ada, "t": team},
        )
    pat = bearer(await personal_token(clean_db, ada))
    cookie, _ = await create_session(redis, settings, ada, id_token="")
    other_cookie, _ = await create_session(redis, settings, ada, id_token="")
    access, refresh = await native_sign_in(clean_db, ada)
    assert (await http.get("/api/v1/me", headers=pat)).status_code == 200
    phone = {"platform": "apns", "token": "a" * 64, "appId": "com.example.switchboard"}
    assert (await http.post("/api/v1/me/devices", json=phone, headers=pat)).status_code == 201
    assert (await http.get("/api/v1/me", headers={"Cookie": f"sb_session={cookie}"})).status_code == 200

    response = await deactivate(idp, user["id"])
    refused_by = time.monotonic() + 1.0

    assert (response.status_code, response.json()["active"]) == (200, False)
    while (status := (await http.get("/api/v1/me", headers=pat)).status_code) != 401:
        assert time.monotonic() < refused_by, f"the PAT still answers {status}"
        await asyncio.sleep(0.05)
    for session in (cookie, other_cookie):
        assert await redis.exists(f"{settings.redis_prefix}:session:{session_key(session)}") == 0
    assert (await http.get("/api/v1/me", headers={"Cookie": f"sb_session={cookie}"})).status_code == 401
    app_call = await http.get("/api/v1/me", headers=bearer(access))
    assert (app_call.status_code, app_call.json()["detail"]) == (
        401,
        "The bearer token was refused: revoked: the operator was deactivated",
    )
    refreshed = await http.post(
        "/oauth/token", data={"grant_type": "refresh_token", "refresh_token": refresh, "client_id": APP}
    )
    assert (refreshed.status_code, refreshed.json()["error"]) == (400, "invalid_grant")
    async with clean_db.connect() as conn:  # no push reaches the deactivated operator's phone
        assert await conn.scalar(sa.text("SELECT count(*) FROM push_device")) == 0
    async with clean_db.connect() as conn:
        held = (
            await conn.execute(
                sa.text("SELECT status, assignee_id FROM conversation WHERE id = :id"), {"id": conversation}
            )
        ).one()
        counts = (
            await conn.execute(
                sa.text(
                    "SELECT (SELECT count(*) FROM api_token WHERE operator_id = :id AND revoked_at IS NULL),"
                    " (SELECT count(*) FROM oauth_grant WHERE operator_id = :id AND revoked_reason = 'deactivated'),"
                    " (SELECT status FROM operator WHERE id = :id)"
                ),
                {"id": ada},
            )
        ).one()
    # The team's routing gave the conversation to the other online member at once.
    assert (held.status, held.assignee_id) == ("assigned", bea)
    async with clean_db.connect() as conn:
        history = (
            await conn.execute(
                sa.text(
                    "SELECT operator_id, reason, end_reason FROM assignment WHERE conversation_id = :c ORDER BY id"
                ),
                {"c": conversation},
            )
        ).all()
    assert [tuple(row) for row in history] == [(ada, "routed", "operator_deactivated"), (bea, "routed", None)]
    assert tuple(counts) == (0, 1, "offline")
    fetched = (await idp.get(f"/Users/{user['id']}")).json()
    assert fetched["active"] is False


async def test_delete_deactivates_and_unlinks(
    idp: httpx.AsyncClient, http: httpx.AsyncClient, clean_db: AsyncEngine
) -> None:
    user = await provision(idp, "ada@corp.example")
    pat = bearer(await personal_token(clean_db, uuid.UUID(user["id"])))

    deleted = await idp.delete(f"/Users/{user['id']}")

    assert deleted.status_code == 204
    assert (await http.get("/api/v1/me", headers=pat)).status_code == 401
    assert scim_error(await idp.get(f"/Users/{user['id']}"))[:2] == (404, "404")
    async with clean_db.connect() as conn:
        row = (
            await conn.execute(
                sa.text("SELECT deactivated_at IS NOT NULL AS off, scim, scim_user_name FROM operator WHERE id = :id"),
                {"id": user["id"]},
            )
        ).one()
    assert tuple(row) == (True, None, None)
    # The userName is free again: the IdP may provision the person anew.
    assert (await provision(idp, "ada@corp.example"))["id"] != user["id"]


async def test_groups_are_teams_and_members_are_memberships(
    idp: httpx.AsyncClient, clean_db: AsyncEngine, settings: Settings
) -> None:
    ada = await provision(idp, "ada@corp.example", displayName="Ada")
    bob = await provision(idp, "bob@corp.example", displayName="Bob")
    existing = await make_team(clean_db, "billing")
    lead = await make_operator(clean_db, "Lena")
    await add_member(clean_db, existing, lead, "lead")

    created = await idp.post(
        "/Groups",
        json={"schemas": [GROUP], "displayName": "support", "externalId": "g-1", "members": [{"value": ada["id"]}]},
    )
    group = created.json()
    patched = await idp.patch(
        f"/Groups/{group['id']}",
        json={
            "schemas": [PATCH_OP],
            "Operations": [
                {"op": "add", "path": "members", "value": [{"value": bob["id"]}]},
                {"op": "remove", "path": f'members[value eq "{ada["id"]}"]'},
            ],
        },
    )
    billing = await idp.get("/Groups", params={"filter": 'displayName eq "billing"'})
    joined = await idp.patch(
        f"/Groups/{existing}",
        json={"schemas": [PATCH_OP], "Operations": [{"op": "add", "path": "members", "value": [{"value": ada["id"]}]}]},
    )
    duplicate = await idp.post("/Groups", json={"schemas": [GROUP], "displayName": "billing"})
    stranger = await idp.patch(
        f"/Groups/{group['id']}",
        json={"schemas": [PATCH_OP], "Operations": [{"op": "add", "path": "members", "value": [{"value": "nobody"}]}]},
    )

    assert (created.status_code, group["displayName"], group["externalId"]) == (201, "support", "g-1")
    assert [member["value"] for member in group["members"]] == [ada["id"]]
    assert patched.status_code == 200
    assert [(member["value"], member["display"]) for member in patched.json()["members"]] == [(bob["id"], "Bob")]
    assert billing.json()["Resources"][0]["members"] == [
        {"value": str(lead), "display": "Lena", "$ref": f"{base(settings)}/Users/{lead}", "type": "User"}
    ]
    async with clean_db.connect() as conn:
        roles = dict(
            (
                await conn.execute(
                    sa.text("SELECT operator_id, role FROM team_member WHERE team_id = :t"), {"t": existing}
                )
            ).all()
        )
    assert joined.status_code == 200
    assert roles == {lead: "lead", uuid.UUID(ada["id"]): "operator"}  # the lead keeps their role
    assert scim_error(duplicate) == (409, "409", "uniqueness")
    assert duplicate.json()["detail"] == "displayName: A team with this name already exists"
    assert scim_error(stranger) == (400, "400", "invalidValue")
    assert (await idp.delete(f"/Groups/{group['id']}")).status_code == 204
    assert scim_error(await idp.get(f"/Groups/{group['id']}"))[:2] == (404, "404")


async def test_the_tokens_owner_cannot_deactivate_themselves(idp: httpx.AsyncClient, clean_db: AsyncEngine) -> None:
    root = (await idp.get("/Users", params={"filter": 'displayName eq "Root"'})).json()["Resources"][0]

    refused = await deactivate(idp, root["id"])

    assert scim_error(refused) == (400, "400", "invalidValue")
    assert refused.json()["detail"] == "active: You cannot deactivate yourself"
    assert (await idp.get(f"/Users/{root['id']}")).json()["active"] is True
