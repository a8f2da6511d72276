"""The conversations API over real HTTP: visibility, filters, search, cursors, history and replies to a live widget."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
import websockets
from sqlalchemy.ext.asyncio import AsyncEngine

from service.conversations import services
from service.idempotency import advisory_lock
from service.pagination import decode_cursor, encode_cursor
from tests.conftest import RunningApi
from tests.factories import add_member, bearer, make_operator, make_team, personal_token
from tests.integration.realtime.test_fanout import RecordingBridge, received
from tests.support.routing import make_conversation, rows, set_values, state

T0 = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)


class Crew:
    """Two teams, a member of each, a lead of team A and an admin, each with a personal token."""

    def __init__(self) -> None:
        self.headers: dict[str, dict[str, str]] = {}
        self.ids: dict[str, uuid.UUID] = {}

    async def build(self, engine: AsyncEngine) -> Crew:
        self.team_a = await make_team(engine, "A", welcome_message="Hi from A")
        self.team_b = await make_team(engine, "B")
        for name, team, role, admin in (
            ("ada", self.team_a, "operator", False),
            ("bob", self.team_b, "operator", False),
            ("lea", self.team_a, "lead", False),
            ("root", None, None, True),
        ):
            operator = await make_operator(
                engine, name.title(), email=f"{name}@example.test", is_admin=admin, status="online"
            )
            if team is not None:
                await add_member(engine, team, operator, role or "operator")
            self.ids[name] = operator
            self.headers[name] = bearer(await personal_token(engine, operator))
        return self


@pytest.fixture
async def crew(clean_db: AsyncEngine) -> Crew:
    return await Crew().build(clean_db)


async def add_message(engine: AsyncEngine, conversation_id: str, content: str, **values: Any) -> str:
    message_id = f"m-{uuid.uuid4().hex[:10]}"
    async with engine.begin() as conn:
        await conn.execute(
            sa.text(
                "INSERT INTO message (id, conversation_id, sender, content, created_at, operator_id) "
                "VALUES (:id, :c, :sender, :content, :at, :op)"
            ),
            {
                "id": message_id,
                "c": conversation_id,
                "content": content,
                "sender": values.get("sender", "visitor"),
                "at": values.get("at", T0),
                "op": values.get("operator_id"),
            },
        )
    return message_id


async def ids(http: httpx.AsyncClient, who: dict[str, str], **params: Any) -> list[str]:
    response = await http.get("/api/v1/conversations", params=params, headers=who)
    assert response.status_code == 200, response.text
    return [item["id"] for item in response.json()["items"]]


async def test_list_shows_only_the_callers_teams_and_filters(
    http: httpx.AsyncClient, clean_db: AsyncEngine, crew: Crew
) -> None:
    mine, _ = await make_conversation(
        clean_db, crew.team_a, id="a-mine", status="assigned", assignee_id=crew.ids["ada"], last_activity=T0
    )
    queued, _ = await make_conversation(clean_db, crew.team_a, id="a-queued", status="queued", last_activity=T0)
    closed, _ = await make_conversation(
        clean_db, crew.team_a, id="a-closed", status="closed", last_activity=T0 - timedelta(hours=1)
    )
    lea_s, _ = await make_conversation(
        clean_db, crew.team_a, id="a-lea", status="assigned", assignee_id=crew.ids["lea"], last_activity=T0
    )
    other, _ = await make_conversation(clean_db, crew.team_b, id="b-1", status="queued", last_activity=T0)
    unrouted, _ = await make_conversation(clean_db, None, id="new-1", last_activity=T0)
    ada = crew.headers["ada"]

    # Newest activity first, ties by id descending; another team's and unrouted ones are invisible.
    assert await ids(http, ada) == [queued, mine, lea_s, closed]
    assert await ids(http, crew.headers["bob"]) == [other]
    assert await ids(http, crew.headers["root"]) == [unrouted, other, queued, mine, lea_s, closed]
    assert await ids(http, ada, status="queued") == [queued]
    assert await ids(http, ada, status=["queued", "closed"]) == [queued, closed]
    assert await ids(http, ada, assignee="me") == [mine]
    assert await ids(http, ada, assignee="unassigned") == [queued, closed]
    assert await ids(http, ada, assignee=str(crew.ids["lea"])) == [lea_s]
    assert await ids(http, ada, teamId=str(crew.team_b)) == []
    assert await ids(http, crew.headers["root"], teamId=str(crew.team_b)) == [other]

    response = await http.get("/api/v1/conversations", params={"assignee": "someone"}, headers=ada)
    assert response.status_code == 400
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["errors"] == [
        {"field": "assignee", "message": "use me, unassigned, offered or an operator id"}
    ]
    response = await http.get("/api/v1/conversations", params={"status": "open"}, headers=ada)
    assert response.status_code == 400
    assert response.json()["errors"][0]["field"] == "status"
    response = await http.get("/api/v1/conversations", params={"limit": 101}, headers=ada)
    assert response.status_code == 400
    assert (await http.get("/api/v1/conversations")).status_code == 401


async def test_unread_counts_per_conversation_and_in_total(
    http: httpx.AsyncClient, clean_db: AsyncEngine, crew: Crew
) -> None:
    mine, _ = await make_conversation(
        clean_db, crew.team_a, id="u-mine", status="assigned", assignee_id=crew.ids["ada"], last_activity=T0
    )
    queued, _ = await make_conversation(
        clean_db, crew.team_a, id="u-queued", status="queued", last_activity=T0 - timedelta(minutes=1)
    )
    other, _ = await make_conversation(clean_db, crew.team_b, id="u-other", status="queued", last_activity=T0)
    for index in range(3):
        await add_message(clean_db, mine, f"visitor {index}")
    read = await add_message(clean_db, mine, "read already")
    await set_values(clean_db, "message", {"id": read}, read_at=T0)
    deleted = await add_message(clean_db, mine, "deleted")
    await set_values(clean_db, "message", {"id": deleted}, deleted_at=T0)
    await add_message(clean_db, mine, "an operator's", sender="operator", operator_id=crew.ids["ada"])
    await add_message(clean_db, queued, "hello?")
    await add_message(clean_db, other, "another team's")
    ada = crew.headers["ada"]

    async def unread(**params: Any) -> tuple[list[tuple[str, int]], int]:
        response = await http.get("/api/v1/conversations", params=params, headers=ada)
        assert response.status_code == 200, response.text
        body = response.json()
        return [(item["id"], item["unreadCount"]) for item in body["items"]], body["unreadTotal"]

    # Only the visitor's messages not read and not deleted count; another team's never do.
    assert await unread() == ([(mine, 3), (queued, 1)], 4)
    # The total covers every conversation the filters match, not only the page.
    assert await unread(limit=1) == ([(mine, 3)], 4)
    assert await unread(assignee="me") == ([(mine, 3)], 3)
    assert await unread(status="closed") == ([], 0)
    await set_values(clean_db, "message", {"conversation_id": queued}, read_at=T0)
    assert await unread() == ([(mine, 3), (queued, 0)], 3)


async def test_inbox_is_conditional_on_its_etag(http: httpx.AsyncClient, clean_db: AsyncEngine, crew: Crew) -> None:
    # A widget visitor's conversation, unrouted until it is routed, so the admin sees it.
    connected = await http.post("/pocketping/connect", json={"visitorId": "v-etag"})
    conversation = connected.json()["sessionId"]
    root = crew.headers["root"]
    first = await http.get("/api/v1/conversations", headers=root)
    assert first.status_code == 200
    assert [item["id"] for item in first.json()["items"]] == [conversation]
    etag = first.headers["etag"]
    assert len(etag) == 34 and etag.startswith('"') and etag.endswith('"')
    assert first.headers["cache-control"] == "private, no-cache"
    # The same page again: 304, no body, the same ETag; also among other tags, and weak-prefixed by a proxy.
    for held in (etag, f'"other", {etag}', f"W/{etag}"):
        unchanged = await http.get("/api/v1/conversations", headers=root | {"If-None-Match": held})
        assert unchanged.status_code == 304
        assert unchanged.content == b""
        assert unchanged.headers["etag"] == etag
    # Another view (a filter, another caller) is another page, with its own ETag.
    closed = await http.get(
        "/api/v1/conversations", params={"status": "closed"}, headers=root | {"If-None-Match": etag}
    )
    assert closed.status_code == 200
    assert closed.headers["etag"] != etag

    # A new visitor message changes the page (its lastActivity): 200 and a new ETag.
    said = await http.post(
        "/pocketping/message", json={"sessionId": conversation, "content": "Anyone there?", "sender": "visitor"}
    )
    assert said.status_code == 200
    changed = await http.get("/api/v1/conversations", headers=root | {"If-None-Match": etag})
    assert changed.status_code == 200
    assert changed.headers["etag"] not in (etag, None)
    # So does an assignment.
    await set_values(clean_db, "conversation", {"id": conversation}, status="assigned", assignee_id=crew.ids["ada"])
    assigned = await http.get("/api/v1/conversations", headers=root | {"If-None-Match": changed.headers["etag"]})
    assert assigned.status_code == 200
    assert assigned.json()["items"][0]["assignee"]["id"] == str(crew.ids["ada"])
    assert assigned.headers["etag"] not in (etag, changed.headers["etag"])
    assert (await http.get("/api/v1/conversations", headers={"If-None-Match": etag})).status_code == 401


async def test_search_matches_message_words_and_visitor_identity(
    http: httpx.AsyncClient, clean_db: AsyncEngine, crew: Crew
) -> None:
    lyon, _ = await make_conversation(clean_db, crew.team_a, id="lyon", status="queued")
    await add_message(clean_db, lyon, "Do you ship parcels to Lyon?")
    grace, _ = await make_conversation(
        clean_db, crew.team_a, id="grace", status="queued", identity={"email": "grace@navy.example", "name": "Grace"}
    )
    await add_message(clean_db, grace, "Hello")
    hidden, _ = await make_conversation(clean_db, crew.team_b, id="hidden", status="queued")
    await add_message(clean_db, hidden, "Shipping to Lyon too")
    ada = crew.headers["ada"]

    assert await ids(http, ada, q="lyon") == [lyon]
    assert await ids(http, ada, q="ship lyon") == [lyon]
    assert await ids(http, ada, q="navy.example") == [grace]
    assert await ids(http, ada, q="GRACE") == [grace]
    assert await ids(http, ada, q="100%_") == []
    assert await ids(http, ada, q="v-gra") == [grace]  # the visitor id
    assert await ids(http, crew.headers["root"], q="lyon") == [hidden, lyon]


async def test_cursor_pages_cover_every_conversation_once(
    http: httpx.AsyncClient, clean_db: AsyncEngine, crew: Crew
) -> None:
    made = []
    for index in range(7):
        # Pairs share a timestamp, so the id breaks ties.
        conversation_id, _ = await make_conversation(
            clean_db, crew.team_a, id=f"p-{index}", status="queued", last_activity=T0 - timedelta(minutes=index // 2)
        )
        made.append(conversation_id)
    seen: list[str] = []
    cursor = None
    pages = 0
    while True:
        params: dict[str, Any] = {"limit": 3} | ({"cursor": cursor} if cursor else {})
        response = await http.get("/api/v1/conversations", params=params, headers=crew.headers["ada"])
        assert response.status_code == 200
        body = response.json()
        seen += [item["id"] for item in body["items"]]
        pages += 1
        cursor = body["nextCursor"]
        if cursor is None:
            break
    assert pages == 3
    assert seen == ["p-1", "p-0", "p-3", "p-2", "p-5", "p-4", "p-6"]

    for bad in ("nope", encode_cursor("x"), encode_cursor("not a time", "p-1")):
        response = await http.get("/api/v1/conversations", params={"cursor": bad}, headers=crew.headers["ada"])
        assert response.status_code == 400
        assert response.json()["errors"] == [{"field": "cursor", "message": "use nextCursor from a previous page"}]
    assert decode_cursor(encode_cursor("2026-11-25T12:00:00+00:00", "p-1"), 2) == ["2026-11-25T12:00:00+00:00", "p-1"]


async def test_detail_and_messages(http: httpx.AsyncClient, clean_db: AsyncEngine, crew: Crew) -> None:
    conversation_id, _ = await make_conversation(
        clean_db,
        crew.team_a,
        id="d-1",
        status="assigned",
        assignee_id=crew.ids["ada"],
        priority=2,
        identity={"id": "u-42", "email": "grace@example.com"},
        session_metadata={"url": "https://shop.example/pricing"},
        created_at=T0,
        last_activity=T0,
        waiting_since=T0,
        ai_paused=True,
    )
    for index in range(5):
        await add_message(clean_db, conversation_id, f"visitor {index}", at=T0 + timedelta(seconds=index))
    await add_message(clean_db, conversation_id, "operator says", sender="operator", operator_id=crew.ids["ada"])

    response = await http.get(f"/api/v1/conversations/{conversation_id}", headers=crew.headers["ada"])
    assert response.status_code == 200
    body = response.json()
    assert body["team"] == {"id": str(crew.team_a), "name": "A"}
    assert body["assignee"] == {"id": str(crew.ids["ada"]), "displayName": "Ada"}
    assert (body["status"], body["priority"], body["waitingSince"]) == ("assigned", 2, "2026-11-25T12:00:00Z")
    assert body["ai"] == {"active": False, "paused": True}
    assert body["visitor"] == {
        "id": "v-d-1",
        "identity": {"id": "u-42", "email": "grace@example.com"},
        "metadata": {"url": "https://shop.example/pricing"},
        "phone": None,
        "phoneCountry": None,
        "device": None,
    }
    assert body["earlierConversations"] == []

    # Another team's conversation does not exist for the caller; nor does an unknown one.
    for path in (f"/api/v1/conversations/{conversation_id}", f"/api/v1/conversations/{conversation_id}/messages"):
        response = await http.get(path, headers=crew.headers["bob"])
        assert (response.status_code, response.json()["detail"]) == (404, "Conversation not found")
    assert (await http.get("/api/v1/conversations/unknown", headers=crew.headers["root"])).status_code == 404

    contents, cursor = [], None
    while True:
        params: dict[str, Any] = {"limit": 4} | ({"cursor": cursor} if cursor else {})
        response = await http.get(
            f"/api/v1/conversations/{conversation_id}/messages", params=params, headers=crew.headers["ada"]
        )
        assert response.status_code == 200
        contents += [(m["seq"], m["content"], m["operator"]) for m in response.json()["items"]]
        cursor = response.json()["nextCursor"]
        if cursor is None:
            break
    assert [c[1] for c in contents] == [f"visitor {i}" for i in range(5)] + ["operator says"]
    assert [c[0] for c in contents] == sorted(c[0] for c in contents)
    assert contents[-1][2] == {"id": str(crew.ids["ada"]), "displayName": "Ada"}
    assert contents[0][2] is None

    # Newest first, each page continuing with the messages before it: the same messages, reversed.
    newest, cursor, sizes = [], None, []
    while True:
        params = {"limit": 4, "order": "newest"} | ({"cursor": cursor} if cursor else {})
        response = await http.get(
            f"/api/v1/conversations/{conversation_id}/messages", params=params, headers=crew.headers["ada"]
        )
        assert response.status_code == 200
        sizes.append(len(response.json()["items"]))
        newest += [(m["seq"], m["content"], m["operator"]) for m in response.json()["items"]]
        cursor = response.json()["nextCursor"]
        if cursor is None:
            break
    assert newest == contents[::-1]
    assert sizes == [4, 2]
    response = await http.get(
        f"/api/v1/conversations/{conversation_id}/messages", params={"order": "latest"}, headers=crew.headers["ada"]
    )
    assert response.status_code == 400
    assert response.json()["errors"][0]["field"] == "order"


async def open_widget(http: httpx.AsyncClient, visitor: str = "v-live") -> str:
    response = await http.post("/pocketping/connect", json={"visitorId": visitor})
    assert response.status_code == 200, response.text
    return str(response.json()["sessionId"])


async def widget_held_by_ada(http: httpx.AsyncClient, engine: AsyncEngine, crew: Crew) -> str:
    """A live widget session, assigned to Ada in team A."""
    session_id = await open_widget(http)
    where = {"id": session_id}
    await set_values(engine, "conversation", where, team_id=crew.team_a, status="assigned", assignee_id=crew.ids["ada"])
    return session_id


def reply_path(conversation_id: str) -> str:
    return f"/api/v1/conversations/{conversation_id}/messages"


async def test_reply_reaches_the_visitor_once_attributed(
    api: RunningApi, http: httpx.AsyncClient, clean_db: AsyncEngine, crew: Crew
) -> None:
    session_id = await widget_held_by_ada(http, clean_db, crew)
    # The widget learns who answers when it (re)connects.
    connect = await http.post("/pocketping/connect", json={"visitorId": "v-live", "sessionId": session_id})
    assert (connect.json()["operatorName"], connect.json()["welcomeMessage"]) == ("Ada", "Hi from A")

    async with websockets.connect(f"{api.ws_url}/pocketping/stream?sessionId={session_id}") as socket:
        response = await http.post(
            reply_path(session_id), json={"content": "We ship to Lyon."}, headers=crew.headers["ada"]
        )
        assert response.status_code == 201, response.text
        body = response.json()
        assert (body["sender"], body["content"], body["operator"]) == (
            "operator",
            "We ship to Lyon.",
            {"id": str(crew.ids["ada"]), "displayName": "Ada"},
        )
        events = [e for e in await received(socket) if e["type"] == "message"]
        assert [(e["data"]["id"], e["data"]["content"], e["data"]["sender"]) for e in events] == [
            (body["id"], "We ship to Lyon.", "operator")
        ]
        assert events[0]["data"]["metadata"] == {"operatorName": "Ada"}

    stored = await rows(clean_db, "SELECT sender, operator_id, content FROM message")
    assert stored == [{"sender": "operator", "operator_id": crew.ids["ada"], "content": "We ship to Lyon."}]
    [event] = await rows(clean_db, "SELECT kind, team_id, data FROM event WHERE kind = 'message.created'")
    assert event["team_id"] == crew.team_a
    assert event["data"] == {
        "conversationId": session_id,
        "messageId": body["id"],
        "sender": "operator",
        "operatorId": str(crew.ids["ada"]),
        "content": "We ship to Lyon.",
    }


async def test_idempotency_key_sends_once_under_concurrent_duplicates(
    api: RunningApi, http: httpx.AsyncClient, clean_db: AsyncEngine, crew: Crew
) -> None:
    session_id = await widget_held_by_ada(http, clean_db, crew)
    headers = crew.headers["ada"] | {"Idempotency-Key": "reply-7f3a"}
    async with websockets.connect(f"{api.ws_url}/pocketping/stream?sessionId={session_id}") as socket:
        responses = await asyncio.gather(
            *(http.post(reply_path(session_id), json={"content": "Once only"}, headers=headers) for _ in range(6))
        )
        assert [r.status_code for r in responses] == [201] * 6
        assert len({r.json()["id"] for r in responses}) == 1
        assert sorted(r.headers.get("Idempotent-Replayed", "no") for r in responses) == ["no"] + ["true"] * 5
        events = [e for e in await received(socket) if e["type"] == "message"]
        assert [e["data"]["content"] for e in events] == ["Once only"]

    # The same key for a different reply is refused; the same key from another operator is theirs.
    response = await http.post(reply_path(session_id), json={"content": "Something else"}, headers=headers)
    assert response.status_code == 409
    assert response.json()["detail"] == "This Idempotency-Key was used for a different reply"
    lead = crew.headers["lea"] | {"Idempotency-Key": "reply-7f3a"}
    response = await http.post(reply_path(session_id), json={"content": "Once only"}, headers=lead)
    assert response.status_code == 201
    assert response.json()["operator"]["displayName"] == "Lea"
    stored = await rows(clean_db, "SELECT operator_id FROM message ORDER BY seq")
    assert [r["operator_id"] for r in stored] == [crew.ids["ada"], crew.ids["lea"]]
    response = await http.post(
        reply_path(session_id), json={"content": "x"}, headers=crew.headers["ada"] | {"Idempotency-Key": "a b"}
    )
    assert response.status_code == 400
    assert response.json()["errors"][0]["field"] == "Idempotency-Key"


async def test_who_may_reply(http: httpx.AsyncClient, clean_db: AsyncEngine, crew: Crew) -> None:
    held = await open_widget(http, "v-held")
    waiting = await open_widget(http, "v-waiting")
    closed = await open_widget(http, "v-closed")
    async with clean_db.begin() as conn:
        await conn.execute(
            sa.text("UPDATE conversation SET team_id = :t, status = 'assigned', assignee_id = :o WHERE id = :id"),
            {"t": crew.team_a, "o": crew.ids["lea"], "id": held},
        )
        await conn.execute(
            sa.text("UPDATE conversation SET team_id = :t, status = 'queued' WHERE id = :id"),
            {"t": crew.team_a, "id": waiting},
        )
        await conn.execute(
            sa.text("UPDATE conversation SET team_id = :t, status = 'closed' WHERE id = :id"),
            {"t": crew.team_a, "id": closed},
        )
    reply = {"content": "Hello"}

    response = await http.post(reply_path(held), json=reply, headers=crew.headers["ada"])
    assert (response.status_code, response.json()["detail"]) == (
        403,
        "Another operator holds this conversation; claim or transfer it first",
    )
    assert (await http.post(reply_path(held), json=reply, headers=crew.headers["root"])).status_code == 201
    assert (await http.post(reply_path(held), json=reply, headers=crew.headers["bob"])).status_code == 404
    assert (await state(clean_db, held))["assignee_id"] == crew.ids["lea"]

    # A team member answering a waiting conversation takes it.
    assert (await http.post(reply_path(waiting), json=reply, headers=crew.headers["ada"])).status_code == 201
    taken = await state(clean_db, waiting)
    assert taken == {"status": "assigned", "team_id": crew.team_a, "assignee_id": crew.ids["ada"]}

    response = await http.post(reply_path(closed), json=reply, headers=crew.headers["ada"])
    assert (response.status_code, response.json()["detail"]) == (409, "The conversation is closed; reopen it to reply")

    for bad in ({"content": ""}, {"content": "   "}, {"content": "a\x00b"}, {"content": "x" * 4001}, {}):
        response = await http.post(reply_path(waiting), json=bad, headers=crew.headers["ada"])
        assert response.status_code == 400, bad
        assert response.json()["errors"][0]["field"] == "content"
    assert await rows(clean_db, "SELECT count(*) AS n FROM message") == [{"n": 2}]


async def test_notes_mention_operators_who_can_see_the_conversation_and_never_reach_the_visitor(
    api: RunningApi, http: httpx.AsyncClient, clean_db: AsyncEngine, crew: Crew
) -> None:
    session_id = await widget_held_by_ada(http, clean_db, crew)
    bridge = RecordingBridge()
    api.app.state.pocketping.bridges.append(bridge)
    body = "@lea can you check? (cc @Root, @bob is another team, @nobody, mail ada@example.test) @ada."
    async with websockets.connect(f"{api.ws_url}/pocketping/stream?sessionId={session_id}") as socket:
        response = await http.post(
            f"/api/v1/conversations/{session_id}/notes", json={"body": body}, headers=crew.headers["ada"]
        )
        assert response.status_code == 201, response.text
        assert await received(socket) == []
    note = response.json()
    expected = sorted([crew.ids["lea"], crew.ids["root"], crew.ids["ada"]])
    assert note["mentions"] == [str(m) for m in expected]
    assert (note["body"], note["author"]) == (body, {"id": str(crew.ids["ada"]), "displayName": "Ada"})
    [event] = await rows(clean_db, "SELECT kind, team_id, operator_ids, data FROM event")
    assert (event["kind"], event["team_id"], event["operator_ids"]) == ("note.created", crew.team_a, expected)
    assert event["data"] == {
        "conversationId": session_id,
        "noteId": note["id"],
        "authorId": str(crew.ids["ada"]),
        "mentions": [str(m) for m in expected],
    }
    # Not a message: the visitor's history and the operator history hold no trace of it.
    assert await rows(clean_db, "SELECT count(*) AS n FROM message") == [{"n": 0}]
    widget = await http.get("/pocketping/messages", params={"sessionId": session_id})
    assert widget.json()["messages"] == []
    # Nor the chat bridges, which do get a reply.
    assert bridge.operator_messages == []
    reply = await http.post(reply_path(session_id), json={"content": "On it"}, headers=crew.headers["ada"])
    assert bridge.operator_messages == [reply.json()["id"]]

    for index in range(3):
        await http.post(
            f"/api/v1/conversations/{session_id}/notes", json={"body": f"n{index}"}, headers=crew.headers["lea"]
        )
    bodies, cursor = [], None
    while True:
        params: dict[str, Any] = {"limit": 2} | ({"cursor": cursor} if cursor else {})
        page = (
            await http.get(f"/api/v1/conversations/{session_id}/notes", params=params, headers=crew.headers["ada"])
        ).json()
        bodies += [n["body"] for n in page["items"]]
        cursor = page["nextCursor"]
        if cursor is None:
            break
    assert bodies == [body, "n0", "n1", "n2"]
    response = await http.get(f"/api/v1/conversations/{session_id}/notes", headers=crew.headers["bob"])
    assert response.status_code == 404
    response = await http.post(
        f"/api/v1/conversations/{session_id}/notes", json={"body": " "}, headers=crew.headers["ada"]
    )
    assert (response.status_code, response.json()["errors"][0]["field"]) == (400, "body")


async def test_a_note_with_an_idempotency_key_is_stored_once_under_concurrent_duplicates(
    http: httpx.AsyncClient, clean_db: AsyncEngine, crew: Crew
) -> None:
    session_id = await widget_held_by_ada(http, clean_db, crew)
    path = f"/api/v1/conversations/{session_id}/notes"
    headers = crew.headers["ada"] | {"Idempotency-Key": "note-41"}
    responses = await asyncio.gather(
        *(http.post(path, json={"body": "Call back at 5"}, headers=headers) for _ in range(6))
    )
    assert [r.status_code for r in responses] == [201] * 6
    assert len({r.json()["id"] for r in responses}) == 1
    assert sorted(r.headers.get("Idempotent-Replayed", "no") for r in responses) == ["no"] + ["true"] * 5
    assert await rows(clean_db, "SELECT body FROM internal_note") == [{"body": "Call back at 5"}]
    assert await rows(clean_db, "SELECT count(*) AS n FROM event WHERE kind = 'note.created'") == [{"n": 1}]

    response = await http.post(path, json={"body": "Something else"}, headers=headers)
    assert (response.status_code, response.json()["detail"]) == (
        409,
        "This Idempotency-Key was used for a different note",
    )
    lead = crew.headers["lea"] | {"Idempotency-Key": "note-41"}
    response = await http.post(path, json={"body": "Call back at 5"}, headers=lead)
    assert (response.status_code, response.json()["author"]["displayName"]) == (201, "Lea")
    assert "Idempotent-Replayed" not in response.headers
    response = await http.post(path, json={"body": "x"}, headers=crew.headers["ada"] | {"Idempotency-Key": "a b"})
    assert (response.status_code, response.json()["errors"][0]["field"]) == (400, "Idempotency-Key")
    assert await rows(clean_db, "SELECT count(*) AS n FROM internal_note") == [{"n": 2}]


async def test_nul_in_any_route_text_is_a_bad_request_not_a_server_error(
    http: httpx.AsyncClient, clean_db: AsyncEngine, crew: Crew
) -> None:
    root = crew.headers["root"]
    assert (await http.get("/api/v1/conversations/%00", headers=root)).status_code == 404
    for method, path in (("GET", "/routing-decisions"), ("POST", "/claim"), ("POST", "/close")):
        response = await http.request(method, f"/api/v1/conversations/a%00b{path}", headers=root)
        assert (response.status_code, response.json()["detail"]) == (
            400,
            "Text in the request (path, query or body) must not contain NUL characters",
        )
    response = await http.get("/api/v1/conversations", params={"q": "a\x00"}, headers=root)
    assert (response.status_code, response.json()["errors"]) == (
        400,
        [{"field": "q", "message": "NUL characters are not allowed"}],
    )


async def test_a_duplicate_waits_for_the_first_send_only_so_long(
    http: httpx.AsyncClient, clean_db: AsyncEngine, crew: Crew, monkeypatch: pytest.MonkeyPatch
) -> None:
    session_id = await widget_held_by_ada(http, clean_db, crew)
    monkeypatch.setattr(services, "REPLY_LOCK_TIMEOUT_MS", 200)
    headers = crew.headers["ada"] | {"Idempotency-Key": "slow-1"}
    async with clean_db.begin() as conn:  # the first request, still sending
        await advisory_lock(conn, services.reply_message_id(crew.ids["ada"], "slow-1"))
        response = await http.post(reply_path(session_id), json={"content": "Hi"}, headers=headers)
    assert (response.status_code, response.json()["detail"]) == (
        409,
        "A reply with this Idempotency-Key is still being sent; retry shortly",
    )
    assert await rows(clean_db, "SELECT count(*) AS n FROM message") == [{"n": 0}]
    response = await http.post(reply_path(session_id), json={"content": "Hi"}, headers=headers)
    assert response.status_code == 201
