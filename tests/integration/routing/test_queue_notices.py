"""Queue transparency: queued visitors told their place and estimated wait on their widget, by real worker processes."""

from __future__ import annotations

import asyncio
import json
import uuid
from contextlib import AsyncExitStack
from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa
import websockets
from arq import create_pool
from pocketping.models import Message, Sender
from sqlalchemy.ext.asyncio import AsyncEngine

from service.queue import enqueue_notices
from service.resources import redis_settings
from service.routing import queue_notices
from service.routing.placement import DEFAULT_TEAM_NAME
from service.settings import Settings
from tests.conftest import RunningApi
from tests.factories import add_member, bearer, make_operator, make_team, personal_token
from tests.integration.workers.test_worker import run_burst
from tests.support.routing import make_conversation, rows
from tests.support.routing_worker import worker_processes

NOTICE_WAIT_SECONDS = 15.0


async def past_assignments(engine: AsyncEngine, team_id: uuid.UUID, operator_id: uuid.UUID, minutes_ago: list[int]):
    """Closed conversations of the team, each assigned ``minutes_ago`` minutes before now (the rate's history)."""
    for minutes in minutes_ago:
        started = datetime.now(UTC) - timedelta(minutes=minutes)
        conversation_id, _ = await make_conversation(engine, team_id, status="closed", closed_at=started)
        async with engine.begin() as conn:
            await conn.execute(
                sa.text(
                    "INSERT INTO assignment (conversation_id, operator_id, team_id, reason, started_at, ended_at) "
                    "VALUES (:c, :o, :t, 'routed', :s, :s)"
                ),
                {"c": conversation_id, "o": operator_id, "t": team_id, "s": started},
            )


def shown(event: dict[str, Any]) -> tuple[str, str]:
    """A widget event about a queue notice: ``(event type, content)``; a new one must be an SDK ``Message``."""
    if event["type"] == "message":
        message = Message.model_validate(event["data"])
        assert message.sender is Sender.OPERATOR
        assert message.metadata is not None and message.metadata["kind"] == queue_notices.NOTICE_KIND
        return "message", message.content
    assert event["type"] == "message_edited"
    assert event["data"]["editedAt"] is not None
    return "message_edited", event["data"]["content"]


def is_notice(event: dict[str, Any]) -> bool:
    return (event["type"] == "message" and event["data"]["sender"] != "visitor") or event["type"] == "message_edited"


async def notices(socket: Any, count: int) -> list[tuple[str, str]]:
    """The next ``count`` queue notice events on the socket (other events, such as presence, are skipped)."""
    found: list[tuple[str, str]] = []
    async with asyncio.timeout(NOTICE_WAIT_SECONDS):
        while len(found) < count:
            event = json.loads(await socket.recv())
            if is_notice(event):
                found.append(shown(event))
    return found


async def no_more_notices(socket: Any, quiet: float = 1.5) -> list[dict[str, Any]]:
    """Notice events that arrive within ``quiet`` seconds (expected: none)."""
    extra = []
    try:
        async with asyncio.timeout(quiet):
            while True:
                event = json.loads(await socket.recv())
                if is_notice(event):
                    extra.append(event)
    except TimeoutError:
        return extra


async def visitor_waits(api: RunningApi, stack: AsyncExitStack, name: str) -> tuple[str, Any]:
    """A visitor connects, opens the widget's stream and asks for help; their session id and socket."""
    async with api.client() as http:
        session_id = (await http.post("/pocketping/connect", json={"visitorId": name})).json()["sessionId"]
        socket = await stack.enter_async_context(
            websockets.connect(f"{api.ws_url}/pocketping/stream?sessionId={session_id}")
        )
        sent = await http.post(
            "/pocketping/message", json={"sessionId": session_id, "content": "help", "sender": "visitor"}
        )
        assert sent.status_code == 200
    return session_id, socket


def text(position: int, minutes: int) -> str:
    return f"You are number {position} in the queue. Estimated wait: about {minutes} minutes."


async def test_queued_visitors_are_told_their_place_and_told_again_only_when_the_wait_moves_a_minute(
    api: RunningApi, settings: Settings, clean_db: AsyncEngine
) -> None:
    team_id = await make_team(
        clean_db, DEFAULT_TEAM_NAME, is_default=True, routing_policy="round_robin", queue_notices=True
    )
    ada = await make_operator(clean_db, "Ada")  # offline: everyone waits
    await add_member(clean_db, team_id, ada, capacity=1)
    # 6 assignments in the last 30 minutes (0.2 a minute: 5 minutes a place); older ones do not count.
    await past_assignments(clean_db, team_id, ada, [3, 8, 12, 17, 22, 28, 35, 50, 70])
    async with worker_processes(settings, 2), AsyncExitStack() as stack:
        first, first_socket = await visitor_waits(api, stack, "v-1")
        assert await notices(first_socket, 1) == [("message", text(1, 5))]
        second, second_socket = await visitor_waits(api, stack, "v-2")
        assert await notices(second_socket, 1) == [("message", text(2, 10))]
        third, third_socket = await visitor_waits(api, stack, "v-3")
        assert await notices(third_socket, 1) == [("message", text(3, 15))]
        # A newcomer behind them changes nobody's wait.
        assert await no_more_notices(first_socket, quiet=0.5) == []
        assert await no_more_notices(second_socket, quiet=0.5) == []

        # Ada comes online and takes the first: 7 assignments in 30 minutes, 30/7 = 4.29 minutes a place.
        async with api.client() as http:
            online = await http.put(
                "/api/v1/me/presence", json={"status": "online"}, headers=bearer(await personal_token(clean_db, ada))
            )
            assert online.status_code == 200
        assert await notices(second_socket, 1) == [("message_edited", text(1, 5))]  # 4.29, was 10
        assert await notices(third_socket, 1) == [("message_edited", text(2, 9))]  # 8.57, was 15
        assert await no_more_notices(first_socket) == []

        # One more assignment elsewhere in the team: 3.75 (was 4.29, under a minute: not told) and 7.5 (was 8.57).
        await past_assignments(clean_db, team_id, ada, [1])
        arq = await create_pool(redis_settings(settings), default_queue_name=settings.queue_name)
        await enqueue_notices(arq, team_id)
        await arq.aclose()
        assert await notices(third_socket, 1) == [("message_edited", text(2, 8))]
        assert await no_more_notices(second_socket) == []

    # One notice per visitor, edited in place; the widget's history shows it as GET /messages returns it.
    stored = await rows(
        clean_db,
        "SELECT conversation_id, content, message_metadata AS meta, edited_at IS NOT NULL AS edited FROM message "
        "WHERE sender = 'system' ORDER BY seq",
    )
    assert stored == [
        {"conversation_id": first, "content": text(1, 5), "meta": notice(1, 5.0), "edited": False},
        {"conversation_id": second, "content": text(1, 5), "meta": notice(1, 4.286), "edited": True},
        {"conversation_id": third, "content": text(2, 8), "meta": notice(2, 7.5), "edited": True},
    ]
    async with api.client() as http:
        history = (await http.get("/pocketping/messages", params={"sessionId": third})).json()["messages"]
    assert [(m["sender"], m["content"]) for m in history] == [("visitor", "help"), ("operator", text(2, 8))]


def notice(position: int, estimate: float) -> dict[str, Any]:
    return {"kind": queue_notices.NOTICE_KIND, "position": position, "estimate": estimate}


async def test_a_team_with_notices_off_tells_nobody(api: RunningApi, settings: Settings, clean_db: AsyncEngine) -> None:
    await make_team(clean_db, DEFAULT_TEAM_NAME, is_default=True, routing_policy="round_robin", queue_notices=False)
    async with api.client() as http:
        session_id = (await http.post("/pocketping/connect", json={"visitorId": "v-quiet"})).json()["sessionId"]
        body = {"sessionId": session_id, "content": "help", "sender": "visitor"}
        assert (await http.post("/pocketping/message", json=body)).status_code == 200
    worker = await run_burst(settings)
    assert worker.jobs_failed == 0
    assert await rows(clean_db, "SELECT status FROM conversation") == [{"status": "queued"}]
    assert await rows(clean_db, "SELECT id FROM message WHERE sender = 'system'") == []


async def test_a_queue_of_a_thousand_costs_four_statements_a_run_and_is_told_front_first(clean_db: AsyncEngine) -> None:
    team_id = await make_team(clean_db, "Big", queue_notices=True)
    base = datetime.now(UTC) - timedelta(hours=1)
    async with clean_db.begin() as conn:
        for n in range(1000):
            await make_conversation(
                conn, team_id, id=f"q-{n:04}", status="queued", waiting_since=base + timedelta(seconds=n)
            )
    statements: list[str] = []

    def count(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        statements.append(statement)

    sa.event.listen(clean_db.sync_engine, "before_cursor_execute", count)
    try:
        async with clean_db.begin() as conn:
            told = await queue_notices.refresh(conn, team_id)
    finally:
        sa.event.remove(clean_db.sync_engine, "before_cursor_execute", count)
    assert (len(told.created), told.edited, len(statements)) == (queue_notices.MAX_NOTICES_PER_RUN, [], 4)
    # No assignment lately: the floor (one per 30 minutes) gives 30 minutes a place, capped at 2 hours.
    told_rows = await rows(clean_db, "SELECT conversation_id, content FROM message ORDER BY conversation_id")
    assert told_rows[0] == {"conversation_id": "q-0000", "content": text(1, 30)}
    assert told_rows[3] == {
        "conversation_id": "q-0003",
        "content": "You are number 4 in the queue. Estimated wait: more than 2 hours.",
    }
    assert told_rows[-1]["conversation_id"] == "q-0099"
    async with clean_db.begin() as conn:
        again = await queue_notices.refresh(conn, team_id)
    assert len(again.created) == queue_notices.MAX_NOTICES_PER_RUN
    assert await rows(clean_db, "SELECT max(conversation_id) AS last FROM message") == [{"last": "q-0199"}]


def test_the_estimate_floors_the_rate_caps_the_wait_and_rounds_up() -> None:
    assert queue_notices.estimate_minutes(1, 0) == 30.0
    assert queue_notices.estimate_minutes(2, 60) == 1.0
    assert queue_notices.estimate_minutes(1000, 1) == queue_notices.MAX_WAIT_MINUTES
    assert queue_notices.notice_text(1, 0.2) == "You are number 1 in the queue. Estimated wait: about 1 minute."
    assert queue_notices.notice_text(3, 4.01) == text(3, 5)
    assert queue_notices.needs_telling(None, 3.0)
    assert not queue_notices.needs_telling({"estimate": 3.5}, 2.6)
    assert queue_notices.needs_telling({"estimate": 3.5}, 2.5)
