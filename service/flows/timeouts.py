"""Timeout flows: what each kind of timer does when it fires (first-response timeout, presence lapse, offline
grace, AI takeover, CSAT request, a team's opening, SLA clocks, skill relaxing, an exclusion's end).

Each runs in the transaction that marks the timer fired, so a timer acts once. A trigger fires a batch
(``fire_batch``): every pending timer due by then that no other transaction holds, each action in a savepoint
of its own, one commit for all; its own timer, if the batch could not take it, alone after (``fire``).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import datetime
from functools import partial

import sqlalchemy as sa
import structlog
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from service.ai.services import Takeover, take_over
from service.csat.services import RatingAsk, ask_owed
from service.db.tables import conversation_t, timer_t
from service.db.transactions import in_transaction, is_retryable
from service.flows import sla
from service.hours.services import arm_opening, team_hours
from service.presence.services import announce_opening, lapse, schedule_grace
from service.routing import handoff, placement, waiting
from service.timers.services import (
    AI_TAKEOVER,
    CSAT_REQUEST,
    FIRST_RESPONSE,
    HOURS_OPEN,
    OFFLINE_GRACE,
    PRESENCE_LAPSE,
    REOFFER,
    SKILL_RELAX,
    SLA,
    Due,
    claim_due,
    claim_fire,
    claim_fire_all,
    forgotten_on_error,
    is_pending,
)

log = structlog.get_logger(__name__)

FIRST_RESPONSE_REASON = "first_response_timeout"
OFFLINE_REASON = "operator_offline"

_OFFLINE_TEAMS = sa.text(
    """
    SELECT t.id, t.offline_policy FROM team_member m JOIN team t ON t.id = m.team_id
    WHERE m.operator_id = :operator_id AND t.offline_policy <> 'keep'
      AND coalesce(CAST(:since AS timestamptz), '-infinity') + make_interval(secs => t.offline_grace_seconds) <= now()
    ORDER BY t.id
    """
)

# Kinds whose action works on a conversation: it is locked before the action, as a reply locks it before its timers.
_CONVERSATION_KINDS = frozenset({FIRST_RESPONSE, AI_TAKEOVER, CSAT_REQUEST, SLA, SKILL_RELAX, REOFFER})

Owed = Takeover | RatingAsk | None


@dataclass(frozen=True, slots=True)
class Fired:
    """A timer a batch fired: its outcome and what its visitor is owed after the commit."""

    timer_id: int
    revision: int
    outcome: str
    owed: Owed


@dataclass(slots=True)
class Batch:
    """What one firing transaction did: the timers it fired, and what became of the trigger's own timer."""

    fired: list[Fired] = field(default_factory=list)
    # The own timer's outcome (``stale`` when no longer pending, ``failed``); None when the batch did not take it.
    own: str | None = None
    # Why the own timer's action failed (its savepoint rolled back, the timer left pending).
    own_error: Exception | None = None
    # Left pending: their conversation was held by another transaction, or their action failed.
    skipped: list[int] = field(default_factory=list)
    failed: list[int] = field(default_factory=list)


def _conversation_of(kind: str, subject: str) -> str | None:
    if kind not in _CONVERSATION_KINDS:
        return None
    return waiting.reoffer_parts(subject)[0] if kind == REOFFER else subject


async def fire_batch(
    engine: AsyncEngine, timer_id: int, revision: int, *, limit: int, sla_at_risk_share: float
) -> Batch:
    """For a trigger: one read when its revision is no longer pending (``own`` is ``stale``), else one transaction
    firing up to ``limit`` due timers, its own among them unless another transaction holds it (``own`` None).

    The actions run one after the other, all claimed in one statement. If one fails, the transaction rolls back
    and the batch runs again with each claim and action in a savepoint of its own: a failing one is undone alone
    and its timer stays pending. A deadlock or serialization failure rolls the batch back and runs it again
    (every timer stays pending meanwhile).
    """
    async with engine.execution_options(isolation_level="AUTOCOMMIT").connect() as conn:
        if not await is_pending(conn, timer_id, revision):
            return Batch(own="stale")
    work = partial(_fire_due, timer_id=timer_id, revision=revision, limit=limit, share=sla_at_risk_share)
    try:
        return await in_transaction(engine, partial(work, careful=False))
    except Exception as exc:
        if is_retryable(exc):
            raise
        log.warning("a timer action failed; its batch runs again, each action in a savepoint", exc_info=True)
    return await in_transaction(engine, partial(work, careful=True))


async def _fire_due(
    conn: AsyncConnection, *, timer_id: int, revision: int, limit: int, share: float, careful: bool
) -> Batch:
    # A trigger remembered by an attempt that rolls back is dropped: its revision never existed.
    with forgotten_on_error():
        batch = Batch()
        due = await claim_due(conn, limit, timer_id, revision)
        conversations = {d.timer_id: c for d in due if (c := _conversation_of(d.kind, d.subject)) is not None}
        held = await _lock_conversations(conn, set(conversations.values()))
        batch.skipped = [d.timer_id for d in due if conversations.get(d.timer_id) in held]
        takeable = [d for d in due if conversations.get(d.timer_id) not in held]
        claimed = set() if careful else await claim_fire_all(conn, takeable)
        for timer in takeable:
            own = (timer.timer_id, timer.revision) == (timer_id, revision)
            if careful:
                try:
                    outcome, owed = await _fire_one(conn, timer, share)
                except Exception as exc:
                    if is_retryable(exc) or conn.invalidated:
                        raise
                    log.error(
                        "timer action failed; left pending", timer_id=timer.timer_id, kind=timer.kind, exc_info=True
                    )
                    batch.failed.append(timer.timer_id)
                    if own:
                        batch.own, batch.own_error = "failed", exc
                    continue
            elif timer.timer_id in claimed:
                outcome, owed = await _act_on(conn, timer, share)
            else:
                continue  # not reached: the batch holds the pending row
            batch.fired.append(Fired(timer.timer_id, timer.revision, outcome, owed))
            if own:
                batch.own = outcome
        return batch


async def _act_on(conn: AsyncConnection, timer: Due, share: float) -> tuple[str, Owed]:
    conversation_id = _conversation_of(timer.kind, timer.subject)
    with structlog.contextvars.bound_contextvars(**({"conversation_id": conversation_id} if conversation_id else {})):
        return await _act(conn, timer, sla_at_risk_share=share)


async def _fire_one(conn: AsyncConnection, timer: Due, share: float) -> tuple[str, Owed]:
    """Mark one locked timer fired and act, in a savepoint: a failure undoes that timer alone."""
    with forgotten_on_error():
        async with conn.begin_nested():
            if await claim_fire(conn, timer.timer_id, timer.revision) is None:
                return "stale", None  # not reached: the batch holds the pending row
            return await _act_on(conn, timer, share)


async def _lock_conversations(conn: AsyncConnection, ids: set[str]) -> set[str]:
    """Lock these conversations without waiting; returns those another transaction holds (their timers wait)."""
    if not ids:
        return set()
    locked = await conn.execute(
        sa.select(conversation_t.c.id).where(conversation_t.c.id.in_(ids)).with_for_update(skip_locked=True)
    )
    missing = ids - set(locked.scalars())
    if not missing:
        return set()
    # Not locked: either held by another transaction, or no such conversation (its action finds nothing to do).
    found = await conn.execute(sa.select(conversation_t.c.id).where(conversation_t.c.id.in_(missing)))
    return set(found.scalars())


async def fire(conn: AsyncConnection, timer_id: int, revision: int, *, sla_at_risk_share: float) -> tuple[str, Owed]:
    """Fire this revision alone, waiting for its locks: ``(outcome, what the visitor is owed after the commit)``: an
    AI reply, a rating ask, or nothing; outcome ``stale`` when it is no longer pending. ``sla_at_risk_share``: the
    setting, for SLA policies with no share of their own.

    The subject (conversation) is locked before the timer row, the order the operator-reply hook
    uses too, so a reply and a firing serialize: whichever comes second sees the other's work.
    """
    row = (
        await conn.execute(
            sa.select(timer_t.c.kind, timer_t.c.subject, timer_t.c.due_at).where(
                timer_t.c.id == timer_id, timer_t.c.revision == revision, timer_t.c.state == "pending"
            )
        )
    ).first()
    if row is None:
        return "stale", None
    conversation_id = _conversation_of(row.kind, row.subject)
    if conversation_id is not None:
        structlog.contextvars.bind_contextvars(conversation_id=conversation_id)
        await conn.execute(sa.text("SELECT 1 FROM conversation WHERE id = :id FOR UPDATE"), {"id": conversation_id})
    if await claim_fire(conn, timer_id, revision) is None:
        return "stale", None
    return await _act(conn, Due(timer_id, revision, row.kind, row.subject, row.due_at), sla_at_risk_share)


async def _act(conn: AsyncConnection, row: Due, sla_at_risk_share: float) -> tuple[str, Owed]:
    """The kind's action, in the transaction that marked the timer fired."""
    if row.kind == FIRST_RESPONSE:
        return await _first_response(conn, row.subject, row.due_at), None
    if row.kind == SKILL_RELAX:
        return await waiting.relax_skills(conn, row.subject), None
    if row.kind == REOFFER:
        return await waiting.reoffer(conn, *waiting.reoffer_parts(row.subject)), None
    if row.kind == OFFLINE_GRACE:
        return await _offline_grace(conn, uuid.UUID(row.subject)), None
    if row.kind == PRESENCE_LAPSE:
        # The operator's last client left a grace ago: offline now (then each team's offline grace and policy).
        return await lapse(conn, uuid.UUID(row.subject)), None
    if row.kind == HOURS_OPEN:
        return await _hours_open(conn, uuid.UUID(row.subject)), None
    if row.kind == SLA:
        return await sla.fire(conn, row.subject, default_share=sla_at_risk_share), None
    if row.kind == CSAT_REQUEST:
        ask = await ask_owed(conn, row.subject)
        return ("csat_requested" if ask else "csat_answered"), ask
    takeover = await take_over(conn, row.subject, message_id=f"ai-{row.timer_id}-{row.revision}")
    return ("ai_takeover" if takeover else "ai_not_needed"), takeover


async def _first_response(conn: AsyncConnection, conversation_id: str, due_at: datetime) -> str:
    """The assignee never replied: the next eligible operator (not the same one) gets it, else the queue.

    The exclusion lasts until the conversation closes, or, when the team sets ``reofferAfterSeconds``, that long
    after the timeout (``due_at``): then they may be given it again, so a small team never stalls.
    """
    conv = (
        await conn.execute(
            sa.text("SELECT status, assignee_id, first_response_at FROM conversation WHERE id = :id"),
            {"id": conversation_id},
        )
    ).first()
    if conv is None or conv.status != "assigned" or conv.first_response_at is not None:
        return "answered"
    outcome = await handoff.reassign(
        conn, conversation_id, reason=FIRST_RESPONSE_REASON, exclude_operator_id=conv.assignee_id
    )
    await waiting.schedule_reoffer(conn, conversation_id, conv.assignee_id, due_at)
    return f"first_response_{outcome.outcome}"


async def _hours_open(conn: AsyncConnection, team_id: uuid.UUID) -> str:
    """The team opens: its timer is set to the next opening, its waiting queue goes to the members with room, and
    its visitors' widgets learn that a member is online.

    Early (clocks apart) it finds the team still closed: it sets the timer to the same opening again, nothing else.
    """
    hours = await team_hours(conn, team_id)
    if hours is None:
        return "team_deleted"
    await arm_opening(conn, team_id, hours.schedule)
    if not hours.is_open():
        return "hours_not_open_yet"
    assigned = await placement.drain_team_queue(conn, team_id, HOURS_OPEN)
    await announce_opening(conn, team_id)
    log.info("team opened", team_id=str(team_id), assigned=assigned)
    return "hours_open"


async def _offline_grace(conn: AsyncConnection, operator_id: uuid.UUID) -> str:
    """The operator stayed offline through a team's grace: that team's policy applies to their conversations there."""
    op = (
        await conn.execute(
            sa.text("SELECT status, status_changed_at FROM operator WHERE id = :id"), {"id": operator_id}
        )
    ).first()
    if op is None or op.status != "offline":
        return "back_online"
    moved = 0
    for team in (await conn.execute(_OFFLINE_TEAMS, {"operator_id": operator_id, "since": op.status_changed_at})).all():
        held = await conn.execute(
            sa.text(
                "SELECT id FROM conversation WHERE assignee_id = :op AND team_id = :team AND status = 'assigned' "
                "ORDER BY id"
            ),
            {"op": operator_id, "team": team.id},
        )
        for (conversation_id,) in held.all():
            if team.offline_policy == "requeue":
                await handoff.requeue(conn, conversation_id, reason=OFFLINE_REASON)
            else:
                await handoff.reassign(conn, conversation_id, reason=OFFLINE_REASON, exclude_operator_id=operator_id)
            moved += 1
    # Teams with a longer grace come later, on the same timer's next revision.
    await schedule_grace(conn, operator_id, op.status_changed_at)
    log.info("offline policy applied", operator_id=str(operator_id), conversations=moved)
    return "offline_applied"
