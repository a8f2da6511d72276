"""The job queue: the worker's job names, their versioned job ids and every enqueue (routing, timers, outbox).

A job id is an idempotency key: arq keeps one job per id while it waits, and a job re-checks
PostgreSQL before acting, so enqueueing the same work twice is harmless.
"""

from __future__ import annotations

import math
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime

from arq.connections import ArqRedis

# The names of the worker's functions (``workers/jobs.py``), as arq registers them.
ROUTE_JOB = "route_conversation"
DRAIN_JOB = "drain_team_queue"
FIRE_TIMER_JOB = "fire_timer"
DELIVER_JOB = "deliver_outbox"

# Drain requests for a team within one window share a job that starts when the window ends.
DRAIN_WINDOW_SECONDS = 0.05


@dataclass(frozen=True)
class Trigger:
    """What a worker needs to fire one revision of a timer."""

    timer_id: int
    revision: int
    due_at: datetime


def route_job_id(conversation_id: str, revision: int) -> str:
    """Versioned job id: one routing job per conversation revision, however often it is enqueued."""
    return f"route:{conversation_id}:{revision}"


def drain_job_id(team_id: uuid.UUID, window: int) -> str:
    """One drain job per team and drain window."""
    return f"drain:{team_id}:{window}"


def timer_job_id(timer_id: int, revision: int) -> str:
    """Versioned job id: one trigger per timer revision, however often it is enqueued."""
    return f"timer:{timer_id}:{revision}"


def outbox_job_id(outbox_id: int, attempt: int = 0) -> str:
    """One delivery job per outbox row and retry attempt."""
    return f"outbox:{outbox_id}:{attempt}" if attempt else f"outbox:{outbox_id}"


async def enqueue_route(arq: ArqRedis, conversation_id: str, revision: int, trigger: str) -> None:
    """Ask a worker to route the conversation at this revision."""
    await arq.enqueue_job(
        ROUTE_JOB,
        conversation_id=conversation_id,
        revision=revision,
        trigger=trigger,
        _job_id=route_job_id(conversation_id, revision),
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
        _job_id=drain_job_id(team_id, window),
        _defer_until=datetime.fromtimestamp(window * DRAIN_WINDOW_SECONDS, UTC),
    )


async def enqueue_trigger(arq: ArqRedis, trigger: Trigger) -> None:
    """Ask a worker to fire this timer revision at its due time (arq ignores a second copy while the first waits)."""
    await arq.enqueue_job(
        FIRE_TIMER_JOB,
        timer_id=trigger.timer_id,
        revision=trigger.revision,
        _job_id=timer_job_id(trigger.timer_id, trigger.revision),
        _defer_until=trigger.due_at,
    )


async def enqueue_delivery(arq: ArqRedis, outbox_id: int, *, attempt: int = 0, defer_by: float | None = None) -> None:
    """Trigger delivery (a retry: after ``defer_by`` seconds); if this is lost, the worker's sweep finds the row."""
    await arq.enqueue_job(
        DELIVER_JOB, outbox_id=outbox_id, _job_id=outbox_job_id(outbox_id, attempt), _defer_by=defer_by
    )
