"""Routing jobs through a real arq worker (burst mode) against PostgreSQL and Redis."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import sqlalchemy as sa
from arq import create_pool
from arq.worker import Worker
from sqlalchemy.ext.asyncio import AsyncEngine

from service.queue import enqueue_route
from service.resources import redis_settings
from service.routing.placement import DEFAULT_TEAM_NAME
from service.routing.queries import team_queue
from service.settings import Settings
from workers import jobs
from workers.settings import worker_settings


def burst_worker(settings: Settings, **overrides: Any) -> Worker:
    options = {**worker_settings(settings), "burst": True, "poll_delay": 0, "handle_signals": False, **overrides}
    return Worker(**options)


async def run_burst(settings: Settings, **overrides: Any) -> Worker:
    worker = burst_worker(settings, **overrides)
    try:
        await worker.main()
    finally:
        await worker.close()
    return worker


async def rows(engine: AsyncEngine, sql: str, **params: Any) -> list[dict[str, Any]]:
    async with engine.connect() as conn:
        return [dict(r) for r in (await conn.execute(sa.text(sql), params)).mappings()]


async def start_conversation(http: httpx.AsyncClient, visitor: str) -> str:
    session_id = (await http.post("/pocketping/connect", json={"visitorId": visitor})).json()["sessionId"]
    response = await http.post(
        "/pocketping/message", json={"sessionId": session_id, "content": "help", "sender": "visitor"}
    )
    assert response.status_code == 200
    return str(session_id)


async def test_new_conversation_is_queued_in_the_default_team(
    http: httpx.AsyncClient, settings: Settings, clean_db: AsyncEngine
) -> None:
    session_id = await start_conversation(http, "v-1")
    worker = await run_burst(settings)
    assert worker.jobs_failed == 0
    [conversation] = await rows(
        clean_db,
        "SELECT c.status, c.routing_revision, t.name, t.is_default FROM conversation c "
        "JOIN team t ON t.id = c.team_id WHERE c.id = :id",
        id=session_id,
    )
    assert conversation == {"status": "queued", "routing_revision": 2, "name": DEFAULT_TEAM_NAME, "is_default": True}
    [decision] = await rows(clean_db, "SELECT policy, trigger, outcome, candidates FROM routing_decision")
    assert decision == {"policy": "manual", "trigger": "visitor_message", "outcome": "queued", "candidates": []}


async def test_a_page_view_alone_is_not_routed(
    http: httpx.AsyncClient, settings: Settings, clean_db: AsyncEngine
) -> None:
    await http.post("/pocketping/connect", json={"visitorId": "just-looking"})
    await run_burst(settings)
    assert await rows(clean_db, "SELECT status FROM conversation") == [{"status": "new"}]
    assert await rows(clean_db, "SELECT id FROM routing_decision") == []


async def test_queue_is_ordered_by_priority_then_waiting_time(
    http: httpx.AsyncClient, settings: Settings, clean_db: AsyncEngine
) -> None:
    ids = [await start_conversation(http, f"v-{n}") for n in range(4)]
    base = datetime(2026, 11, 1, 9, 0, tzinfo=UTC)
    # (priority, waited since) per conversation
    shape = {
        ids[0]: (0, base),
        ids[1]: (5, base + timedelta(minutes=3)),
        ids[2]: (0, base - timedelta(minutes=1)),
        ids[3]: (5, base + timedelta(minutes=1)),
    }
    async with clean_db.begin() as conn:
        for conversation_id, (priority, since) in shape.items():
            await conn.execute(
                sa.text("UPDATE conversation SET priority = :p, waiting_since = :w WHERE id = :id"),
                {"p": priority, "w": since, "id": conversation_id},
            )
    await run_burst(settings)
    async with clean_db.connect() as conn:
        team_id = (await conn.execute(sa.text("SELECT id FROM team WHERE is_default"))).scalar_one()
        queue = await team_queue(conn, team_id)
    assert [item["id"] for item in queue] == [ids[3], ids[1], ids[2], ids[0]]


async def test_duplicated_and_stale_jobs_act_once(
    http: httpx.AsyncClient, settings: Settings, clean_db: AsyncEngine
) -> None:
    session_id = await start_conversation(http, "v-1")
    arq = await create_pool(redis_settings(settings), default_queue_name=settings.queue_name)
    ctx = {"engine": clean_db, "redis": arq}
    assert await jobs.route_conversation(ctx, conversation_id=session_id, revision=1, trigger="test") == "queued"
    # The same job again (a retry, a duplicate enqueue) and an older revision both do nothing.
    assert await jobs.route_conversation(ctx, conversation_id=session_id, revision=1, trigger="test") == "stale"
    assert await jobs.route_conversation(ctx, conversation_id=session_id, revision=0, trigger="test") == "stale"
    assert await jobs.route_conversation(ctx, conversation_id="missing", revision=1, trigger="test") == "stale"
    await arq.aclose()
    assert len(await rows(clean_db, "SELECT id FROM routing_decision")) == 1


async def test_enqueueing_the_same_revision_twice_runs_one_job(
    http: httpx.AsyncClient, settings: Settings, clean_db: AsyncEngine
) -> None:
    session_id = await start_conversation(http, "v-1")
    arq = await create_pool(redis_settings(settings), default_queue_name=settings.queue_name)
    await enqueue_route(arq, session_id, 1, trigger="duplicate")
    await arq.aclose()
    worker = await run_burst(settings)
    assert worker.jobs_failed == 0
    assert len(await rows(clean_db, "SELECT id FROM routing_decision")) == 1


async def test_sweep_recovers_routing_jobs_lost_with_redis(
    http: httpx.AsyncClient, settings: Settings, clean_db: AsyncEngine, redis: Any
) -> None:
    session_id = await start_conversation(http, "v-1")
    # Redis forgets the job (restart without persistence); PostgreSQL still says it waits.
    await redis.delete(settings.queue_name, f"arq:job:{settings.queue_name}:route:{session_id}:1")
    async with clean_db.begin() as conn:
        await conn.execute(sa.text("UPDATE conversation SET waiting_since = now() - interval '1 minute'"))
    worker = await run_burst(settings)  # the sweep runs at start-up, then its jobs run
    assert worker.jobs_failed == 0
    assert await rows(clean_db, "SELECT status FROM conversation") == [{"status": "queued"}]
