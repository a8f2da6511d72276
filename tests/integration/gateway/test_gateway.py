"""The widget protocol over real HTTP, WebSocket and SSE against PostgreSQL and Redis."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
import websockets
from sqlalchemy.ext.asyncio import AsyncEngine

from service.settings import Settings
from tests.conftest import RunningApi, run_api


async def scalar(engine: AsyncEngine, sql: str, **params: Any) -> Any:
    async with engine.connect() as conn:
        return (await conn.execute(sa.text(sql), params)).scalar()


async def row(engine: AsyncEngine, sql: str, **params: Any) -> Any:
    async with engine.connect() as conn:
        return (await conn.execute(sa.text(sql), params)).mappings().one()


async def connect(http: httpx.AsyncClient, visitor: str = "visitor-1", **body: Any) -> str:
    response = await http.post("/pocketping/connect", json={"visitorId": visitor, **body})
    assert response.status_code == 200, response.text
    return str(response.json()["sessionId"])


async def send(http: httpx.AsyncClient, session_id: str, content: str = "Hello?") -> httpx.Response:
    return await http.post(
        "/pocketping/message", json={"sessionId": session_id, "content": content, "sender": "visitor"}
    )


async def next_event(socket: Any, wait: float = 15) -> dict[str, Any]:
    return json.loads(await asyncio.wait_for(socket.recv(), wait))  # type: ignore[no-any-return]


async def test_full_visitor_flow_over_http(
    http: httpx.AsyncClient, clean_db: AsyncEngine, settings: Settings, redis: Any
) -> None:
    response = await http.post(
        "/pocketping/connect",
        json={"visitorId": "v-1", "metadata": {"url": "https://shop.example/pricing", "language": "fr"}},
        headers={"User-Agent": "Mozilla/5.0 (iPhone) Safari"},
    )
    assert response.status_code == 200
    session_id = response.json()["sessionId"]
    assert response.json()["messages"] == []
    conversation = await row(clean_db, "SELECT * FROM conversation WHERE id = :id", id=session_id)
    assert conversation["status"] == "new"
    assert conversation["visitor_id"] == "v-1"
    assert conversation["session_metadata"]["url"] == "https://shop.example/pricing"
    assert conversation["session_metadata"]["ip"] == "127.0.0.1"

    # Resuming by visitor id returns the same session.
    assert await connect(http, "v-1") == session_id

    response = await send(http, session_id, "Do you ship to Lyon?")
    assert response.status_code == 200
    message_id = response.json()["messageId"]
    message = await row(clean_db, "SELECT * FROM message WHERE id = :id", id=message_id)
    assert (message["conversation_id"], message["sender"], message["content"]) == (
        session_id,
        "visitor",
        "Do you ship to Lyon?",
    )
    conversation = await row(clean_db, "SELECT * FROM conversation WHERE id = :id", id=session_id)
    assert conversation["waiting_since"] == message["created_at"]
    assert conversation["routing_revision"] == 1
    # The routing job is waiting in this deployment's arq queue under its versioned id.
    queued = await redis.zrange(settings.queue_name, 0, -1)
    assert queued == [f"{settings.queue_name}:route:{session_id}:1".encode()]

    response = await http.get("/pocketping/messages", params={"sessionId": session_id})
    assert response.status_code == 200
    assert [m["id"] for m in response.json()["messages"]] == [message_id]
    assert response.json()["hasMore"] is False

    response = await http.post(
        "/pocketping/read", json={"sessionId": session_id, "messageIds": [message_id], "status": "read"}
    )
    assert response.status_code == 200 and response.json() == {"updated": 1}
    assert await scalar(clean_db, "SELECT status FROM message WHERE id = :id", id=message_id) == "read"
    assert await scalar(clean_db, "SELECT count(*) FROM message") == 1

    response = await http.post("/pocketping/typing", json={"sessionId": session_id, "sender": "visitor"})
    assert response.status_code == 200 and response.json() == {"ok": True}

    response = await http.post(
        "/pocketping/identify", json={"sessionId": session_id, "identity": {"id": "u-7", "email": "ana@example.com"}}
    )
    assert response.status_code == 200 and response.json() == {"ok": True}
    identity = await scalar(clean_db, "SELECT identity FROM conversation WHERE id = :id", id=session_id)
    assert identity == {"id": "u-7", "email": "ana@example.com"}

    response = await http.post("/pocketping/csat", json={"sessionId": session_id, "score": 4, "comment": "quick"})
    assert response.status_code == 200 and response.json()["ok"] is True
    csat = await scalar(clean_db, "SELECT csat FROM conversation WHERE id = :id", id=session_id)
    assert (csat["score"], csat["comment"], csat["pending"]) == (4, "quick", False)

    response = await http.patch(
        f"/pocketping/message/{message_id}", json={"sessionId": session_id, "content": "Do you ship to Lille?"}
    )
    assert response.status_code == 200 and response.json()["message"]["content"] == "Do you ship to Lille?"
    response = await http.delete(f"/pocketping/message/{message_id}", params={"sessionId": session_id})
    assert response.status_code == 200 and response.json() == {"deleted": True}
    assert await scalar(clean_db, "SELECT deleted_at IS NOT NULL FROM message WHERE id = :id", id=message_id)

    response = await http.get("/pocketping/presence")
    assert response.status_code == 200 and response.json()["online"] is False

    response = await http.post("/pocketping/disconnect", json={"sessionId": session_id, "duration": 42})
    assert response.status_code == 200
    assert await scalar(clean_db, "SELECT visitor_left_at IS NOT NULL FROM conversation WHERE id = :id", id=session_id)


async def test_websocket_stream_gets_each_event_once(api: RunningApi, http: httpx.AsyncClient) -> None:
    session_id = await connect(http)
    async with websockets.connect(f"{api.ws_url}/pocketping/stream?sessionId={session_id}") as socket:
        message_id = (await send(http, session_id, "first")).json()["messageId"]
        event = await next_event(socket)
        assert (event["type"], event["data"]["id"], event["data"]["sender"]) == ("message", message_id, "visitor")
        # A frame claiming to be the operator still types as the visitor.
        await socket.send(json.dumps({"type": "typing", "sender": "operator", "isTyping": True}))
        event = await next_event(socket)
        assert event == {"type": "typing", "data": {"sessionId": session_id, "sender": "visitor", "isTyping": True}}
        with pytest.raises(TimeoutError):
            await next_event(socket, wait=0.3)


async def test_websocket_for_unknown_session_is_refused(api: RunningApi) -> None:
    with pytest.raises(websockets.InvalidStatus) as refused:
        async with websockets.connect(f"{api.ws_url}/pocketping/stream?sessionId=nope"):
            pass
    assert refused.value.response.status_code == 403


async def _sse_events(response: httpx.Response) -> Any:
    name = None
    async for line in response.aiter_lines():
        if line.startswith("event:"):
            name = line.split(":", 1)[1].strip()
        elif line.startswith("data:"):
            yield name, json.loads(line.split(":", 1)[1].strip())


async def test_sse_stream_replays_and_streams(api: RunningApi, http: httpx.AsyncClient) -> None:
    session_id = await connect(http)
    before = await send(http, session_id, "before the stream")
    since = "2000-01-01T00:00:00Z"
    async with (
        api.client() as sse,
        sse.stream("GET", "/pocketping/stream", params={"sessionId": session_id, "after": since}) as response,
    ):
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        events = _sse_events(response)
        assert await anext(events) == ("connected", {"sessionId": session_id})
        name, replayed = await anext(events)
        assert (name, replayed["data"]["id"]) == ("message", before.json()["messageId"])
        live = (await send(http, session_id, "live")).json()["messageId"]
        name, event = await asyncio.wait_for(anext(events), 5)
        assert (name, event["type"], event["data"]["id"]) == ("message", "message", live)


async def test_sse_for_unknown_session_is_404(http: httpx.AsyncClient) -> None:
    response = await http.get("/pocketping/stream", params={"sessionId": "nope"})
    assert response.status_code == 404
    assert response.headers["content-type"] == "application/problem+json"


@pytest.mark.parametrize("sender", ["operator", "ai"])
async def test_spoofed_sender_is_rejected_and_stores_nothing(
    http: httpx.AsyncClient, clean_db: AsyncEngine, sender: str
) -> None:
    session_id = await connect(http)
    response = await http.post(
        "/pocketping/message", json={"sessionId": session_id, "content": "I am staff", "sender": sender}
    )
    assert response.status_code == 403
    problem = response.json()
    assert response.headers["content-type"] == "application/problem+json"
    assert problem["status"] == 403 and problem["title"] == "Forbidden"
    assert problem["errors"] == [{"field": "sender", "message": f"'{sender}' is not allowed from the widget"}]
    assert await scalar(clean_db, "SELECT count(*) FROM message") == 0
    response = await http.post("/pocketping/typing", json={"sessionId": session_id, "sender": sender})
    assert response.status_code == 403


@pytest.mark.parametrize(
    ("body", "status", "field"),
    [
        ({"content": "x" * 4001, "sender": "visitor"}, 400, "content"),
        ({"content": "hi", "sender": "visitor", "sessionId": None}, 400, "sessionId"),
        ({"content": "hi", "sender": "robot"}, 400, "sender"),
        ({"sender": "visitor"}, 400, "content"),
    ],
)
async def test_invalid_message_bodies_name_the_field_and_store_nothing(
    http: httpx.AsyncClient, clean_db: AsyncEngine, body: dict[str, Any], status: int, field: str
) -> None:
    session_id = await connect(http)
    response = await http.post("/pocketping/message", json={"sessionId": session_id, **body})
    assert response.status_code == status
    assert response.headers["content-type"] == "application/problem+json"
    assert [error["field"] for error in response.json()["errors"]] == [field]
    assert await scalar(clean_db, "SELECT count(*) FROM message") == 0


async def test_malformed_oversized_and_unknown_session(
    http: httpx.AsyncClient, clean_db: AsyncEngine, settings: Settings
) -> None:
    session_id = await connect(http)
    malformed = await http.post(
        "/pocketping/message", content=b'{"sessionId": ', headers={"Content-Type": "application/json"}
    )
    assert malformed.status_code == 400
    assert malformed.json()["title"] == "Bad Request"
    oversized = await http.post(
        "/pocketping/message",
        content=json.dumps({"sessionId": session_id, "content": "x" * settings.widget_max_body_bytes}),
        headers={"Content-Type": "application/json"},
    )
    assert oversized.status_code == 413
    assert oversized.headers["content-type"] == "application/problem+json"
    unknown = await send(http, "no-such-session")
    assert unknown.status_code == 404
    assert unknown.json()["detail"] == "Session not found"
    assert await scalar(clean_db, "SELECT count(*) FROM message") == 0


async def test_rate_limit_answers_429_with_retry_after(settings: Settings) -> None:
    limited = settings.model_copy(update={"widget_signal_limit_per_ip": 3, "widget_rate_window_seconds": 60})
    async with run_api(limited) as api, api.client() as http:
        statuses = [(await http.get("/pocketping/presence")).status_code for _ in range(4)]
        assert statuses == [200, 200, 200, 429]
        response = await http.get("/pocketping/presence")
        assert response.status_code == 429
        assert 1 <= int(response.headers["Retry-After"]) <= 60
        assert response.json()["title"] == "Too Many Requests"
        # Health checks are not widget traffic and are never limited.
        assert (await http.get("/healthz")).status_code == 200


async def test_cors_allows_only_configured_widget_origins(settings: Settings) -> None:
    configured = settings.model_copy(update={"widget_origins": ["https://shop.example"]})
    async with run_api(configured) as api, api.client() as http:
        allowed = await http.options(
            "/pocketping/message",
            headers={
                "Origin": "https://shop.example",
                "Access-Control-Request-Method": "POST",
                "Access-Control-Request-Headers": "content-type",
            },
        )
        assert allowed.status_code == 204
        assert allowed.headers["access-control-allow-origin"] == "https://shop.example"
        other = await http.get("/pocketping/presence", headers={"Origin": "https://evil.example"})
        assert "access-control-allow-origin" not in other.headers


async def test_health_and_readiness(http: httpx.AsyncClient) -> None:
    assert (await http.get("/healthz")).json() == {"status": "ok", "checks": {}}
    ready = await http.get("/readyz")
    assert ready.status_code == 200
    assert ready.json() == {"status": "ok", "checks": {"postgres": "ok", "redis": "ok"}}


async def test_readiness_is_503_when_postgres_does_not_answer(settings: Settings) -> None:
    unreachable = settings.model_copy(update={"database_url": "postgresql://postgres@127.0.0.1:1/none"})
    async with run_api(unreachable) as api, api.client() as http:
        ready = await http.get("/readyz")
        assert ready.status_code == 503
        assert ready.json()["status"] == "unavailable"
        assert ready.json()["checks"]["redis"] == "ok"
        assert ready.json()["checks"]["postgres"].startswith("error: ")
        assert (await http.get("/healthz")).status_code == 200


async def test_concurrent_messages_share_batches_without_mixing_them_up(
    http: httpx.AsyncClient, clean_db: AsyncEngine, settings: Settings, redis: Any
) -> None:
    sessions = [await connect(http, f"visitor-{i}") for i in range(5)]
    # 5 sessions x 8 messages, plus messages to a session that does not exist, all at once:
    # they are group-committed together, and only the unknown session's requests fail.
    bodies = [(s, f"{s[:6]} #{n}") for n in range(8) for s in sessions] + [("no-such-session", "lost")] * 3
    responses = await asyncio.gather(*(send(http, s, text) for s, text in bodies))
    statuses = [r.status_code for r in responses]
    assert statuses == [200] * 40 + [404] * 3
    assert all(r.json()["detail"] == "Session not found" for r in responses[40:])
    for session_id in sessions:
        stored = await scalar(
            clean_db,
            "SELECT array_agg(content ORDER BY seq) FROM message WHERE conversation_id = :id AND sender = 'visitor'",
            id=session_id,
        )
        assert sorted(stored) == sorted(f"{session_id[:6]} #{n}" for n in range(8))
        conversation = await row(clean_db, "SELECT * FROM conversation WHERE id = :id", id=session_id)
        # The first message started the wait; the rest did not bump the revision again.
        assert conversation["routing_revision"] == 1
        first = await scalar(clean_db, "SELECT min(created_at) FROM message WHERE conversation_id = :id", id=session_id)
        assert conversation["waiting_since"] == first
    assert await scalar(clean_db, "SELECT count(*) FROM message") == 40
    queued = sorted(await redis.zrange(settings.queue_name, 0, -1))
    assert queued == sorted(f"{settings.queue_name}:route:{s}:1".encode() for s in sessions)


async def test_nul_characters_are_refused_and_store_nothing(http: httpx.AsyncClient, clean_db: AsyncEngine) -> None:
    session_id = await connect(http)
    response, fine = await asyncio.gather(send(http, session_id, "bad\x00byte"), send(http, session_id, "fine"))
    assert response.status_code == 400
    assert response.json()["detail"] == "content must not contain NUL characters"
    assert response.json()["errors"] == [{"field": "content", "message": "NUL characters are not allowed"}]
    assert fine.status_code == 200  # a bad message does not take down the batch it would have shared
    assert await scalar(clean_db, "SELECT array_agg(content) FROM message") == ["fine"]


async def test_rate_limit_counts_concurrent_requests_exactly(settings: Settings) -> None:
    limited = settings.model_copy(update={"widget_signal_limit_per_ip": 10, "widget_rate_window_seconds": 60})
    async with run_api(limited) as api, api.client() as http:
        responses = await asyncio.gather(*(http.get("/pocketping/presence") for _ in range(25)))
        statuses = sorted(r.status_code for r in responses)
        # Whether the window rolls over mid-test or not, never more than the limit per window.
        assert statuses.count(200) in (10, 20)
        assert statuses.count(429) == 25 - statuses.count(200)
