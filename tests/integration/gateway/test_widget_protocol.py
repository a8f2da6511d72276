"""The PocketPing widget 2.6.0's own request patterns (``packages/widget/src/client.ts``) against the gateway."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
import websockets
from pocketping.models import Attachment
from redis.asyncio import Redis
from sqlalchemy.ext.asyncio import AsyncEngine

from service.settings import Settings
from tests.conftest import RunningApi, run_api

# Every request of the widget carries its version; httpx's json= sets Content-Type: application/json as it does.
WIDGET = {"X-PocketPing-Version": "2.6.0"}
# The limiter's clock starts on a window boundary (a multiple of 60 s), so a test knows which window it is in.
START_MS = 1_800_000_000_000
KEYSTROKES = 500
TEXT = ("Hello, the blue kettle I ordered last week has not arrived yet, could you check? " * 7)[:KEYSTROKES]
# One typing change forwarded per session per 2 s: 500 keystrokes at 10/s (50 s) forward 25 of them.
FORWARDED_PER_MESSAGE = 25


class Clock:
    """The limiter's clock, moved by the test: a minute of typing plays in seconds, with the counts of a real one."""

    def __init__(self) -> None:
        self.ms = START_MS

    def __call__(self) -> float:
        return self.ms / 1000

    def advance(self, seconds: float) -> None:
        self.ms += round(seconds * 1000)


def use_clock(api: RunningApi) -> Clock:
    clock = Clock()
    api.app.state.rate_limiter.clock = clock
    return clock


@pytest.fixture
def clock(api: RunningApi) -> Clock:
    return use_clock(api)


@asynccontextmanager
async def limited(settings: Settings, **limits: Any) -> AsyncIterator[tuple[RunningApi, httpx.AsyncClient, Clock]]:
    async with run_api(settings.model_copy(update=limits)) as api, api.client() as http:
        yield api, http, use_clock(api)


async def connect(http: httpx.AsyncClient, visitor_id: str, session_id: str | None = None) -> dict[str, Any]:
    """``connect()``: the stored session id (null on a first visit), the visitor id and the page's metadata."""
    body = {
        "visitorId": visitor_id,
        "sessionId": session_id,
        "metadata": {"url": "https://shop.example/cart", "language": "en-GB", "timezone": "Europe/London"},
    }
    response = await http.post("/pocketping/connect", json=body, headers=WIDGET)
    assert response.status_code == 200, response.text
    return response.json()  # type: ignore[no-any-return]


async def typing(http: httpx.AsyncClient, session_id: str, is_typing: bool = True) -> httpx.Response:
    """``sendTyping()``, which ``handleInputChange`` calls on every keystroke."""
    body = {"sessionId": session_id, "sender": "visitor", "isTyping": is_typing}
    return await http.post("/pocketping/typing", json=body, headers=WIDGET)


class KeepAlive:
    """One keep-alive HTTP/1.1 connection, as a browser holds it, for the keystroke floods.

    httpx spends about 4 ms of this process per request, several times what the gateway does;
    tens of thousands of keystrokes would take minutes through it.
    """

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._reader, self._writer = reader, writer

    async def post(self, path: str, body: dict[str, Any]) -> tuple[int, Any]:
        data = json.dumps(body).encode()
        headers = {"Host": "widget", "Content-Type": "application/json", "Content-Length": len(data), **WIDGET}
        head = f"POST {path} HTTP/1.1\r\n" + "".join(f"{name}: {value}\r\n" for name, value in headers.items())
        self._writer.write(f"{head}\r\n".encode() + data)
        lines = (await self._reader.readuntil(b"\r\n\r\n")).decode().split("\r\n")
        answer = dict(line.lower().split(": ", 1) for line in lines[1:] if line)
        return int(lines[0].split(" ")[1]), json.loads(await self._reader.readexactly(int(answer["content-length"])))


@asynccontextmanager
async def keep_alive(api: RunningApi, count: int) -> AsyncIterator[list[KeepAlive]]:
    host, port = api.url.removeprefix("http://").split(":")
    opened = [await asyncio.open_connection(host, int(port)) for _ in range(count)]
    try:
        yield [KeepAlive(reader, writer) for reader, writer in opened]
    finally:
        for _, writer in opened:
            writer.close()
            await writer.wait_closed()


async def keystroke(connection: KeepAlive, session_id: str) -> None:
    """``sendTyping(true)``, as ``handleInputChange`` sends it on every keystroke."""
    body = {"sessionId": session_id, "sender": "visitor", "isTyping": True}
    assert await connection.post("/pocketping/typing", body) == (200, {"ok": True})


async def send(http: httpx.AsyncClient, session_id: str, content: str, **extra: Any) -> httpx.Response:
    """``sendMessage()``: the box's text as typed, and the ready attachments' ids (none: an empty list)."""
    body = {"sessionId": session_id, "content": content, "sender": "visitor", "attachmentIds": [], **extra}
    return await http.post("/pocketping/message", json=body, headers=WIDGET)


async def poll(http: httpx.AsyncClient, session_id: str, after: str | None = None) -> dict[str, Any]:
    """``fetchMessages(after)`` from the polling loop."""
    params = {"sessionId": session_id} | ({"after": after} if after else {})
    response = await http.get("/pocketping/messages", params=params, headers=WIDGET)
    assert response.status_code == 200, response.text
    return response.json()  # type: ignore[no-any-return]


def last_event_timestamp(messages: list[dict[str, Any]]) -> str | None:
    """``getLastEventTimestamp()``: the latest time any message knows, through a JS ``Date`` (milliseconds)."""
    fields = ("timestamp", "editedAt", "deletedAt", "deliveredAt", "readAt")
    times = [datetime.fromisoformat(m[f]) for m in messages for f in fields if m.get(f)]
    if not times:
        return None
    latest = max(times).astimezone(UTC)
    return latest.strftime("%Y-%m-%dT%H:%M:%S.") + f"{latest.microsecond // 1000:03d}Z"


def merge(known: list[dict[str, Any]], page: list[dict[str, Any]]) -> list[str]:
    """The polling loop's merge: a known id is updated in place, any other message appended; the new ids."""
    where = {m["id"]: i for i, m in enumerate(known)}
    new = []
    for message in page:
        if message["id"] in where:
            known[where[message["id"]]] = message
        else:
            where[message["id"]] = len(known)
            known.append(message)
            new.append(message["id"])
    return new


async def rows(engine: AsyncEngine, sql: str, **params: Any) -> list[Any]:
    async with engine.connect() as conn:
        return list((await conn.execute(sa.text(sql), params)).all())


async def reply(api: RunningApi, session_id: str, content: str) -> str:
    """An operator's reply, as the REST API sends it."""
    pocketping = api.app.state.pocketping
    message = await pocketping.send_as_operator(session_id, content, operator_id=None, operator_name="Olga")
    return str(message.id)


async def events_until_message(socket: Any, message_id: str) -> list[dict[str, Any]]:
    """What the session's socket receives up to and including the message ``message_id``."""
    events = []
    while True:
        event = json.loads(await asyncio.wait_for(socket.recv(), 10))
        events.append(event)
        if event["type"] == "message" and event["data"]["id"] == message_id:
            return events


# Typing never costs a message ---------------------------------------------------------------------


async def test_a_visitor_typing_keystroke_by_keystroke_gets_every_message_sent(
    api: RunningApi, http: httpx.AsyncClient, clock: Clock, clean_db: AsyncEngine
) -> None:
    session_id = (await connect(http, "typist"))["sessionId"]
    sent = []
    async with (
        websockets.connect(f"{api.ws_url}/pocketping/stream?sessionId={session_id}") as socket,
        keep_alive(api, 1) as [browser],
    ):
        for n in range(3):  # 150 s of typing: three windows of the limiter
            for _ in range(KEYSTROKES):
                clock.advance(0.1)
                await keystroke(browser, session_id)
            response = await send(http, session_id, f"{TEXT[:-2]}#{n}")
            assert response.status_code == 200, response.text
            sent.append(response.json()["messageId"])
            events = await events_until_message(socket, sent[-1])
            typed = [e for e in events if e["type"] == "typing"]
            assert (
                typed
                == [{"type": "typing", "data": {"sessionId": session_id, "sender": "visitor", "isTyping": True}}]
                * FORWARDED_PER_MESSAGE
            )
            assert len(events) == FORWARDED_PER_MESSAGE + 1
    stored = await rows(clean_db, "SELECT id, content FROM message ORDER BY seq")
    assert stored == [(sent[n], f"{TEXT[:-2]}#{n}") for n in range(3)]


async def test_forty_visitors_behind_one_address_type_and_send_at_once(
    api: RunningApi, http: httpx.AsyncClient, clock: Clock, clean_db: AsyncEngine, settings: Settings, redis: Redis
) -> None:
    sessions = [(await connect(http, f"office-{n}"))["sessionId"] for n in range(40)]
    async with keep_alive(api, len(sessions)) as browsers:
        for _ in range(KEYSTROKES):
            clock.advance(0.1)
            await asyncio.gather(*(keystroke(b, s) for b, s in zip(browsers, sessions, strict=True)))
    responses = await asyncio.gather(*(send(http, s, f"{TEXT[:-3]}#{n:02}") for n, s in enumerate(sessions)))
    assert [r.status_code for r in responses] == [200] * 40
    # The signals the limiter counted from that address: 40 connects, and one typing change per visitor per 2 s.
    signals = await redis.get(f"{settings.redis_prefix}:rate:signal:127.0.0.1:{START_MS // 1000}")
    assert int(signals) == 40 + 40 * FORWARDED_PER_MESSAGE
    stored = await rows(clean_db, "SELECT conversation_id, content FROM message ORDER BY conversation_id")
    assert stored == sorted((s, f"{TEXT[:-3]}#{n:02}") for n, s in enumerate(sessions))


async def test_typing_repeats_are_answered_without_being_forwarded_or_counted(
    settings: Settings, clean_db: AsyncEngine
) -> None:
    async with limited(settings, widget_signal_limit_per_ip=3) as (api, http, clock):
        clock.advance(15)
        session_id = (await connect(http, "v"))["sessionId"]  # signal 1
        async with websockets.connect(f"{api.ws_url}/pocketping/stream?sessionId={session_id}") as socket:
            statuses = [(await typing(http, session_id)).status_code for _ in range(20)]  # signal 2, then repeats
            assert statuses == [200] * 20
            stopped = await typing(http, session_id, is_typing=False)  # a change goes on at once: signal 3
            assert stopped.status_code == 200
            assert (await typing(http, session_id, is_typing=False)).status_code == 200  # a repeat again
            spent = await http.get("/pocketping/presence", headers=WIDGET)
            assert spent.status_code == 429
            assert spent.headers["Retry-After"] == "45"
            assert spent.json()["detail"] == "Too many requests from this network; retry in 45 s."
            clock.advance(2)
            assert (await typing(http, session_id, is_typing=False)).status_code == 429  # due again: it counts
            # The signals are spent; the visitor's message is not.
            message = await send(http, session_id, "Still there?")
            assert message.status_code == 200
            events = await events_until_message(socket, message.json()["messageId"])
            assert [(e["type"], e["data"].get("isTyping")) for e in events] == [
                ("typing", True),
                ("typing", False),
                ("message", None),
            ]
        assert await rows(clean_db, "SELECT content FROM message") == [("Still there?",)]


async def test_messages_are_limited_per_session_then_per_address(settings: Settings, clean_db: AsyncEngine) -> None:
    async with limited(settings, widget_message_limit_per_session=3, widget_message_limit_per_ip=5) as (_, http, clock):
        clock.advance(15)
        first, second = [(await connect(http, v))["sessionId"] for v in ("first", "second")]
        assert [(await send(http, first, f"a{n}")).status_code for n in range(3)] == [200] * 3
        for _ in range(2):  # refused by the session's budget, these use none of the address's
            refused = await send(http, first, "a-too-many")
            assert refused.status_code == 429
            assert refused.headers["Retry-After"] == "45"
            assert refused.json()["detail"] == "Too many messages from this visitor; retry in 45 s."
        assert [(await send(http, second, f"b{n}")).status_code for n in range(2)] == [200] * 2
        refused = await send(http, second, "b-too-many")
        assert refused.status_code == 429
        assert refused.json()["detail"] == "Too many messages from this network; retry in 45 s."
        clock.advance(45)  # the next window
        assert (await send(http, second, "b-next-minute")).status_code == 200
        # Signals have their own budget, untouched by all this.
        assert (await http.get("/pocketping/presence", headers=WIDGET)).status_code == 200
    stored = await rows(clean_db, "SELECT content FROM message ORDER BY seq")
    assert stored == [("a0",), ("a1",), ("a2",), ("b0",), ("b1",), ("b-next-minute",)]


# History and polling ----------------------------------------------------------------------------------


async def test_a_returning_visitor_gets_the_latest_fifty_messages_newest_last(
    api: RunningApi, http: httpx.AsyncClient, clock: Clock
) -> None:
    first = await connect(http, "returning")
    session_id = first["sessionId"]
    assert first["messages"] == []
    history = []
    for n in range(30):
        clock.advance(3)
        response = await send(http, session_id, f"question {n}")
        assert response.status_code == 200
        history += [response.json()["messageId"], await reply(api, session_id, f"answer {n}")]
    latest = history[-50:]
    # A reload: the widget sends the session and visitor ids it stored.
    again = await connect(http, "returning", session_id)
    assert again["sessionId"] == session_id
    assert [m["id"] for m in again["messages"]] == latest
    assert [m["content"] for m in again["messages"][-2:]] == ["question 29", "answer 29"]
    # With the session id lost, the visitor id finds the same conversation.
    assert [m["id"] for m in (await connect(http, "returning"))["messages"]] == latest
    page = await poll(http, session_id)
    assert ([m["id"] for m in page["messages"]], page["hasMore"]) == (latest, True)


async def test_polling_after_a_timestamp_returns_exactly_the_newer_messages_page_by_page(
    api: RunningApi, http: httpx.AsyncClient, clock: Clock
) -> None:
    session_id = (await connect(http, "poller"))["sessionId"]
    sent = (await send(http, session_id, "Where is my parcel?")).json()
    known: list[dict[str, Any]] = [{"id": sent["messageId"], "timestamp": sent["timestamp"], "sender": "visitor"}]
    replies = [await reply(api, session_id, f"reply {n}") for n in range(120)]

    # After the third reply's own time: exactly the 50 replies that follow it, and more to come.
    third = next(m for m in (await poll(http, session_id, sent["messageId"]))["messages"] if m["id"] == replies[2])
    page = await poll(http, session_id, third["timestamp"])
    assert ([m["id"] for m in page["messages"]], page["hasMore"]) == (replies[3:53], True)
    assert (await poll(http, session_id, replies[-1]))["messages"] == []  # a message id still works

    # The widget's loop, from its own message: its latest time, to the millisecond, each time. What it
    # already has of that last millisecond may come again and is merged; every reply arrives once, in order.
    polls_with_news = 0
    while True:
        page = await poll(http, session_id, last_event_timestamp(known))
        assert len(page["messages"]) <= 50
        if not merge(known, page["messages"]):
            break
        polls_with_news += 1
    assert [m["id"] for m in known] == [sent["messageId"], *replies]
    assert polls_with_news == 3
    assert page["hasMore"] is False


# Blank messages -----------------------------------------------------------------------------------


@pytest.mark.parametrize("content", ["", "   ", "\n\t "])
async def test_blank_messages_are_refused_and_store_nothing(
    http: httpx.AsyncClient, clean_db: AsyncEngine, content: str
) -> None:
    session_id = (await connect(http, "blank"))["sessionId"]
    response = await send(http, session_id, content)
    assert response.status_code == 400
    assert response.headers["content-type"] == "application/problem+json"
    problem = response.json()
    assert (problem["title"], problem["detail"]) == ("Bad Request", "content must not be blank")
    assert problem["errors"] == [{"field": "content", "message": "must not be blank"}]
    assert await rows(clean_db, "SELECT count(*) FROM message") == [(0,)]
    conversation = await rows(clean_db, "SELECT waiting_since, routing_revision FROM conversation")
    assert conversation == [(None, 0)]


async def test_a_message_with_only_an_attachment_is_accepted(
    api: RunningApi, http: httpx.AsyncClient, clean_db: AsyncEngine
) -> None:
    session_id = (await connect(http, "sender-of-files"))["sessionId"]
    uploaded = Attachment(
        id="att-1",
        filename="receipt.png",
        mime_type="image/png",
        size=2048,
        url="https://files.example/receipt.png",
        created_at=datetime.now(UTC),
    )
    await api.app.state.pocketping.storage.save_attachment(uploaded)
    response = await send(http, session_id, "", attachmentIds=["att-1"])
    assert response.status_code == 200, response.text
    message_id = response.json()["messageId"]
    assert await rows(clean_db, "SELECT id, content FROM message") == [(message_id, "")]
    [message] = (await poll(http, session_id))["messages"]
    assert [a["id"] for a in message["attachments"]] == ["att-1"]


# CORS for the beacons ---------------------------------------------------------------------------------


@pytest.mark.parametrize("origins", [["http://shop.example"], ["*"]])
async def test_credentialed_cors_on_the_gateway_for_widget_origins(settings: Settings, origins: list[str]) -> None:
    configured = settings.model_copy(update={"widget_origins": origins, "widget_signal_limit_per_ip": 2})
    async with run_api(configured) as api, api.client() as http:
        origin = {"Origin": "http://shop.example"}
        asks = {"Access-Control-Request-Method": "POST", "Access-Control-Request-Headers": "content-type"}
        for _ in range(3):  # preflights use no budget
            preflight = await http.options("/pocketping/disconnect", headers=origin | asks)
        assert preflight.status_code == 204
        assert {k: v for k, v in preflight.headers.items() if k.startswith("access-control-") or k == "vary"} == {
            "access-control-allow-origin": "http://shop.example",
            "access-control-allow-credentials": "true",
            "access-control-allow-methods": "GET, POST, PUT, PATCH, DELETE",
            "access-control-allow-headers": "Content-Type, X-PocketPing-Version",
            "access-control-max-age": "600",
            "vary": "Origin",
        }
        # The beacon itself: a JSON blob, with the page's cookies.
        beacon = await http.post(
            "/pocketping/visibility",
            content=json.dumps({"sessionId": "s-1", "state": "hidden", "timestamp": 1}),
            headers=origin | {"Content-Type": "application/json", "Cookie": "shop_cart=42"},
        )
        assert beacon.status_code == 204
        assert beacon.headers["access-control-allow-origin"] == "http://shop.example"
        assert beacon.headers["access-control-allow-credentials"] == "true"
        assert beacon.headers["vary"] == "Origin"
        assert beacon.headers["access-control-expose-headers"] == (
            "X-PocketPing-Version-Status, X-PocketPing-Min-Version, X-PocketPing-Latest-Version, "
            "X-PocketPing-Version-Message"
        )
        # A refusal carries them too, so the page can read it.
        assert (await http.get("/pocketping/presence", headers=origin)).status_code == 200
        refused = await http.get("/pocketping/presence", headers=origin)
        assert (refused.status_code, refused.headers["access-control-allow-origin"]) == (429, "http://shop.example")
        # Only the gateway answers other origins: not the REST API, not the dashboard.
        for path in ("/healthz", "/api/v1/me"):
            response = await http.get(path, headers=origin)
            assert "access-control-allow-origin" not in response.headers


async def test_no_cors_for_origins_not_listed(settings: Settings) -> None:
    configured = settings.model_copy(update={"widget_origins": ["http://shop.example"]})
    async with run_api(configured) as api, api.client() as http:
        evil = {"Origin": "http://evil.example"}
        preflight = await http.options(
            "/pocketping/disconnect", headers=evil | {"Access-Control-Request-Method": "POST"}
        )
        presence = await http.get("/pocketping/presence", headers=evil)
        for response in (preflight, presence):
            assert [k for k in response.headers if k.startswith("access-control-")] == []
