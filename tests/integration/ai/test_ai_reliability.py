"""The AI reply never drops a visitor: PocketPing's vendor providers against loopback stand-ins of the vendors'
HTTP APIs, retried on a vendor error, sent once after a worker crash, handed back to humans when the vendor is down.
"""

from __future__ import annotations

import asyncio
import signal
import time
from collections.abc import Iterator
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from service.settings import Settings
from tests.conftest import RunningApi
from tests.integration.ai.test_ai_takeover import open_session, support_team, visitor_says
from tests.integration.workers.test_worker import run_burst
from tests.standins.ai_vendors import ANTHROPIC, GEMINI, OPENAI, AiVendorStandIn
from tests.support.routing import rows
from tests.support.routing_worker import start_worker, stop_worker

KEY = "sk-test-3f9a61c0d2"
PROMPT = "You answer for Acme."  # support_team's system prompt


@pytest.fixture
def vendor() -> Iterator[AiVendorStandIn]:
    standin = AiVendorStandIn(KEY).start()
    try:
        yield standin
    finally:
        standin.release()
        standin.stop()


def using(settings: Settings, vendor: AiVendorStandIn, name: str, **more: Any) -> Settings:
    """Worker settings with the real provider ``name`` pointed at the stand-in, and quick retries."""
    update = {"ai_provider": name, "ai_api_key": KEY, "ai_base_url": vendor.base_url_of(name)}
    return settings.model_copy(update=update | {"outbox_retry_base_seconds": 0.2} | more)


async def visitor_waits(api: RunningApi, engine: AsyncEngine) -> str:
    """The AI team (a 1 s takeover delay, nobody online) and a visitor's question; the session id."""
    await support_team(engine, delay=1)
    session_id = await open_session(api)
    await visitor_says(api, session_id, "Where is my parcel?")
    return session_id


async def ai_messages(engine: AsyncEngine) -> list[dict[str, Any]]:
    return await rows(engine, "SELECT id, content FROM message WHERE sender = 'ai' ORDER BY seq")


async def work_until(settings: Settings, done: Any, bursts: int = 6) -> None:
    """Burst workers, one after another, until ``done()`` (a job may enqueue a later one a burst does not wait for)."""
    for _ in range(bursts):
        assert (await run_burst(settings)).jobs_failed == 0
        if await done():
            return
    raise AssertionError("the work was not done")


async def ai_events(engine: AsyncEngine) -> list[dict[str, Any]]:
    return await rows(engine, "SELECT kind, data FROM event WHERE kind LIKE 'ai.%' ORDER BY id")


@pytest.mark.parametrize("name", [OPENAI, ANTHROPIC, GEMINI])
async def test_each_vendor_provider_answers_through_its_http_api(
    api: RunningApi, settings: Settings, clean_db: AsyncEngine, vendor: AiVendorStandIn, name: str
) -> None:
    await visitor_waits(api, clean_db)
    worker_settings = using(settings, vendor, name)
    await work_until(worker_settings, lambda: vendor.calls_to(name) and ai_messages(clean_db))

    [call] = vendor.calls_to(name)
    assert call.status == 200
    if name == OPENAI:
        assert (call.token, call.body["model"]) == (KEY, "gpt-4o-mini")
        assert call.body["messages"] == [
            {"role": "system", "content": PROMPT},
            {"role": "user", "content": "Where is my parcel?"},
        ]
    elif name == ANTHROPIC:
        assert (call.token, call.headers["anthropic-version"], call.body["system"]) == (KEY, "2023-06-01", PROMPT)
        assert call.body["messages"] == [{"role": "user", "content": "Where is my parcel?"}]
    else:
        assert call.token == KEY
        assert call.body["contents"] == [
            {"role": "user", "parts": [{"text": f"{PROMPT}\n\nUser: Where is my parcel?"}]}
        ]
    [message] = await ai_messages(clean_db)
    assert message["content"] == vendor.reply


async def test_a_vendor_error_is_retried_and_the_visitor_gets_one_reply(
    api: RunningApi, settings: Settings, clean_db: AsyncEngine, vendor: AiVendorStandIn
) -> None:
    await visitor_waits(api, clean_db)
    vendor.fail_next(500)
    worker_settings = using(settings, vendor, OPENAI)
    await work_until(worker_settings, lambda: ai_messages(clean_db))

    assert [call.status for call in vendor.calls_to(OPENAI)] == [500, 200]
    [message] = await ai_messages(clean_db)
    assert message["content"] == vendor.reply
    [row] = await rows(clean_db, "SELECT kind, attempts, delivered_at IS NOT NULL AS sent FROM outbox")
    assert row == {"kind": "ai_reply", "attempts": 2, "sent": True}  # tries, the one that sent included
    assert [e["kind"] for e in await ai_events(clean_db)] == ["ai.takeover"]

    # A crash after the send, before the row was marked sent: the sweep's retry finds the reply stored.
    async with clean_db.begin() as conn:
        await conn.execute(sa.text("UPDATE outbox SET delivered_at = NULL, available_at = now()"))
    assert (await run_burst(worker_settings)).jobs_failed == 0  # its sweep runs at start-up
    assert len(vendor.calls_to(OPENAI)) == 2
    assert [m["id"] for m in await ai_messages(clean_db)] == [message["id"]]
    [sent] = await rows(clean_db, "SELECT delivered_at IS NOT NULL AS sent FROM outbox")
    assert sent == {"sent": True}


async def test_a_vendor_that_stays_down_hands_the_visitor_back_to_humans(
    api: RunningApi, settings: Settings, clean_db: AsyncEngine, vendor: AiVendorStandIn
) -> None:
    session_id = await visitor_waits(api, clean_db)
    [team_id] = [t["id"] for t in await rows(clean_db, "SELECT id FROM team")]
    vendor.fail_next(500, 503, 500, 500, 500)
    worker_settings = using(settings, vendor, ANTHROPIC, ai_max_attempts=3, ai_handback_seconds=20.0)

    async def handed_back() -> bool:
        return any(e["kind"] == "ai.handed_back" for e in await ai_events(clean_db))

    await work_until(worker_settings, handed_back)
    assert [call.status for call in vendor.calls_to(ANTHROPIC)] == [500, 503, 500]
    assert await ai_messages(clean_db) == []
    [conversation] = await rows(clean_db, "SELECT status, priority, ai_active, ai_paused FROM conversation")
    # Nobody was online: it waits, now ahead of the conversations of its former priority, with AI paused.
    assert conversation == {"status": "queued", "priority": 1, "ai_active": False, "ai_paused": True}
    events = await rows(clean_db, "SELECT kind, team_id, data FROM event WHERE kind LIKE 'ai.%' ORDER BY id")
    assert [(e["kind"], e["team_id"]) for e in events] == [
        ("ai.takeover", team_id),
        ("ai.state_changed", team_id),
        ("ai.handed_back", team_id),
    ]
    assert events[1]["data"] == {
        "conversationId": session_id,
        "aiActive": False,
        "aiPaused": True,
        "reason": "ai_failed",
        "actorId": None,
    }
    handed = events[2]["data"]
    assert (handed["attempts"], handed["requeuedAhead"]) == (3, True)
    assert handed["error"].startswith("HTTPStatusError: Server error '500 Internal Server Error'")
    [row] = await rows(
        clean_db, "SELECT attempts, delivered_at IS NOT NULL AS done FROM outbox WHERE kind = 'ai_reply'"
    )
    assert row == {"attempts": 3, "done": True}  # handing back is the row's outcome: nothing left to retry
    # The team's lead is told, as an SLA escalation tells them (stream, bridge DM, push).
    [lead] = [r["operator_id"] for r in await rows(clean_db, "SELECT operator_id FROM team_member WHERE role = 'lead'")]
    [told] = await rows(clean_db, "SELECT team_id, operator_ids, data FROM event WHERE kind = 'leads.alerted'")
    assert told == {
        "team_id": team_id,
        "operator_ids": [lead],
        "data": {"conversationId": session_id, "reason": "ai_handed_back", "leadIds": [str(lead)], "attempts": 3},
    }


async def test_a_vendor_that_hangs_is_cut_off_at_the_hand_back_time(
    api: RunningApi, settings: Settings, clean_db: AsyncEngine, vendor: AiVendorStandIn
) -> None:
    await visitor_waits(api, clean_db)
    vendor.stall_next()
    worker_settings = using(settings, vendor, GEMINI, ai_handback_seconds=3.0)
    await work_until(worker_settings, lambda: rows(clean_db, "SELECT 1 FROM event WHERE kind = 'ai.handed_back'"))
    # Handed back at the limit after the takeover fired, not after the SDK's 30 s vendor timeout.
    [took] = await rows(
        clean_db,
        "SELECT extract(epoch FROM max(created_at) - min(created_at)) AS seconds FROM event "
        "WHERE kind IN ('ai.takeover', 'ai.handed_back')",
    )
    assert 3.0 <= took["seconds"] < 3.0 + 1.5
    assert vendor.stalled.is_set()
    assert await ai_messages(clean_db) == []


async def test_a_worker_killed_mid_reply_leaves_it_to_the_next_worker_once(
    api: RunningApi, settings: Settings, clean_db: AsyncEngine, vendor: AiVendorStandIn
) -> None:
    await visitor_waits(api, clean_db)
    vendor.stall_next()
    worker_settings = using(settings, vendor, OPENAI)
    first = await start_worker(worker_settings)
    deadline = time.monotonic() + 20
    while not vendor.stalled.is_set():  # the first worker is inside the vendor call
        assert time.monotonic() < deadline, "the first worker never started the AI reply"
        await asyncio.sleep(0.05)
    first.send_signal(signal.SIGKILL)
    assert await stop_worker(first) == -signal.SIGKILL
    vendor.release()

    second = await start_worker(worker_settings, sweep=True)
    try:
        # The message is stored, then its outbox row marked delivered: wait for the latter.
        while not await rows(clean_db, "SELECT 1 FROM outbox WHERE delivered_at IS NOT NULL"):
            assert time.monotonic() < deadline + 20, "the AI reply was not sent after the crash"
            await asyncio.sleep(0.1)
    finally:
        await stop_worker(second)
    [message] = await ai_messages(clean_db)
    assert message["content"] == vendor.reply
    [row] = await rows(clean_db, "SELECT attempts, delivered_at IS NOT NULL AS sent FROM outbox")
    assert row == {"attempts": 1, "sent": True}  # the killed worker's try never came back to be counted
