"""Durable timers through real arq workers: on time, once, cancelled by a reply, and surviving Redis forgetting them."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import sqlalchemy as sa
from arq import create_pool
from arq.connections import ArqRedis
from redis.asyncio import Redis
from sqlalchemy.ext.asyncio import AsyncEngine

from service.queue import enqueue_route
from service.resources import redis_settings
from service.settings import Settings
from service.timers.services import OFFLINE_GRACE, schedule_timer, triggers
from tests.conftest import TEST_REDIS_URL
from tests.factories import add_member, bearer, make_operator, make_team, personal_token
from tests.integration.workers.test_worker import run_burst
from tests.support.redis_keys import delete_deployment_keys, deployment_keys
from tests.support.routing import make_conversation, rows, state


async def arq_pool(settings: Settings) -> ArqRedis:
    return await create_pool(redis_settings(settings), default_queue_name=settings.queue_name)


async def team_with(engine: AsyncEngine, *names: str, **team: Any) -> tuple[uuid.UUID, list[uuid.UUID]]:
    """A round-robin team whose named members are online."""
    team_id = await make_team(engine, routing_policy="round_robin", **team)
    members = []
    for name in names:
        operator_id = await make_operator(engine, name, status="online")
        await add_member(engine, team_id, operator_id)
        members.append(operator_id)
    return team_id, members


async def routed(settings: Settings, engine: AsyncEngine, team_id: uuid.UUID, count: int = 1) -> list[str]:
    """Conversations of the team, routed by a worker (which starts their first-response timers)."""
    ids = [(await make_conversation(engine, team_id))[0] for _ in range(count)]
    arq = await arq_pool(settings)
    for conversation_id in ids:
        await enqueue_route(arq, conversation_id, 1, trigger="test")
    await arq.aclose()
    # Only the routing jobs (no sweep): the timers they start are left for the test to fire.
    worker = await run_burst(settings, max_burst_jobs=count, cron_jobs=[])
    assert (worker.jobs_complete, worker.jobs_failed) == (count, 0)
    return ids


async def history(engine: AsyncEngine, conversation_id: str) -> list[tuple[uuid.UUID, str, str | None]]:
    found = await rows(
        engine,
        "SELECT operator_id, reason, end_reason FROM assignment WHERE conversation_id = :id ORDER BY id",
        id=conversation_id,
    )
    return [(r["operator_id"], r["reason"], r["end_reason"]) for r in found]


async def timer_row(engine: AsyncEngine, kind: str, subject: str) -> dict[str, Any]:
    [row] = await rows(
        engine,
        "SELECT id, revision, state, due_at, fired_at FROM timer WHERE kind = :kind AND subject = :subject",
        kind=kind,
        subject=subject,
    )
    return row


async def test_timer_fires_once_at_its_due_time(settings: Settings, clean_db: AsyncEngine) -> None:
    operator_id = await make_operator(clean_db, "Ada", status="offline", status_changed_at=datetime.now(UTC))
    arq = await arq_pool(settings)
    due = datetime.now(UTC) + timedelta(seconds=0.4)
    async with triggers(arq):
        async with clean_db.begin() as conn:
            assert await schedule_timer(conn, OFFLINE_GRACE, str(operator_id), due) == 1
    await arq.aclose()
    # No sweep (which would run again at each 10 s mark): the trigger alone, once.
    worker = await run_burst(settings, cron_jobs=[])
    assert (worker.jobs_complete, worker.jobs_failed) == (1, 0)
    row = await timer_row(clean_db, OFFLINE_GRACE, str(operator_id))
    assert (row["revision"], row["state"], row["due_at"]) == (1, "fired", due)
    assert row["fired_at"] >= due  # never early


async def test_rescheduling_makes_the_old_trigger_stale(settings: Settings, clean_db: AsyncEngine) -> None:
    operator_id = await make_operator(clean_db, "Ada")
    arq = await arq_pool(settings)
    now = datetime.now(UTC)
    async with triggers(arq):
        async with clean_db.begin() as conn:
            await schedule_timer(conn, OFFLINE_GRACE, str(operator_id), now + timedelta(seconds=0.2))
        async with clean_db.begin() as conn:
            assert await schedule_timer(conn, OFFLINE_GRACE, str(operator_id), now + timedelta(seconds=0.5)) == 2
    await arq.aclose()
    worker = await run_burst(settings)
    assert worker.jobs_failed == 0
    row = await timer_row(clean_db, OFFLINE_GRACE, str(operator_id))
    assert (row["revision"], row["state"]) == (2, "fired")
    assert row["fired_at"] >= now + timedelta(seconds=0.5)


async def test_first_response_timeout_goes_to_the_next_operator_then_the_queue(
    settings: Settings, clean_db: AsyncEngine
) -> None:
    team_id, (ada, bob) = await team_with(clean_db, "Ada", "Bob", first_response_timeout_seconds=1)
    [conversation_id] = await routed(settings, clean_db, team_id)
    [(first, _, _)] = await history(clean_db, conversation_id)
    second = bob if first == ada else ada
    # Neither replies: the first loses it to the other, who loses it too; nobody else is eligible, so it queues.
    worker = await run_burst(settings)
    assert worker.jobs_failed == 0
    assert await history(clean_db, conversation_id) == [
        (first, "routed", "first_response_timeout"),
        (second, "first_response_timeout", "first_response_timeout"),
    ]
    assert (await state(clean_db, conversation_id))["status"] == "queued"
    decisions = await rows(
        clean_db,
        "SELECT trigger, outcome FROM routing_decision WHERE conversation_id = :id ORDER BY id",
        id=conversation_id,
    )
    assert decisions == [
        {"trigger": "test", "outcome": "assigned"},
        {"trigger": "first_response_timeout", "outcome": "assigned"},
        {"trigger": "first_response_timeout", "outcome": "queued"},
    ]


async def test_an_operator_reply_cancels_the_first_response_timer(
    settings: Settings, clean_db: AsyncEngine, http: httpx.AsyncClient
) -> None:
    team_id, (ada,) = await team_with(clean_db, "Ada", first_response_timeout_seconds=1)
    [conversation_id] = await routed(settings, clean_db, team_id)
    response = await http.post(
        f"/api/v1/conversations/{conversation_id}/messages",
        json={"content": "On it"},
        headers=bearer(await personal_token(clean_db, ada)),
    )
    assert response.status_code == 201
    row = await timer_row(clean_db, "first_response", conversation_id)
    assert (row["revision"], row["state"]) == (2, "cancelled")
    worker = await run_burst(settings)  # the trigger for revision 1 runs and finds it stale
    assert worker.jobs_failed == 0
    assert await history(clean_db, conversation_id) == [(ada, "routed", None)]
    [conv] = await rows(clean_db, "SELECT status, first_response_at IS NOT NULL AS answered FROM conversation")
    assert conv == {"status": "assigned", "answered": True}


async def test_a_duplicated_trigger_acts_once(settings: Settings, clean_db: AsyncEngine) -> None:
    team_id, (ada, bob) = await team_with(clean_db, "Ada", "Bob", first_response_timeout_seconds=3600)
    [conversation_id] = await routed(settings, clean_db, team_id)
    [(first, _, _)] = await history(clean_db, conversation_id)
    async with clean_db.begin() as conn:
        await conn.execute(sa.text("UPDATE timer SET due_at = now() WHERE subject = :id"), {"id": conversation_id})
    row = await timer_row(clean_db, "first_response", conversation_id)
    arq = await arq_pool(settings)
    # The same revision under two more job ids (arq folds equal ids; the routing job's own trigger still
    # waits for the original hour), so both copies really run, concurrently.
    for job_id in ("copy-1", "copy-2"):
        await arq.enqueue_job("fire_timer", timer_id=row["id"], revision=row["revision"], _job_id=job_id)
    await arq.aclose()
    # Just the two copies; the new assignee's hour-long timer stays pending.
    worker = await run_burst(settings, max_burst_jobs=2, cron_jobs=[])
    assert (worker.jobs_complete, worker.jobs_failed) == (2, 0)
    second = bob if first == ada else ada
    assert await history(clean_db, conversation_id) == [
        (first, "routed", "first_response_timeout"),
        (second, "first_response_timeout", None),
    ]


async def test_after_redis_forgets_every_overdue_timer_fires_exactly_once(
    settings: Settings, clean_db: AsyncEngine
) -> None:
    team_id, (ada,) = await team_with(clean_db, "Ada", first_response_timeout_seconds=1, default_capacity=10)
    ids = await routed(settings, clean_db, team_id, count=5)
    # Redis loses the deployment's keys, the triggers included; only PostgreSQL remembers the timers.
    redis = Redis.from_url(TEST_REDIS_URL)
    assert await deployment_keys(redis, settings.redis_prefix) != []
    await delete_deployment_keys(redis, settings.redis_prefix)
    await redis.aclose()
    [latest] = await rows(clean_db, "SELECT greatest(0, extract(epoch FROM max(due_at) - now())) AS s FROM timer")
    await asyncio.sleep(float(latest["s"]))  # until every timer is overdue
    # The worker's start-up sweep re-enqueues the overdue timers; each fires once.
    worker = await run_burst(settings)
    assert worker.jobs_failed == 0
    for conversation_id in ids:
        assert await history(clean_db, conversation_id) == [(ada, "routed", "first_response_timeout")]
        assert (await state(clean_db, conversation_id))["status"] == "queued"
        row = await timer_row(clean_db, "first_response", conversation_id)
        assert (row["revision"], row["state"]) == (1, "fired")


async def test_a_timer_started_by_any_api_request_is_triggered_at_once(
    settings: Settings, clean_db: AsyncEngine, http: httpx.AsyncClient, redis: Redis
) -> None:
    """Deactivating an operator hands their conversation to the next one; its first-response timer's trigger
    is enqueued by the request itself, not left for the overdue sweep."""
    team_id, (ada, bea) = await team_with(clean_db, "Ada", "Bea", first_response_timeout_seconds=60)
    [conversation_id] = await routed(settings, clean_db, team_id)
    holder = (await state(clean_db, conversation_id))["assignee_id"]
    admin = await make_operator(clean_db, "Root", is_admin=True)

    response = await http.patch(
        f"/api/v1/operators/{holder}", json={"deactivated": True}, headers=bearer(await personal_token(clean_db, admin))
    )

    assert response.status_code == 200
    assert (await state(clean_db, conversation_id))["assignee_id"] == ({ada, bea} - {holder}).pop()
    row = await timer_row(clean_db, "first_response", conversation_id)
    assert (row["revision"], row["state"]) == (2, "pending")
    assert await redis.exists(f"arq:job:{settings.queue_name}:timer:{row['id']}:2") == 1
