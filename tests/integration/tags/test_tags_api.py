"""Team tags over HTTP: leads manage them, members put them on conversations, the inbox filters by them."""

from __future__ import annotations

import httpx
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from service.webhooks import delivery
from tests.factories import make_team
from tests.integration.teams.test_teams_api import errors, person
from tests.support.routing import make_conversation, rows


def tags_of(team_id: object) -> str:
    return f"/api/v1/teams/{team_id}/tags"


def on(conversation_id: str) -> str:
    return f"/api/v1/conversations/{conversation_id}/tags"


async def test_leads_manage_a_teams_tags_and_names_are_checked(http: httpx.AsyncClient, clean_db: AsyncEngine) -> None:
    team_id = await make_team(clean_db, "Billing")
    lead, lead_auth = await person(clean_db, "Lena", team_id, "lead")
    _, member_auth = await person(clean_db, "Olga", team_id)
    _, outsider_auth = await person(clean_db, "Otto", await make_team(clean_db, "Other"))

    assert (await http.post(tags_of(team_id), json={"name": "refund"}, headers=member_auth)).status_code == 403
    assert (await http.post(tags_of(team_id), json={"name": "refund"}, headers=outsider_auth)).status_code == 404
    response = await http.post(tags_of(team_id), json={"name": " Refund ", "color": "#aa3300"}, headers=lead_auth)
    assert response.status_code == 201, response.text
    tag = response.json()
    assert tag == {
        "id": tag["id"],
        "teamId": str(team_id),
        "name": "Refund",
        "color": "#aa3300",
        "createdAt": tag["createdAt"],
    }
    response = await http.post(tags_of(team_id), json={"name": "REFUND"}, headers=lead_auth)
    assert (response.status_code, errors(response)) == (409, ["name"])
    for bad, field in (
        ({"name": "x" * 51}, "name"),
        ({"name": "a\x00b"}, "name"),
        ({"name": "  "}, "name"),
        ({"name": "vip", "color": "red"}, "color"),
    ):
        response = await http.post(tags_of(team_id), json=bad, headers=lead_auth)
        assert (response.status_code, [e["field"].split(".")[-1] for e in response.json()["errors"]]) == (
            400,
            [field],
        ), bad
    await http.post(tags_of(team_id), json={"name": "vip"}, headers=lead_auth)
    listed = (await http.get(tags_of(team_id), headers=member_auth)).json()["items"]
    assert [t["name"] for t in listed] == ["Refund", "vip"]
    assert (await http.get(tags_of(team_id), headers=outsider_auth)).status_code == 404

    path = f"{tags_of(team_id)}/{tag['id']}"
    assert (await http.patch(path, json={"name": "x"}, headers=member_auth)).status_code == 403
    response = await http.patch(path, json={"name": "VIP"}, headers=lead_auth)
    assert (response.status_code, errors(response)) == (409, ["name"])
    response = await http.patch(path, json={"name": None}, headers=lead_auth)
    assert response.status_code == 400
    response = await http.patch(path, json={"name": "refunds", "color": None}, headers=lead_auth)
    assert (response.status_code, response.json()["name"], response.json()["color"]) == (200, "refunds", None)
    assert (await http.delete(path, headers=member_auth)).status_code == 403
    assert (await http.delete(path, headers=lead_auth)).status_code == 204
    assert (await http.delete(path, headers=lead_auth)).status_code == 404
    audit = await rows(clean_db, "SELECT actor_id, action FROM audit_event ORDER BY id")
    assert audit == [
        {"actor_id": lead, "action": "tag.created"},
        {"actor_id": lead, "action": "tag.created"},
        {"actor_id": lead, "action": "tag.updated"},
        {"actor_id": lead, "action": "tag.deleted"},
    ]


async def test_members_tag_conversations_of_their_team_only(http: httpx.AsyncClient, clean_db: AsyncEngine) -> None:
    team_id = await make_team(clean_db, "Billing")
    other_id = await make_team(clean_db, "Sales")
    _, lead_auth = await person(clean_db, "Lena", team_id, "lead")
    olga, olga_auth = await person(clean_db, "Olga", team_id)
    _, other_lead_auth = await person(clean_db, "Sam", other_id, "lead")
    refund = (await http.post(tags_of(team_id), json={"name": "refund"}, headers=lead_auth)).json()
    vip = (await http.post(tags_of(team_id), json={"name": "vip"}, headers=lead_auth)).json()
    theirs = (await http.post(tags_of(other_id), json={"name": "lead"}, headers=other_lead_auth)).json()
    conversation_id, _ = await make_conversation(clean_db, team_id, status="queued")
    unrouted_id, _ = await make_conversation(clean_db, None)

    response = await http.post(on(conversation_id), json={"tagId": refund["id"]}, headers=olga_auth)
    assert response.status_code == 200, response.text
    [item] = response.json()["items"]
    assert item == {
        "id": refund["id"],
        "teamId": str(team_id),
        "name": "refund",
        "color": None,
        "source": "operator",
        "addedBy": str(olga),
        "addedAt": item["addedAt"],
    }
    # Again: nothing changes (who put it there stays).
    response = await http.post(on(conversation_id), json={"tagId": refund["id"]}, headers=lead_auth)
    assert response.json()["items"] == [item]
    for bad in ({"tagId": theirs["id"]}, {"tagId": "00000000-0000-0000-0000-000000000000"}):
        response = await http.post(on(conversation_id), json=bad, headers=olga_auth)
        assert (response.status_code, errors(response)) == (422, ["tagId"])
    response = await http.post(on(conversation_id), json={"tagId": "nope"}, headers=olga_auth)
    assert (response.status_code, errors(response)) == (400, ["tagId"])
    assert (
        await http.post(on(conversation_id), json={"tagId": refund["id"]}, headers=other_lead_auth)
    ).status_code == 404
    # One not routed yet is no team's: its members do not see it, and an admin may not tag it yet.
    _, admin_auth = await person(clean_db, "Ada", is_admin=True)
    assert (await http.post(on(unrouted_id), json={"tagId": refund["id"]}, headers=olga_auth)).status_code == 404
    assert (await http.post(on(unrouted_id), json={"tagId": refund["id"]}, headers=admin_auth)).status_code == 409
    await http.post(on(conversation_id), json={"tagId": vip["id"]}, headers=olga_auth)

    detail = (await http.get(f"/api/v1/conversations/{conversation_id}", headers=olga_auth)).json()
    assert [t["name"] for t in detail["tags"]] == ["refund", "vip"]
    assert [t["name"] for t in (await http.get(on(conversation_id), headers=olga_auth)).json()["items"]] == [
        "refund",
        "vip",
    ]
    response = await http.delete(f"{on(conversation_id)}/{refund['id']}", headers=olga_auth)
    assert (response.status_code, [t["name"] for t in response.json()["items"]]) == (200, ["vip"])
    assert (await http.delete(f"{on(conversation_id)}/{refund['id']}", headers=olga_auth)).status_code == 404
    events = await rows(
        clean_db,
        "SELECT data->'added' AS added, data->'removed' AS removed FROM event"
        " WHERE kind = 'conversation.tags_changed' ORDER BY id",
    )
    assert events == [
        {"added": [refund["id"]], "removed": []},
        {"added": [vip["id"]], "removed": []},
        {"added": [], "removed": [refund["id"]]},
    ]
    # Deleting a tag takes it off its conversations.
    await http.delete(f"{tags_of(team_id)}/{vip['id']}", headers=lead_auth)
    assert (await http.get(on(conversation_id), headers=olga_auth)).json()["items"] == []


async def test_the_inbox_filters_by_tag(http: httpx.AsyncClient, clean_db: AsyncEngine) -> None:
    team_id = await make_team(clean_db, "Billing")
    _, lead_auth = await person(clean_db, "Lena", team_id, "lead")
    refund = (await http.post(tags_of(team_id), json={"name": "refund"}, headers=lead_auth)).json()
    tagged = [(await make_conversation(clean_db, team_id, status="queued"))[0] for _ in range(2)]
    await make_conversation(clean_db, team_id, status="queued")
    for conversation_id in tagged:
        await http.post(on(conversation_id), json={"tagId": refund["id"]}, headers=lead_auth)

    response = await http.get("/api/v1/conversations", params={"tag": refund["id"]}, headers=lead_auth)
    assert response.status_code == 200, response.text
    assert sorted(item["id"] for item in response.json()["items"]) == sorted(tagged)
    assert all([t["name"] for t in item["tags"]] == ["refund"] for item in response.json()["items"])
    response = await http.get("/api/v1/conversations", params={"tag": "not-a-uuid"}, headers=lead_auth)
    assert (response.status_code, errors(response)) == (400, ["tag"])


async def test_tag_changes_reach_webhooks_that_subscribe_to_them(
    http: httpx.AsyncClient, clean_db: AsyncEngine
) -> None:
    team_id = await make_team(clean_db, "Billing")
    _, lead_auth = await person(clean_db, "Lena", team_id, "lead")
    hook = {"url": "https://example.com/hook", "events": ["conversation.tags_changed"]}
    response = await http.post(f"/api/v1/teams/{team_id}/webhooks", json=hook, headers=lead_auth)
    assert response.status_code == 201, response.text
    refund = (await http.post(tags_of(team_id), json={"name": "refund"}, headers=lead_auth)).json()
    conversation_id, _ = await make_conversation(clean_db, team_id, status="queued")
    await http.post(on(conversation_id), json={"tagId": refund["id"]}, headers=lead_auth)

    async with clean_db.begin() as conn:
        event_ids = [r.id for r in await conn.execute(sa.text("SELECT id FROM event ORDER BY id"))]
        assert len(await delivery.fan_out(conn, event_ids)) == 1
    [row] = await rows(clean_db, "SELECT payload FROM outbox WHERE kind = 'webhook'")
    event = row["payload"]["event"]
    assert (event["type"], event["conversationId"], event["data"]["added"]) == (
        "conversation.tags_changed",
        conversation_id,
        [refund["id"]],
    )
