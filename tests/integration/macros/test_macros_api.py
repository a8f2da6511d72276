"""Macros over HTTP: leads define them (every reference checked), members apply them in one call."""

from __future__ import annotations

import uuid
from typing import Any

import httpx
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.factories import make_team
from tests.integration.teams.test_teams_api import errors, person
from tests.support.routing import rows, set_values, state


def macros_of(team_id: object) -> str:
    return f"/api/v1/teams/{team_id}/macros"


def apply_path(conversation_id: str, macro_id: str) -> str:
    return f"/api/v1/conversations/{conversation_id}/macros/{macro_id}"


async def made(http: httpx.AsyncClient, path: str, body: dict[str, Any], auth: dict[str, str]) -> str:
    response = await http.post(path, json=body, headers=auth)
    assert response.status_code == 201, response.text
    return str(response.json()["id"])


async def open_widget(http: httpx.AsyncClient, visitor: str) -> str:
    response = await http.post("/pocketping/connect", json={"visitorId": visitor})
    assert response.status_code == 200, response.text
    return str(response.json()["sessionId"])


class World:
    """Team A (lead Lena, operators Olga and Omar), team B (lead Sam); a tag, a canned response of each."""

    async def build(self, http: httpx.AsyncClient, engine: AsyncEngine) -> World:
        self.team_a = await make_team(engine, "A")
        self.team_b = await make_team(engine, "B")
        self.lena, self.lena_auth = await person(engine, "Lena", self.team_a, "lead")
        self.olga, self.olga_auth = await person(engine, "Olga", self.team_a)
        self.omar, self.omar_auth = await person(engine, "Omar", self.team_a)
        self.sam, self.sam_auth = await person(engine, "Sam", self.team_b, "lead")
        tags_a = f"/api/v1/teams/{self.team_a}/tags"
        self.refund = await made(http, tags_a, {"name": "refund"}, self.lena_auth)
        self.triage = await made(http, tags_a, {"name": "triage"}, self.lena_auth)
        self.tag_b = await made(http, f"/api/v1/teams/{self.team_b}/tags", {"name": "b"}, self.sam_auth)
        canned = "/api/v1/canned-responses"
        body = 'Hi {{visitor.name || "there"}}, your refund is on its way.'
        self.canned_a = await made(
            http,
            canned,
            {"teamId": str(self.team_a), "shortcut": "refund", "title": "Refund", "body": body},
            self.lena_auth,
        )
        self.canned_b = await made(
            http, canned, {"teamId": str(self.team_b), "shortcut": "b", "title": "B", "body": "B"}, self.sam_auth
        )
        self.personal = await made(http, canned, {"shortcut": "mine", "title": "Mine", "body": "Mine"}, self.lena_auth)
        return self


async def test_leads_define_macros_and_every_reference_is_checked(
    http: httpx.AsyncClient, clean_db: AsyncEngine
) -> None:
    w = await World().build(http, clean_db)
    path = macros_of(w.team_a)
    good = {
        "name": "Refund and close",
        "cannedId": w.canned_a,
        "addTags": [w.refund],
        "removeTags": [w.triage],
        "action": "close",
    }
    assert (await http.post(path, json=good, headers=w.olga_auth)).status_code == 403
    assert (await http.post(path, json=good, headers=w.sam_auth)).status_code == 404
    response = await http.post(path, json=good, headers=w.lena_auth)
    assert response.status_code == 201, response.text
    macro = response.json()
    assert macro == {
        **good,
        "id": macro["id"],
        "teamId": str(w.team_a),
        "transferTeamId": None,
        "transferOperatorId": None,
        "createdAt": macro["createdAt"],
        "updatedAt": macro["updatedAt"],
    }
    response = await http.post(path, json={**good, "name": "REFUND AND CLOSE"}, headers=w.lena_auth)
    assert (response.status_code, errors(response)) == (409, ["name"])
    unprocessable = [
        ({"cannedId": w.canned_b}, "cannedId"),
        ({"cannedId": w.personal}, "cannedId"),
        ({"cannedId": str(uuid.uuid4())}, "cannedId"),
        ({"addTags": [w.tag_b]}, "addTags"),
        ({"removeTags": [str(uuid.uuid4())]}, "removeTags"),
        ({"addTags": [w.refund], "removeTags": [w.refund]}, "removeTags"),
        ({"action": "transfer"}, "transferTeamId"),
        ({"action": "transfer", "transferTeamId": str(w.team_b), "transferOperatorId": str(w.olga)}, "transferTeamId"),
        ({"action": "transfer", "transferTeamId": str(w.team_a)}, "transferTeamId"),
        ({"action": "transfer", "transferOperatorId": str(w.sam)}, "transferOperatorId"),
        ({"action": "close", "transferTeamId": str(w.team_b)}, "transferTeamId"),
        ({"cannedId": None, "addTags": [], "removeTags": [], "action": "none"}, "action"),
    ]
    for change, field in unprocessable:
        response = await http.post(path, json={**good, "name": "x", **change}, headers=w.lena_auth)
        assert (response.status_code, errors(response)) == (422, [field]), change
    for change, field in (
        ({"name": "x" * 101}, "name"),
        ({"name": "a\x00b"}, "name"),
        ({"action": "archive"}, "action"),
        ({"addTags": ["nope"]}, "addTags.0"),
        ({"surprise": 1}, "surprise"),
    ):
        response = await http.post(path, json={**good, **change}, headers=w.lena_auth)
        assert (response.status_code, errors(response)) == (400, [field]), change

    item = f"{path}/{macro['id']}"
    replaced = {"name": "Hand to B", "action": "transfer", "transferTeamId": str(w.team_b)}
    assert (await http.put(item, json=replaced, headers=w.olga_auth)).status_code == 403
    response = await http.put(item, json=replaced, headers=w.lena_auth)
    assert response.status_code == 200, response.text
    assert (response.json()["cannedId"], response.json()["action"]) == (None, "transfer")
    listed = (await http.get(path, headers=w.olga_auth)).json()["items"]
    assert [m["name"] for m in listed] == ["Hand to B"]
    # A canned response a macro sends cannot be deleted.
    await http.put(item, json=good, headers=w.lena_auth)
    response = await http.delete(f"/api/v1/canned-responses/{w.canned_a}", headers=w.lena_auth)
    assert (response.status_code, response.json()["detail"]) == (
        409,
        "A macro of the team sends this response; change or delete the macro first",
    )
    assert (await http.delete(item, headers=w.olga_auth)).status_code == 403
    assert (await http.delete(item, headers=w.lena_auth)).status_code == 204
    assert (await http.delete(f"/api/v1/canned-responses/{w.canned_a}", headers=w.lena_auth)).status_code == 204
    audit = await rows(clean_db, "SELECT action FROM audit_event WHERE subject_type = 'macro' ORDER BY id")
    assert [a["action"] for a in audit] == ["macro.created", "macro.replaced", "macro.replaced", "macro.deleted"]


async def test_a_macro_replies_as_the_operator_retags_and_closes_in_one_call(
    http: httpx.AsyncClient, clean_db: AsyncEngine
) -> None:
    w = await World().build(http, clean_db)
    macro = {
        "name": "Refund",
        "cannedId": w.canned_a,
        "addTags": [w.refund],
        "removeTags": [w.triage],
        "action": "close",
    }
    macro_id = await made(http, macros_of(w.team_a), macro, w.lena_auth)
    session_id = await open_widget(http, "v-refund")
    await set_values(clean_db, "conversation", {"id": session_id}, team_id=w.team_a, status="queued")
    tagged = await http.post(f"/api/v1/conversations/{session_id}/tags", json={"tagId": w.triage}, headers=w.olga_auth)
    assert tagged.status_code == 200

    response = await http.post(apply_path(session_id, macro_id), headers=w.olga_auth)
    assert response.status_code == 200, response.text
    body = response.json()
    assert (body["message"]["sender"], body["message"]["content"], body["message"]["operator"]) == (
        "operator",
        "Hi there, your refund is on its way.",
        {"id": str(w.olga), "displayName": "Olga"},
    )
    assert [(t["name"], t["source"], t["addedBy"]) for t in body["tags"]] == [("refund", "macro", str(w.olga))]
    assert body["routing"] == {
        "conversationId": session_id,
        "status": "closed",
        "teamId": str(w.team_a),
        "assigneeId": str(w.olga),
        "routingRevision": body["routing"]["routingRevision"],
    }
    # The reply took the ordinary path: stored as Olga's, claimed first (first response recorded), seen by the widget.
    history = await rows(
        clean_db, "SELECT operator_id, reason, end_reason FROM assignment WHERE conversation_id = :c", c=session_id
    )
    assert history == [{"operator_id": w.olga, "reason": "claimed", "end_reason": "closed"}]
    [conversation] = await rows(clean_db, "SELECT first_response_at FROM conversation WHERE id = :c", c=session_id)
    assert conversation["first_response_at"] is not None
    widget = await http.get("/pocketping/messages", params={"sessionId": session_id})
    assert [m["content"] for m in widget.json()["messages"] if m["sender"] == "operator"] == [
        "Hi there, your refund is on its way."
    ]
    kinds = await rows(clean_db, "SELECT kind FROM event WHERE conversation_id = :c ORDER BY id", c=session_id)
    assert [k["kind"] for k in kinds][-5:] == [
        "conversation.assigned",
        "message.created",
        "conversation.tags_changed",
        "conversation.tags_changed",
        "conversation.closed",
    ]
    # Closed now: applying again is a 409 before anything is sent.
    response = await http.post(apply_path(session_id, macro_id), headers=w.olga_auth)
    assert (response.status_code, response.json()["detail"]) == (409, "The conversation is closed; reopen it first")
    assert len(await rows(clean_db, "SELECT 1 FROM message WHERE sender = 'operator'")) == 1


async def test_who_may_apply_a_macro_and_transfers(http: httpx.AsyncClient, clean_db: AsyncEngine) -> None:
    w = await World().build(http, clean_db)
    reply_and_tag = await made(
        http, macros_of(w.team_a), {"name": "Tag", "cannedId": w.canned_a, "addTags": [w.refund]}, w.lena_auth
    )
    to_b = await made(
        http, macros_of(w.team_a), {"name": "To B", "action": "transfer", "transferTeamId": str(w.team_b)}, w.lena_auth
    )
    to_omar = await made(
        http,
        macros_of(w.team_a),
        {"name": "To Omar", "action": "transfer", "transferOperatorId": str(w.omar)},
        w.lena_auth,
    )
    mine = await made(http, macros_of(w.team_a), {"name": "Mine", "action": "assign"}, w.lena_auth)
    b_macro = await made(http, macros_of(w.team_b), {"name": "B", "addTags": [w.tag_b]}, w.sam_auth)
    session_id = await open_widget(http, "v-who")
    await set_values(
        clean_db, "conversation", {"id": session_id}, team_id=w.team_a, status="assigned", assignee_id=w.omar
    )
    async with clean_db.begin() as conn:
        await conn.execute(sa.text("UPDATE operator SET open_conversations = 1 WHERE id = :o"), {"o": w.omar})
        await conn.execute(
            sa.text(
                "INSERT INTO assignment (conversation_id, operator_id, team_id, reason) VALUES (:c, :o, :t, 'routed')"
            ),
            {"c": session_id, "o": w.omar, "t": w.team_a},
        )

    # Omar holds it: Olga's macro with a reply is refused by the reply path, and nothing else happens.
    response = await http.post(apply_path(session_id, reply_and_tag), headers=w.olga_auth)
    assert (response.status_code, response.json()["detail"]) == (
        403,
        "Another operator holds this conversation; claim or transfer it first",
    )
    assert await rows(clean_db, "SELECT 1 FROM conversation_tag") == []
    # Another team's member, or another team's macro: 404.
    assert (await http.post(apply_path(session_id, reply_and_tag), headers=w.sam_auth)).status_code == 404
    assert (await http.post(apply_path(session_id, b_macro), headers=w.olga_auth)).status_code == 404
    assert (await http.post(apply_path(session_id, str(uuid.uuid4())), headers=w.olga_auth)).status_code == 404
    # Already Omar's: transferring it to him is a 409 before anything runs.
    response = await http.post(apply_path(session_id, to_omar), headers=w.olga_auth)
    assert (response.status_code, response.json()["detail"]) == (
        409,
        "The conversation is already assigned to that operator",
    )
    # Assign takes it for the caller (a transfer to them, through the routing service).
    response = await http.post(apply_path(session_id, mine), headers=w.olga_auth)
    assert (response.status_code, response.json()["routing"]["assigneeId"]) == (200, str(w.olga))
    assert await state(clean_db, session_id) == {"status": "assigned", "team_id": w.team_a, "assignee_id": w.olga}
    response = await http.post(apply_path(session_id, to_b), headers=w.olga_auth)
    assert response.status_code == 200, response.text
    assert (response.json()["routing"]["teamId"], response.json()["routing"]["status"]) == (str(w.team_b), "queued")
    reasons = await rows(
        clean_db,
        "SELECT operator_id, reason, end_reason FROM assignment WHERE conversation_id = :c ORDER BY id",
        c=session_id,
    )
    assert reasons == [
        {"operator_id": w.omar, "reason": "routed", "end_reason": "transferred"},
        {"operator_id": w.olga, "reason": "transferred", "end_reason": "transferred"},
    ]
    # Now team B's: team A's members no longer see it.
    assert (await http.post(apply_path(session_id, mine), headers=w.olga_auth)).status_code == 404
    # A macro whose operator left the team refuses before it sends anything.
    await http.delete(f"/api/v1/teams/{w.team_a}/members/{w.omar}", headers=w.lena_auth)
    other_id = await open_widget(http, "v-left")
    await set_values(clean_db, "conversation", {"id": other_id}, team_id=w.team_a, status="queued")
    response = await http.post(apply_path(other_id, to_omar), headers=w.olga_auth)
    assert (response.status_code, response.json()["detail"]) == (
        409,
        "The macro's operator is no longer a member of the team; a lead must change the macro",
    )


async def test_a_repeated_idempotency_key_applies_the_macro_once(
    http: httpx.AsyncClient, clean_db: AsyncEngine
) -> None:
    w = await World().build(http, clean_db)
    macro = {"name": "Refund", "cannedId": w.canned_a, "addTags": [w.refund], "action": "close"}
    macro_id = await made(http, macros_of(w.team_a), macro, w.lena_auth)
    other_id = await made(http, macros_of(w.team_a), {"name": "Tag", "addTags": [w.triage]}, w.lena_auth)
    session_id = await open_widget(http, "v-retry")
    await set_values(clean_db, "conversation", {"id": session_id}, team_id=w.team_a, status="queued")
    keyed = {**w.olga_auth, "Idempotency-Key": "macro-retry-1"}

    first = await http.post(apply_path(session_id, macro_id), headers=keyed)
    assert (first.status_code, first.headers.get("idempotent-replayed")) == (200, None), first.text
    # The retry (the answer was lost, say) finds the closed conversation's first answer, not a 409.
    again = await http.post(apply_path(session_id, macro_id), headers=keyed)
    assert (again.status_code, again.headers.get("idempotent-replayed"), again.json()) == (200, "true", first.json())
    assert len(await rows(clean_db, "SELECT 1 FROM message WHERE sender = 'operator'")) == 1
    # The same key for another macro is another request: 409.
    response = await http.post(apply_path(session_id, other_id), headers=keyed)
    assert (response.status_code, response.json()["detail"]) == (
        409,
        "This Idempotency-Key was used for a different request",
    )
