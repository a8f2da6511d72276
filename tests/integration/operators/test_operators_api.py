"""Operator administration over HTTP: admins list, read, rename, grant admin, deactivate; nobody else may."""

from __future__ import annotations

import uuid

import httpx
from sqlalchemy.ext.asyncio import AsyncEngine

from service.db.transactions import in_transaction
from service.routing import placement
from tests.factories import bearer, make_team, personal_token
from tests.integration.teams.test_teams_api import errors, person
from tests.support.routing import make_conversation, rows, state

API = "/api/v1/operators"


async def test_admins_list_operators_by_name_with_cursor_and_teams(
    http: httpx.AsyncClient, clean_db: AsyncEngine
) -> None:
    team_id = await make_team(clean_db, "Billing")
    _, admin_auth = await person(clean_db, "Ada", is_admin=True)
    bea, bea_auth = await person(clean_db, "Bea", team_id, "lead")
    await person(clean_db, "Cid")
    await person(clean_db, "Dan", deactivated_at=None)
    page = (await http.get(API, params={"limit": 2}, headers=admin_auth)).json()
    assert [o["displayName"] for o in page["items"]] == ["Ada", "Bea"]
    assert page["items"][1]["teams"] == [{"teamId": str(team_id), "role": "lead"}]
    assert page["items"][0]["teams"] == []
    page = (await http.get(API, params={"limit": 2, "cursor": page["nextCursor"]}, headers=admin_auth)).json()
    assert ([o["displayName"] for o in page["items"]], page["nextCursor"]) == (["Cid", "Dan"], None)
    response = await http.get(API, headers=bea_auth)
    assert (response.status_code, response.json()["detail"]) == (403, "Only administrators may do this")
    one = (await http.get(f"{API}/{bea}", headers=admin_auth)).json()
    assert (one["displayName"], one["isAdmin"], one["deactivatedAt"]) == ("Bea", False, None)
    assert (await http.get(f"{API}/{uuid.uuid4()}", headers=admin_auth)).status_code == 404


async def test_admin_scope_is_required_on_personal_tokens(http: httpx.AsyncClient, clean_db: AsyncEngine) -> None:
    admin, _ = await person(clean_db, "Ada", is_admin=True)
    read_only = bearer(await personal_token(clean_db, admin, scopes=("read",)))
    response = await http.get(API, headers=read_only)
    assert (response.status_code, response.json()["detail"]) == (403, "This token lacks the 'admin' scope")


async def test_rename_grant_deactivate_and_reactivate(http: httpx.AsyncClient, clean_db: AsyncEngine) -> None:
    admin, admin_auth = await person(clean_db, "Ada", is_admin=True)
    bea, bea_auth = await person(clean_db, "Bea", status="online")
    path = f"{API}/{bea}"

    response = await http.patch(path, json={"displayName": " Beatrice ", "isAdmin": True}, headers=admin_auth)
    assert (response.json()["displayName"], response.json()["isAdmin"]) == ("Beatrice", True)
    response = await http.patch(path, json={"deactivated": True}, headers=admin_auth)
    assert (response.json()["status"], response.json()["deactivatedAt"] is not None) == ("offline", True)
    assert (await http.get("/api/v1/me", headers=bea_auth)).status_code == 401
    assert [o["displayName"] for o in (await http.get(API, headers=admin_auth)).json()["items"]] == ["Ada"]
    listed = (await http.get(API, params={"includeDeactivated": "true"}, headers=admin_auth)).json()["items"]
    assert [o["displayName"] for o in listed] == ["Ada", "Beatrice"]
    response = await http.patch(path, json={"deactivated": False}, headers=admin_auth)
    assert response.json()["deactivatedAt"] is None
    # Deactivation revoked the token for good: reactivation brings the operator back, not their credentials.
    assert (await http.get("/api/v1/me", headers=bea_auth)).status_code == 401

    response = await http.patch(f"{API}/{admin}", json={"isAdmin": False}, headers=admin_auth)
    assert (response.status_code, errors(response)) == (422, ["isAdmin"])
    response = await http.patch(f"{API}/{admin}", json={"deactivated": True}, headers=admin_auth)
    assert (response.status_code, errors(response)) == (422, ["deactivated"])
    response = await http.patch(path, json={"displayName": ""}, headers=admin_auth)
    assert (response.status_code, errors(response)) == (400, ["displayName"])
    response = await http.patch(path, json={"isAdmin": None}, headers=admin_auth)
    assert (response.status_code, errors(response)) == (400, ["isAdmin"])
    assert (await http.patch(f"{API}/{uuid.uuid4()}", json={}, headers=admin_auth)).status_code == 404
    audit = await rows(clean_db, "SELECT actor_id, action, subject_id, data FROM audit_event ORDER BY id")
    assert audit == [
        {"actor_id": admin, "action": "operator.updated", "subject_id": str(bea), "data": data}
        for data in ({"displayName": "Beatrice", "isAdmin": True}, {"deactivated": True}, {"deactivated": False})
    ]


async def test_deactivation_requeues_held_conversations_to_the_next_operator(
    http: httpx.AsyncClient, clean_db: AsyncEngine
) -> None:
    team_id = await make_team(clean_db, "Billing", routing_policy="round_robin")
    _, admin_auth = await person(clean_db, "Ada", is_admin=True)
    bea, _ = await person(clean_db, "Bea", team_id, status="online")
    conversation_id, revision = await make_conversation(clean_db, team_id)
    await in_transaction(clean_db, lambda c: placement.route_conversation(c, conversation_id, revision, "test"))
    assert (await state(clean_db, conversation_id))["assignee_id"] == bea
    olga, _ = await person(clean_db, "Olga", team_id, status="online")

    response = await http.patch(f"{API}/{bea}", json={"deactivated": True}, headers=admin_auth)
    assert (response.status_code, response.json()["openConversations"]) == (200, 0)
    assert await state(clean_db, conversation_id) == {"status": "assigned", "team_id": team_id, "assignee_id": olga}
    [ended] = await rows(clean_db, "SELECT end_reason FROM assignment WHERE operator_id = :id", id=bea)
    assert ended == {"end_reason": "operator_deactivated"}
