"""Durable timers: a PostgreSQL row per deadline (kind, subject) with a revision; arq jobs are only triggers.

Scheduling upserts the row and bumps its revision, so every earlier trigger becomes stale. A
trigger's job id is ``timer:<id>:<revision>`` (``service.queue``). A trigger whose revision is still
pending fires a batch: every pending timer due by then that no other transaction holds
(``claim_due``, ``FOR UPDATE SKIP LOCKED``), its own included, each marked fired (``claim_fire``) in
the transaction of its action; a duplicated, retried or stale job, or one whose timer a batch
fired, finds nothing to do. Triggers are enqueued after the scheduling transaction commits
(inside ``triggers(arq)``); the sweep enqueues every pending timer due before its next run, so a
lost trigger (Redis flushed, enqueue failed, scheduled where no Redis was at hand) only delays it.
"""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
import structlog
from arq.connections import ArqRedis
from litestar.types import ASGIApp, Message, Receive, Scope, Send
from sqlalchemy.ext.asyncio import AsyncConnection

from service import metrics
from service.db.tables import timer_t
from service.queue import Trigger, enqueue_trigger

log = structlog.get_logger(__name__)


FIRST_RESPONSE = "first_response"
OFFLINE_GRACE = "offline_grace"
AI_TAKEOVER = "ai_takeover"
CSAT_REQUEST = "csat_request"
PRESENCE_LAPSE = "presence_lapse"
HOURS_OPEN = "hours_open"  # subject: a team id; fires at the team's next opening (service.hours.services)
SLA = "sla"
# Subject: the conversation; its skill requirement steps down (docs/routing.md, "Skills").
SKILL_RELAX = "skill_relax"
# Subject: "<conversation>:<operator>"; the operator a first-response timeout took it from may be given it again.
REOFFER = "reoffer"


# Timers scheduled in the current task since ``triggers`` opened; enqueued when it closes.
_scheduled: contextvars.ContextVar[list[Trigger] | None] = contextvars.ContextVar("scheduled_timers", default=None)


def upsert_timers(rows: str) -> str:
    """The timer upsert of ``rows`` (VALUES or a SELECT of kind, subject, due_at), as a statement or a CTE's body."""
    # Rescheduling (or re-arming a fired or cancelled timer) bumps the revision: older triggers go stale.
    # It returns a Trigger's columns, and the subject for statements that upsert several timers.
    return f"""
    INSERT INTO timer (kind, subject, due_at) {rows}
    ON CONFLICT (kind, subject) DO UPDATE SET
        due_at = EXCLUDED.due_at, revision = timer.revision + 1, state = 'pending', fired_at = NULL, updated_at = now()
    RETURNING id, subject, revision, due_at
    """


_SCHEDULE_TIMER = sa.text(upsert_timers("VALUES (:kind, :subject, :due_at)"))


@contextlib.contextmanager
def forgotten_on_error() -> Iterator[None]:
    """Triggers remembered inside the block are dropped if it raises (its savepoint rolled their timers back)."""
    pending = _scheduled.get()
    mark = len(pending) if pending is not None else 0
    try:
        yield
    except BaseException:
        if pending is not None:
            # A trigger for a revision that was rolled back could match the next real one's job id and fire it early.
            del pending[mark:]
        raise


def remember(trigger: Trigger) -> None:
    """Queue a trigger for enqueueing when the enclosing ``triggers`` block ends (dropped outside one)."""
    pending = _scheduled.get()
    if pending is not None:
        pending.append(trigger)


async def schedule_timer(conn: AsyncConnection, kind: str, subject: str, due_at: datetime) -> int:
    """Create or move the (kind, subject) timer to ``due_at`` in the caller's transaction; returns its new revision."""
    row = (await conn.execute(_SCHEDULE_TIMER, {"kind": kind, "subject": subject, "due_at": due_at})).one()
    remember(Trigger(row.id, row.revision, row.due_at))
    return int(row.revision)


async def cancel_timer(conn: AsyncConnection, kind: str, subject: str) -> bool:
    """Cancel the pending (kind, subject) timer, if any; its triggers become stale. True if one was pending."""
    result = await conn.execute(
        sa.update(timer_t)
        .where(timer_t.c.kind == kind, timer_t.c.subject == subject, timer_t.c.state == "pending")
        .values(state="cancelled", revision=timer_t.c.revision + 1, updated_at=sa.func.now())
    )
    return bool(result.rowcount)


@contextlib.asynccontextmanager
async def triggers(arq: ArqRedis) -> AsyncIterator[Callable[[], Awaitable[None]]]:
    """Enqueue the triggers of timers scheduled inside the block once it ends without error (after the commit).

    It yields ``flush``, which enqueues those scheduled so far at once (a request's, before its answer goes out).
    """
    pending: list[Trigger] = []
    token = _scheduled.set(pending)

    async def flush() -> None:
        while pending:
            trigger = pending.pop(0)
            try:
                await enqueue_trigger(arq, trigger)
            except Exception:
                log.warning("timer trigger not enqueued; the sweep will", timer_id=trigger.timer_id, exc_info=True)

    try:
        yield flush
    finally:
        _scheduled.reset(token)
    await flush()


async def claim_fire(conn: AsyncConnection, timer_id: int, revision: int) -> tuple[str, str] | None:
    """Mark this revision fired if it is still the pending one; returns (kind, subject), or None when stale."""
    row = (
        await conn.execute(
            sa.update(timer_t)
            .where(timer_t.c.id == timer_id, timer_t.c.revision == revision, timer_t.c.state == "pending")
            .values(state="fired", fired_at=sa.func.clock_timestamp(), updated_at=sa.func.now())
            .returning(
                timer_t.c.kind,
                timer_t.c.subject,
                sa.extract("epoch", timer_t.c.fired_at - timer_t.c.due_at).label("late"),
            )
        )
    ).first()
    if row is None:
        return None
    metrics.observe_timer_lateness(row.kind, float(row.late))
    return row.kind, row.subject


@dataclass(frozen=True, slots=True)
class Due:
    """A pending timer a batch holds locked: what firing it needs."""

    timer_id: int
    revision: int
    kind: str
    subject: str
    due_at: datetime


async def is_pending(conn: AsyncConnection, timer_id: int, revision: int) -> bool:
    """Whether this revision is still the pending one (no lock: a trigger's cheap first look)."""
    found = await conn.execute(
        sa.select(timer_t.c.id).where(
            timer_t.c.id == timer_id, timer_t.c.revision == revision, timer_t.c.state == "pending"
        )
    )
    return found.first() is not None


async def claim_due(conn: AsyncConnection, limit: int, timer_id: int, revision: int) -> list[Due]:
    """Lock up to ``limit`` pending timers due now, soonest first, and this revision if still pending whenever due;
    rows another transaction holds are skipped, never waited for. Each is fired with ``claim_fire`` after."""
    result = await conn.execute(
        sa.select(timer_t.c.id, timer_t.c.revision, timer_t.c.kind, timer_t.c.subject, timer_t.c.due_at)
        .where(
            timer_t.c.state == "pending",
            # Its own is taken even if PostgreSQL's clock says it is not quite due: its trigger's is the deadline.
            sa.or_(
                timer_t.c.due_at <= sa.func.now(), sa.and_(timer_t.c.id == timer_id, timer_t.c.revision == revision)
            ),
        )
        .order_by(timer_t.c.due_at, timer_t.c.id)
        .limit(limit)
        .with_for_update(skip_locked=True)
    )
    return [Due(r.id, r.revision, r.kind, r.subject, r.due_at) for r in result]


async def claim_fire_all(conn: AsyncConnection, timers: list[Due]) -> set[int]:
    """Mark these revisions fired in one statement (the caller holds their rows, from ``claim_due``); their ids."""
    if not timers:
        return set()
    result = await conn.execute(
        sa.update(timer_t)
        .where(
            sa.tuple_(timer_t.c.id, timer_t.c.revision).in_([(t.timer_id, t.revision) for t in timers]),
            timer_t.c.state == "pending",
        )
        .values(state="fired", fired_at=sa.func.clock_timestamp(), updated_at=sa.func.now())
        .returning(
            timer_t.c.id, timer_t.c.kind, sa.extract("epoch", timer_t.c.fired_at - timer_t.c.due_at).label("late")
        )
    )
    claimed = set()
    for row in result:
        metrics.observe_timer_lateness(row.kind, float(row.late))
        claimed.add(row.id)
    return claimed


async def due_before(conn: AsyncConnection, horizon_seconds: float, limit: int = 20_000) -> list[Trigger]:
    """Pending timers due within ``horizon_seconds`` (overdue ones included), soonest first."""
    result = await conn.execute(
        sa.select(timer_t.c.id, timer_t.c.revision, timer_t.c.due_at)
        .where(
            timer_t.c.state == "pending",
            timer_t.c.due_at <= sa.func.now() + sa.func.make_interval(0, 0, 0, 0, 0, 0, horizon_seconds),
        )
        .order_by(timer_t.c.due_at)
        .limit(limit)
    )
    return [Trigger(r.id, r.revision, r.due_at) for r in result]


# The first-response clock as CTEs of the assignment statement, so arming it costs no round trip of
# its own. It starts when the team has a timeout and nobody has replied yet; otherwise a pending
# one is cancelled (the conversation was answered, or the team has no timeout any more). Both CTEs
# read the same snapshot, so exactly one of them applies. The statement provides a CTE ``asg`` (a row
# when the assignment took place), ``:conversation_id`` and ``:team_id``, and selects the armed
# timer's ``FIRST_RESPONSE_COLUMNS`` from ``first_response`` (NULLs when none was armed).
FIRST_RESPONSE_CTES = (
    """
    first_response_due AS (
        SELECT c.first_response_at IS NULL AND t.first_response_timeout_seconds IS NOT NULL AS arm,
               t.first_response_timeout_seconds AS seconds
        FROM asg, conversation c, team t WHERE c.id = :conversation_id AND t.id = :team_id
    ), first_response AS (
    """
    + upsert_timers(
        "SELECT 'first_response', :conversation_id, now() + make_interval(secs => d.seconds) "
        "FROM first_response_due d WHERE d.arm"
    )
    + """
    ), first_response_cancelled AS (
        UPDATE timer SET state = 'cancelled', revision = timer.revision + 1, updated_at = now()
        FROM first_response_due d
        WHERE NOT d.arm AND timer.kind = 'first_response' AND timer.subject = :conversation_id
          AND timer.state = 'pending'
    )
    """
)
FIRST_RESPONSE_COLUMNS = (
    "first_response.id AS timer_id, first_response.revision AS timer_revision, first_response.due_at"
)


def remember_first_response(row: Any) -> None:
    """After the assignment statement: enqueue the armed first-response timer's trigger after the commit."""
    if row.timer_id is not None:
        remember(Trigger(row.timer_id, row.timer_revision, row.due_at))


def timer_triggers_middleware(app: ASGIApp) -> ASGIApp:
    """Every HTTP request runs inside ``triggers``: whatever a handler's transactions schedule (a claim's
    first-response timer, a presence change's grace timer) is enqueued once the handler is done, before its
    answer is sent. A trigger from a transaction that rolled back is harmless: its job finds no such pending
    revision."""

    async def middleware(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await app(scope, receive, send)
            return
        async with triggers(scope["app"].state.redis) as flush:

            async def send_after_triggers(message: Message) -> None:
                # Before the answer starts (the handler's transactions have committed by then), so a client
                # that acts on the answer finds the trigger queued; a stream's later ones go at its end.
                if message["type"] == "http.response.start":
                    await flush()
                await send(message)

            await app(scope, receive, send_after_triggers)

    return middleware
