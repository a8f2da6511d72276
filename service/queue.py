"""The job queue: the worker's job names, their versioned job ids and every enqueue (routing, timers, outbox).

A job id is an idempotency key: arq keeps one job per id while it waits, and a job re-checks
PostgreSQL before acting, so enqueueing the same work twice is harmless.

Every id starts with the queue's name (``<REDIS_PREFIX>:queue``): arq names its keys after the job id
(``arq:job:<id>``, ``arq:in-progress:<id>``, ``arq:retry:<id>``, ``arq:result:<id>``), so deployments
sharing a Redis never share a job. An id may end with a generation (``attempt``): the sweep's fresh copy of
work PostgreSQL still shows undone while its job is not waiting in the queue (a killed worker's job stays
"in progress" in arq until its timeout ends, and arq ignores a second job under the same id meanwhile).
"""

from __future__ import annotations

import math
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime

from arq.connections import ArqRedis
from arq.constants import in_progress_key_prefix, job_key_prefix

# The names of the worker's functions (``workers/jobs.py``), as arq registers them.
ROUTE_JOB = "route_conversation"
DRAIN_JOB = "drain_team_queue"
FIRE_TIMER_JOB = "fire_timer"
DELIVER_JOB = "deliver_outbox"
NOTICES_JOB = "tell_queue_positions"

# Drain requests for a team within one window share a job that starts when the window ends.
DRAIN_WINDOW_SECONDS = 0.05
# Queue position notices for a team within one window share a job that starts when the window ends.
NOTICES_WINDOW_SECONDS = 0.5


@dataclass(frozen=True)
class Trigger:
    """What a worker needs to fire one revision of a timer."""

    timer_id: int
    revision: int
    due_at: datetime


def job_id(queue_name: str, *parts: object, attempt: str | None = None) -> str:
    """``<queue>:<parts...>``, plus ``:<attempt>`` for a sweep's fresh copy of the same work."""
    return ":".join((queue_name, *(str(p) for p in parts), *((attempt,) if attempt else ())))


def route_job_id(queue_name: str, conversation_id: str, revision: int, attempt: str | None = None) -> str:
    """Versioned job id: one routing job per conversation revision (and sweep attempt), however often enqueued."""
    return job_id(queue_name, "route", conversation_id, revision, attempt=attempt)


def drain_job_id(queue_name: str, team_id: uuid.UUID, window: int) -> str:
    """One drain job per team and drain window."""
    return job_id(queue_name, "drain", team_id, window)


def notices_job_id(queue_name: str, team_id: uuid.UUID, window: int) -> str:
    """One queue position notice job per team and window."""
    return job_id(queue_name, "notices", team_id, window)


def timer_job_id(queue_name: str, timer_id: int, revision: int, attempt: str | None = None) -> str:
    """Versioned job id: one trigger per timer revision (and sweep attempt), however often enqueued."""
    return job_id(queue_name, "timer", timer_id, revision, attempt=attempt)


def outbox_job_id(queue_name: str, outbox_id: int, tries: int = 0, attempt: str | None = None) -> str:
    """One delivery job per outbox row and retry (``tries``: the failed tries before it), and sweep attempt."""
    return job_id(queue_name, "outbox", outbox_id, *((tries,) if tries else ()), attempt=attempt)


async def waiting(arq: ArqRedis, job_ids: list[str]) -> list[bool]:
    """Whether each job waits in the queue to be started (or deferred); False when it is missing or started.

    A started job whose work PostgreSQL still shows undone is running, or its worker died: the sweep
    then enqueues a fresh copy under a new attempt (each job re-checks the database, so a live one and
    its copy still act once).
    """
    if not job_ids:
        return []
    async with arq.pipeline(transaction=False) as pipe:
        for one in job_ids:
            pipe.zscore(arq.default_queue_name, one)
            pipe.exists(in_progress_key_prefix + one)
        replies = await pipe.execute()
    return [score is not None and not started for score, started in zip(replies[::2], replies[1::2], strict=True)]


# Takes each job id not yet started off the queue and marks it started for a while: a worker that read the id
# just before is WATCHing its in-progress key, so its start fails and it skips the id instead of finding the job's
# data gone. KEYS[1]: the queue; ARGV: the mark's life (ms), arq's in-progress and job key prefixes, the job ids.
_DROP_WAITING = """
local dropped = 0
for i = 4, #ARGV do
    local started = ARGV[2] .. ARGV[i]
    if redis.call('exists', started) == 0 and redis.call('zrem', KEYS[1], ARGV[i]) == 1 then
        redis.call('del', ARGV[3] .. ARGV[i])
        redis.call('set', started, '1', 'PX', ARGV[1])
        dropped = dropped + 1
    end
end
return dropped
"""
DROPPED_MARK_MS = 10_000


async def drop_waiting(arq: ArqRedis, job_ids: list[str]) -> int:
    """Take these jobs off the queue if none has started (their work is done, so they would only find it done);
    how many were. Saves a worker the start of a job, never needed for correctness."""
    if not job_ids:
        return 0
    script = arq.register_script(_DROP_WAITING)
    args: list[str | int] = [DROPPED_MARK_MS, in_progress_key_prefix, job_key_prefix, *job_ids]
    return int(await script(keys=[arq.default_queue_name], args=args))


async def enqueue_route(
    arq: ArqRedis, conversation_id: str, revision: int, trigger: str, *, attempt: str | None = None
) -> None:
    """Ask a worker to route the conversation at this revision."""
    await arq.enqueue_job(
        ROUTE_JOB,
        conversation_id=conversation_id,
        revision=revision,
        trigger=trigger,
        _job_id=route_job_id(arq.default_queue_name, conversation_id, revision, attempt),
    )


async def enqueue_drain(arq: ArqRedis, team_id: uuid.UUID, trigger: str) -> None:
    """Ask a worker to drain the team's queue; call it after the change that freed room has committed.

    Requests are batched in short windows: all requests of one window share one job, which starts
    only when the window has ended, so it runs after every change that asked for it (a job that
    had already started could not be trusted with a later request). At most one drain per team
    per window, instead of one per presence flap.
    """
    window = math.floor(time.time() / DRAIN_WINDOW_SECONDS) + 1
    await arq.enqueue_job(
        DRAIN_JOB,
        team_id=str(team_id),
        trigger=trigger,
        _job_id=drain_job_id(arq.default_queue_name, team_id, window),
        _defer_until=datetime.fromtimestamp(window * DRAIN_WINDOW_SECONDS, UTC),
    )


async def enqueue_notices(arq: ArqRedis, team_id: uuid.UUID) -> None:
    """Ask a worker to tell the team's queued visitors their place and wait; call it after the queue changed.

    Batched in windows as drains are: however many drains and routings change the queue in one window,
    one job reads it once the window has ended.
    """
    window = math.floor(time.time() / NOTICES_WINDOW_SECONDS) + 1
    await arq.enqueue_job(
        NOTICES_JOB,
        team_id=str(team_id),
        _job_id=notices_job_id(arq.default_queue_name, team_id, window),
        _defer_until=datetime.fromtimestamp(window * NOTICES_WINDOW_SECONDS, UTC),
    )


async def enqueue_trigger(arq: ArqRedis, trigger: Trigger, *, attempt: str | None = None) -> None:
    """Ask a worker to fire this timer revision at its due time (arq ignores a second copy while the first waits)."""
    await arq.enqueue_job(
        FIRE_TIMER_JOB,
        timer_id=trigger.timer_id,
        revision=trigger.revision,
        _job_id=timer_job_id(arq.default_queue_name, trigger.timer_id, trigger.revision, attempt),
        _defer_until=trigger.due_at,
    )


async def enqueue_delivery(
    arq: ArqRedis, outbox_id: int, *, tries: int = 0, defer_by: float | None = None, attempt: str | None = None
) -> None:
    """Trigger delivery (a retry: after ``defer_by`` seconds); if this is lost, the worker's sweep finds the row."""
    await arq.enqueue_job(
        DELIVER_JOB,
        outbox_id=outbox_id,
        _job_id=outbox_job_id(arq.default_queue_name, outbox_id, tries, attempt),
        _defer_by=defer_by,
    )
