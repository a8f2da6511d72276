"""A controllable clock for SLA tests: time "passes" by moving a conversation's stored moments into the past.

Every SLA decision compares stored moments (the visitor's wait, the clocks' starts and deadlines, the timer's
due time) with PostgreSQL's clock, so shifting them all back by N seconds is N seconds passing for that
conversation: hours play in milliseconds, through the real worker, with exact deadlines to assert on.
"""

from __future__ import annotations

import uuid

import sqlalchemy as sa
from arq import create_pool
from redis.asyncio import Redis
from sqlalchemy.ext.asyncio import AsyncEngine

from service.queue import Trigger, enqueue_trigger
from service.resources import redis_settings
from service.settings import Settings
from tests.conftest import TEST_REDIS_URL
from tests.integration.workers.test_worker import run_burst
from tests.support.redis_keys import delete_deployment_keys

_SHIFTED_CLOCK_COLUMNS = ("started_at", "at_risk_at", "due_at", "stopped_at", "at_risk_reported_at", "breached_at")


async def travel(engine: AsyncEngine, conversation_id: str, seconds: float) -> None:
    """Let ``seconds`` pass for the conversation's SLA: its wait, clocks and ``sla`` timer move back that much."""
    shift = "make_interval(secs => :s)"
    async with engine.begin() as conn:
        await conn.execute(
            sa.text(
                "UPDATE sla_clock SET "
                + ", ".join(f"{c} = {c} - {shift}" for c in _SHIFTED_CLOCK_COLUMNS)
                + " WHERE conversation_id = :id"
            ),
            {"id": conversation_id, "s": seconds},
        )
        await conn.execute(
            sa.text(f"UPDATE conversation SET waiting_since = waiting_since - {shift} WHERE id = :id"),
            {"id": conversation_id, "s": seconds},
        )
        await conn.execute(
            sa.text(f"UPDATE timer SET due_at = due_at - {shift} WHERE kind = 'sla' AND subject = :id"),
            {"id": conversation_id, "s": seconds},
        )


async def fire_sla(settings: Settings, engine: AsyncEngine, conversation_id: str) -> None:
    """Fire the conversation's pending ``sla`` timer now, through a worker, and nothing else.

    The deployment's Redis keys go first (the earlier triggers wait for times from before ``travel``), as
    after a Redis loss; PostgreSQL's timer row is what the job fires.
    """
    redis = Redis.from_url(TEST_REDIS_URL)
    await delete_deployment_keys(redis, settings.redis_prefix)
    await redis.aclose()
    async with engine.connect() as conn:
        row = (
            await conn.execute(
                sa.text("SELECT id, revision FROM timer WHERE kind = 'sla' AND subject = :id AND state = 'pending'"),
                {"id": conversation_id},
            )
        ).one()
    arq = await create_pool(redis_settings(settings), default_queue_name=settings.queue_name)
    await arq.enqueue_job("fire_timer", timer_id=row.id, revision=row.revision, _job_id=f"test-sla-{uuid.uuid4()}")
    await arq.aclose()
    # Just this job: the timer's next trigger (deferred) and what the firing enqueued wait.
    worker = await run_burst(settings, max_burst_jobs=1, cron_jobs=[])
    assert (worker.jobs_complete, worker.jobs_failed) == (1, 0)


async def retrigger(settings: Settings, engine: AsyncEngine, conversation_id: str) -> None:
    """After ``travel``: a trigger for the pending ``sla`` timer at its new due time, for running workers to fire
    (its first trigger waits in the queue for the old time, so the sweep would not send another)."""
    async with engine.connect() as conn:
        row = (
            await conn.execute(
                sa.text(
                    "SELECT id, revision, due_at FROM timer WHERE kind = 'sla' AND subject = :id AND state = 'pending'"
                ),
                {"id": conversation_id},
            )
        ).one()
    arq = await create_pool(redis_settings(settings), default_queue_name=settings.queue_name)
    await enqueue_trigger(arq, Trigger(row.id, row.revision, row.due_at), attempt=f"travel{uuid.uuid4().hex[:8]}")
    await arq.aclose()
