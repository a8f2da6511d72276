"""Timers fired in batches by real arq workers: each once however many batch at once, a failing action undone alone,
and never a wait for rows another transaction holds."""

from __future__ import annotations

import asyncio
from collections import Counter
from datetime import UTC, datetime, timedelta

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from service.queue import Trigger, enqueue_trigger
from service.settings import Settings
from service.timers.services import FIRST_RESPONSE, OFFLINE_GRACE, schedule_timer
from tests.factories import make_operator
from tests.integration.timers.test_timers import arq_pool, history, routed, team_with, timer_row
from tests.integration.workers.test_worker import run_burst
from tests.support.routing import make_conversation, rows


async def due_timer(engine: AsyncEngine, kind: str, subject: str) -> Trigger:
    """A timer of ``kind`` due a moment ago, with no trigger enqueued (the test enqueues the one it means)."""
    async with engine.begin() as conn:
        await schedule_timer(conn, kind, subject, datetime.now(UTC) - timedelta(seconds=1))
    row = await timer_row(engine, kind, subject)
    return Trigger(row["id"], row["revision"], row["due_at"])


async def trigger(settings: Settings, *triggers: Trigger) -> None:
    arq = await arq_pool(settings)
    for one in triggers:
        await enqueue_trigger(arq, one)
    await arq.aclose()


async def test_many_timers_due_at_once_fire_once_each_with_two_workers(
    settings: Settings, clean_db: AsyncEngine
) -> None:
    team_id, (ada, bob) = await team_with(clean_db, "Ada", "Bob", first_response_timeout_seconds=1, default_capacity=40)
    ids = await routed(settings, clean_db, team_id, count=30)
    # Both workers take the 30 triggers due together (and the 30 the reassignments arm), batching concurrently.
    first, second = await asyncio.gather(run_burst(settings, cron_jobs=[]), run_burst(settings, cron_jobs=[]))
    assert (first.jobs_failed, second.jobs_failed) == (0, 0)
    for conversation_id in ids:
        [(holder, _, _), *_] = await history(clean_db, conversation_id)
        other = bob if holder == ada else ada
        # Once each timeout: the first holder loses it to the other, who loses it to the queue; no duplicate.
        assert await history(clean_db, conversation_id) == [
            (holder, "routed", "first_response_timeout"),
            (other, "first_response_timeout", "first_response_timeout"),
        ]
    decisions = await rows(clean_db, "SELECT conversation_id, trigger FROM routing_decision")
    assert Counter(d["trigger"] for d in decisions) == {"test": 30, "first_response_timeout": 60}
    timers = await rows(clean_db, "SELECT revision, state FROM timer WHERE kind = 'first_response'")
    assert Counter((t["revision"], t["state"]) for t in timers) == {(2, "fired"): 30}


async def test_a_failing_action_leaves_its_timer_pending_while_the_batch_fires(
    settings: Settings, clean_db: AsyncEngine
) -> None:
    ada = await make_operator(clean_db, "Ada", status="online")
    bob = await make_operator(clean_db, "Bob", status="online")
    before = await due_timer(clean_db, OFFLINE_GRACE, str(ada))
    # Not an operator id: its action raises, in the middle of the batch (ordered by due time).
    broken = await due_timer(clean_db, OFFLINE_GRACE, "not-an-operator")
    await due_timer(clean_db, OFFLINE_GRACE, str(bob))
    await trigger(settings, before)
    worker = await run_burst(settings, max_burst_jobs=1, cron_jobs=[])
    assert (worker.jobs_complete, worker.jobs_failed) == (1, 0)
    assert [
        (await timer_row(clean_db, OFFLINE_GRACE, s))["state"] for s in (str(ada), "not-an-operator", str(bob))
    ] == [
        "fired",
        "pending",
        "fired",
    ]
    # Its own trigger fails (seen by arq) and leaves it pending at the same revision for the sweep's next try.
    await trigger(settings, broken)
    worker = await run_burst(settings, max_burst_jobs=1, cron_jobs=[])
    assert (worker.jobs_complete, worker.jobs_failed) == (0, 1)
    row = await timer_row(clean_db, OFFLINE_GRACE, "not-an-operator")
    assert (row["revision"], row["state"], row["fired_at"]) == (broken.revision, "pending", None)


async def test_a_timer_rescheduled_during_a_batch_is_not_fired_at_its_old_revision(
    settings: Settings, clean_db: AsyncEngine
) -> None:
    ada = await make_operator(clean_db, "Ada", status="online")
    bob = await make_operator(clean_db, "Bob", status="online")
    moved = await due_timer(clean_db, OFFLINE_GRACE, str(ada))
    other = await due_timer(clean_db, OFFLINE_GRACE, str(bob))
    later = datetime.now(UTC) + timedelta(hours=1)
    async with clean_db.begin() as conn:
        # Rescheduled, not yet committed, while the other timer's trigger fires a batch: it skips the locked row.
        assert await schedule_timer(conn, OFFLINE_GRACE, str(ada), later) == moved.revision + 1
        await trigger(settings, other)
        worker = await asyncio.wait_for(run_burst(settings, max_burst_jobs=1, cron_jobs=[]), 10)
        assert (worker.jobs_complete, worker.jobs_failed) == (1, 0)
    # The old revision's own trigger, after the commit, finds it stale.
    await trigger(settings, moved)
    worker = await run_burst(settings, max_burst_jobs=1, cron_jobs=[])
    assert (worker.jobs_complete, worker.jobs_failed) == (1, 0)
    row = await timer_row(clean_db, OFFLINE_GRACE, str(ada))
    assert (row["revision"], row["state"], row["due_at"], row["fired_at"]) == (2, "pending", later, None)
    assert (await timer_row(clean_db, OFFLINE_GRACE, str(bob)))["state"] == "fired"


async def test_a_batch_skips_a_locked_conversation_without_waiting_and_it_fires_later(
    settings: Settings, clean_db: AsyncEngine
) -> None:
    locked_id, _ = await make_conversation(clean_db)
    free_id, _ = await make_conversation(clean_db)
    locked = await due_timer(clean_db, FIRST_RESPONSE, locked_id)
    free = await due_timer(clean_db, FIRST_RESPONSE, free_id)
    async with clean_db.begin() as holder:
        # Another transaction (an operator's reply, say) holds the conversation.
        await holder.execute(sa.text("SELECT 1 FROM conversation WHERE id = :id FOR UPDATE"), {"id": locked_id})
        await trigger(settings, free)
        worker = await asyncio.wait_for(run_burst(settings, max_burst_jobs=1, cron_jobs=[]), 10)
        assert (worker.jobs_complete, worker.jobs_failed) == (1, 0)
        assert (await timer_row(clean_db, FIRST_RESPONSE, locked_id))["state"] == "pending"
        assert (await timer_row(clean_db, FIRST_RESPONSE, free_id))["state"] == "fired"
    # Released: its own trigger fires it.
    await trigger(settings, locked)
    worker = await run_burst(settings, max_burst_jobs=1, cron_jobs=[])
    assert (worker.jobs_complete, worker.jobs_failed) == (1, 0)
    row = await timer_row(clean_db, FIRST_RESPONSE, locked_id)
    assert (row["revision"], row["state"]) == (1, "fired")
