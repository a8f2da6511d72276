"""Canned responses over HTTP: team and personal scopes, shortcut conflicts, template checks, listing, rendering."""

from __future__ import annotations

import uuid

import httpx
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.factories import make_team
from tests.integration.teams.test_teams_api import errors, person
from tests.support.routing import make_conversation, rows

API = "/api/v1/canned-responses"


async def test_team_responses_are_managed_by_leads_and_used_by_members(
    http: httpx.AsyncClient, clean_db: AsyncEngine
) -> None:
    team_id = await make_team(clean_db, "Billing")
    lead, lead_auth = await person(clean_db, "Lena", team_id, "lead")
    _, member_auth = await person(clean_db, "Olga", team_id)
    _, outsider_auth = await person(clean_db, "Otto", await make_team(clean_db, "Other"))
    body = {"teamId": str(team_id), "shortcut": "Refund", "title": "Refund", "body": "Hi {{visitor.name || 'there'}}"}

    assert (await http.post(API, json=body, headers=member_auth)).status_code == 403
    assert (await http.post(API, json=body, headers=outsider_auth)).status_code == 404
    response = await http.post(API, json=body, headers=lead_auth)
    assert response.status_code == 201, response.text
    created = response.json()
    assert created == {
        "id": created["id"],
        "scope": "team",
        "teamId": str(team_id),
        "ownerId": None,
        "shortcut": "refund",
        "title": "Refund",
        "body": "Hi {{visitor.name || 'there'}}",
        "variables": ["visitor.name"],
        "createdAt": created["createdAt"],
        "updatedAt": created["updatedAt"],
    }
    response = await http.post(API, json=body, headers=lead_auth)
    assert (response.status_code, errors(response)) == (409, ["shortcut"])

    path = f"{API}/{created['id']}"
    assert (await http.get(path, headers=member_auth)).json()["shortcut"] == "refund"
    assert (await http.get(path, headers=outsider_auth)).status_code == 404
    assert (await http.patch(path, json={"title": "x"}, headers=member_auth)).status_code == 403
    assert (await http.delete(path, headers=member_auth)).status_code == 403
    response = await http.patch(path, json={"body": "Bye {{operator.firstName}}"}, headers=lead_auth)
    assert (response.status_code, response.json()["variables"]) == (200, ["operator.firstName"])
    assert response.json()["updatedAt"] > created["updatedAt"]
    assert (await http.delete(path, headers=lead_auth)).status_code == 204
    assert (await http.get(path, headers=lead_auth)).status_code == 404
    audit = await rows(clean_db, "SELECT actor_id, action FROM audit_event ORDER BY id")
    assert audit == [
        {"actor_id": lead, "action": "canned.created"},
        {"actor_id": lead, "action": "canned.updated"},
        {"actor_id": lead, "action": "canned.deleted"},
    ]


async def test_personal_responses_belong_to_their_owner_only(http: httpx.AsyncClient, clean_db: AsyncEngine) -> None:
    team_id = await make_team(clean_db, "Billing")
    _, olga_auth = await person(clean_db, "Olga", team_id)
    _, lena_auth = await person(clean_db, "Lena", team_id, "lead")
    _, admin_auth = await person(clean_db, "Ada", is_admin=True)
    body = {"shortcut": "hello", "title": "Hello", "body": "Hello!"}
    response = await http.post(API, json=body, headers=olga_auth)
    assert (response.status_code, response.json()["scope"]) == (201, "personal")
    mine = response.json()["id"]
    # Same shortcut: another owner, or the team scope, is another scope.
    assert (await http.post(API, json=body, headers=lena_auth)).status_code == 201
    assert (await http.post(API, json={**body, "teamId": str(team_id)}, headers=lena_auth)).status_code == 201
    response = await http.post(API, json=body, headers=olga_auth)
    assert (response.status_code, errors(response)) == (409, ["shortcut"])
    for other in (lena_auth, admin_auth):
        assert (await http.get(f"{API}/{mine}", headers=other)).status_code == 404
        assert (await http.patch(f"{API}/{mine}", json={"title": "x"}, headers=other)).status_code == 404
    response = await http.patch(f"{API}/{mine}", json={"shortcut": "hi"}, headers=olga_auth)
    assert response.json()["shortcut"] == "hi"


async def test_invalid_bodies_and_fields_are_refused_with_the_field_named(
    http: httpx.AsyncClient, clean_db: AsyncEngine
) -> None:
    _, auth = await person(clean_db, "Olga")
    cases = [
        ({"body": "Hi {{visitor.nmae}}"}, 422, "body", "unknown variable 'visitor.nmae' at character 3"),
        ({"body": "Hi {{visitor.name"}, 422, "body", "unclosed or malformed placeholder at character 3"),
        ({"shortcut": "has space"}, 400, "shortcut", None),
        ({"title": ""}, 400, "title", None),
        ({"body": "x\x00"}, 400, "body", None),
        ({"body": "x" * 5001}, 400, "body", None),
    ]
    for change, status, field, message in cases:
        response = await http.post(API, json={"shortcut": "a", "title": "A", "body": "ok", **change}, headers=auth)
        assert (response.status_code, errors(response)) == (status, [field]), change
        if message:
            assert response.json()["errors"][0]["message"] == message
    response = await http.post(API, json={"shortcut": "a", "title": "A", "body": "ok"}, headers=auth)
    response = await http.patch(f"{API}/{response.json()['id']}", json={"body": "{{team}}"}, headers=auth)
    assert (response.status_code, errors(response)) == (422, ["body"])
    response = await http.post(
        API, json={"teamId": str(uuid.uuid4()), "shortcut": "a", "title": "A", "body": "ok"}, headers=auth
    )
    assert (response.status_code, response.json()["detail"]) == (404, "Team not found")
    assert [r["body"] for r in await rows(clean_db, "SELECT body FROM canned_response")] == ["ok"]


async def test_list_is_personal_plus_team_by_shortcut_with_prefix_and_cursor(
    http: httpx.AsyncClient, clean_db: AsyncEngine
) -> None:
    team_id = await make_team(clean_db, "Billing")
    other_team = await make_team(clean_db, "Other")
    _, lead_auth = await person(clean_db, "Lena", team_id, "lead")
    _, olga_auth = await person(clean_db, "Olga", team_id)
    _, otto_auth = await person(clean_db, "Otto", other_team, "lead")
    for shortcut in ("ship", "refund", "return"):
        await http.post(
            API, json={"teamId": str(team_id), "shortcut": shortcut, "title": shortcut, "body": "b"}, headers=lead_auth
        )
    await http.post(API, json={"shortcut": "rex", "title": "mine", "body": "b"}, headers=olga_auth)
    await http.post(
        API, json={"teamId": str(other_team), "shortcut": "re", "title": "t", "body": "b"}, headers=otto_auth
    )

    page = (await http.get(API, headers=olga_auth)).json()
    assert [(c["shortcut"], c["scope"]) for c in page["items"]] == [
        ("refund", "team"),
        ("return", "team"),
        ("rex", "personal"),
        ("ship", "team"),
    ]
    page = (await http.get(API, params={"prefix": "RE", "limit": 2}, headers=olga_auth)).json()
    assert [c["shortcut"] for c in page["items"]] == ["refund", "return"]
    page = await http.get(API, params={"prefix": "re", "limit": 2, "cursor": page["nextCursor"]}, headers=olga_auth)
    assert ([c["shortcut"] for c in page.json()["items"]], page.json()["nextCursor"]) == (["rex"], None)
    response = await http.get(API, params={"teamId": str(other_team)}, headers=olga_auth)
    assert response.status_code == 404
    response = await http.get(API, params={"prefix": "a%"}, headers=olga_auth)
    assert response.status_code == 400


async def test_render_fills_visitor_operator_and_team_with_fallbacks(
    http: httpx.AsyncClient, clean_db: AsyncEngine
) -> None:
    team_id = await make_team(clean_db, "Billing")
    _, olga_auth = await person(clean_db, "Olga Petrova", team_id)
    _, otto_auth = await person(clean_db, "Otto", await make_team(clean_db, "Other"))
    body = (
        'Hi {{visitor.name || visitor.email || "there"}}, {{operator.firstName}} from {{team.name}} here '
        "({{operator.name}}). Page: {{visitor.url}}. Phone: {{visitor.phone || visitor.email}}"
    )
    canned = (await http.post(API, json={"shortcut": "hi", "title": "Hi", "body": body}, headers=olga_auth)).json()
    known, _ = await make_conversation(
        clean_db,
        team_id,
        identity={"id": "u1", "name": "Marie Curie", "email": "marie@example.test"},
        session_metadata={"url": "https://shop.example/cart"},
    )
    anonymous, _ = await make_conversation(clean_db, team_id)
    elsewhere, _ = await make_conversation(clean_db, await make_team(clean_db, "Elsewhere"))
    path = f"{API}/{canned['id']}/render"

    response = await http.post(path, json={"conversationId": known}, headers=olga_auth)
    assert response.status_code == 200, response.text
    assert response.json() == {
        "body": "Hi Marie Curie, Olga from Billing here (Olga Petrova). Page: https://shop.example/cart. "
        "Phone: marie@example.test",
        "missing": [],
    }
    response = await http.post(path, json={"conversationId": anonymous}, headers=olga_auth)
    assert response.json() == {
        "body": "Hi there, Olga from Billing here (Olga Petrova). Page: . Phone: ",
        "missing": ["visitor.url", "visitor.phone || visitor.email"],
    }
    response = await http.post(path, json={"conversationId": elsewhere}, headers=olga_auth)
    assert (response.status_code, response.json()["detail"]) == (404, "Conversation not found")
    response = await http.post(path, json={"conversationId": known}, headers=otto_auth)
    assert (response.status_code, response.json()["detail"]) == (404, "Canned response not found")
    response = await http.post(path, json={}, headers=olga_auth)
    assert (response.status_code, errors(response)) == (400, ["conversationId"])


async def test_preview_fills_a_draft_as_render_would_and_checks_it(
    http: httpx.AsyncClient, clean_db: AsyncEngine
) -> None:
    team_id = await make_team(clean_db, "Billing")
    _, olga_auth = await person(clean_db, "Olga Petrova", team_id)
    known, _ = await make_conversation(clean_db, team_id, identity={"name": "Marie Curie"})
    elsewhere, _ = await make_conversation(clean_db, await make_team(clean_db, "Elsewhere"))
    draft = 'Hi {{visitor.name || "there"}}, {{operator.firstName}} from {{team.name}}'
    path = f"{API}/preview"

    response = await http.post(path, json={"body": draft, "conversationId": known}, headers=olga_auth)
    assert (response.status_code, response.json()) == (
        200,
        {"body": "Hi Marie Curie, Olga from Billing", "missing": []},
    )
    # Without a conversation only the operator's own variables have values.
    response = await http.post(path, json={"body": draft}, headers=olga_auth)
    assert response.json() == {"body": "Hi there, Olga from ", "missing": ["team.name"]}
    response = await http.post(path, json={"body": draft, "conversationId": elsewhere}, headers=olga_auth)
    assert (response.status_code, response.json()["detail"]) == (404, "Conversation not found")
    response = await http.post(path, json={"body": "Hi {{visitor.age}}"}, headers=olga_auth)
    assert (response.status_code, errors(response)) == (422, ["body"])
    response = await http.post(path, json={"body": ""}, headers=olga_auth)
    assert (response.status_code, errors(response)) == (400, ["body"])
    # Nothing is stored by a preview.
    assert await rows(clean_db, "SELECT id FROM canned_response") == []
