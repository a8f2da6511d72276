"""SLA clocks: each conversation's first-response, next-response and resolution deadlines, kept on one ``sla`` timer.

Whatever changes a clock (routing places the conversation, an operator replies, the visitor writes again, it
closes) marks the clock rows in the caller's transaction and moves the conversation's ``sla`` timer to *now*.
The timer's firing (``refresh``) computes the missing deadlines with the team's business hours (a clock pauses
while the team is closed), reports what has come due (at risk, breached) and moves the timer to the next such
moment. So every deadline is computed in one place, by a worker, exactly once per timer revision.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from service.db.tables import decision_t, sla_clock_t
from service.events import record_event
from service.hours import calendar
from service.hours import clock as hours_clock
from service.hours.services import team_schedule
from service.queue import Trigger
from service.timers.services import SLA, cancel_timer, remember, schedule_timer, upsert_timers

FIRST_RESPONSE = "first_response"
NEXT_RESPONSE = "next_response"
RESOLUTION = "resolution"
AT_RISK = "at_risk"
BREACHED = "breached"

# The policy that applies to a conversation: its team's for its priority, else the team's catch-all (NULL).
POLICY_FOR = """
    SELECT p.* FROM sla_policy p
    WHERE p.team_id = c.team_id AND (p.priority = c.priority OR p.priority IS NULL)
    ORDER BY p.priority IS NULL LIMIT 1
"""

# After placement: the first-response clock (while nobody has replied) and the resolution clock run from the
# moment the visitor started waiting, under the team's policy for the conversation's priority. A clock that
# is running keeps its start and flags (a transfer only changes the targets it is measured by); a stopped
# resolution clock (the conversation was closed, now reopened) starts a new cycle. Running clocks the new
# team's policy does not track are dropped, or stopped where they were breached (the breach stays counted,
# for the team it happened in). One statement, so routing pays one round trip for it.
_START = sa.text(
    f"""
    WITH conv AS (
        SELECT c.id, c.team_id, c.priority, coalesce(c.waiting_since, now()) AS since, c.first_response_at
        FROM conversation c WHERE c.id = :conversation_id
    ), policy AS (
        SELECT p.* FROM conv c CROSS JOIN LATERAL ({POLICY_FOR}) p
    ), wanted AS (
        SELECT conv.id, 'first_response' AS target, conv.team_id, policy.id AS policy_id,
               policy.first_response_seconds AS seconds, conv.since
        FROM conv, policy WHERE policy.first_response_seconds IS NOT NULL AND conv.first_response_at IS NULL
        UNION ALL
        SELECT conv.id, 'resolution', conv.team_id, policy.id, policy.resolution_seconds, conv.since
        FROM conv, policy WHERE policy.resolution_seconds IS NOT NULL
    ), untracked AS (
        SELECT s.target FROM sla_clock s WHERE s.conversation_id = :conversation_id AND s.stopped_at IS NULL
          AND s.target <> 'next_response' AND s.target NOT IN (SELECT target FROM wanted)
    ), dropped AS (
        DELETE FROM sla_clock s USING untracked u
        WHERE s.conversation_id = :conversation_id AND s.target = u.target AND NOT s.ever_breached
    ), ended AS (
        UPDATE sla_clock s SET stopped_at = now() FROM untracked u
        WHERE s.conversation_id = :conversation_id AND s.target = u.target AND s.ever_breached
    ), started AS (
        INSERT INTO sla_clock (conversation_id, target, team_id, policy_id, target_seconds, started_at)
        SELECT id, target, team_id, policy_id, seconds, since FROM wanted
        ON CONFLICT (conversation_id, target) DO UPDATE SET
            team_id = EXCLUDED.team_id, policy_id = EXCLUDED.policy_id, target_seconds = EXCLUDED.target_seconds,
            at_risk_at = NULL, due_at = NULL,
            started_at = CASE WHEN sla_clock.stopped_at IS NULL THEN sla_clock.started_at ELSE EXCLUDED.started_at END,
            at_risk_reported_at = CASE WHEN sla_clock.stopped_at IS NULL THEN sla_clock.at_risk_reported_at END,
            breached_at = CASE WHEN sla_clock.stopped_at IS NULL THEN sla_clock.breached_at END,
            cycles = sla_clock.cycles + CASE WHEN sla_clock.stopped_at IS NULL THEN 0 ELSE 1 END,
            stopped_at = NULL
        WHERE sla_clock.stopped_at IS NULL OR sla_clock.target = 'resolution'
        RETURNING conversation_id
    ), timer AS ({upsert_timers("SELECT DISTINCT 'sla', conversation_id, now() FROM started")})
    SELECT id, revision, due_at FROM timer
    """
)

# An operator's reply stops the response clocks; the next-response clock (where the policy has one) waits,
# stopped, for the visitor's next message (``cycles`` 0 until the first).
_REPLIED = sa.text(
    f"""
    WITH stopped AS (
        UPDATE sla_clock SET stopped_at = now()
        WHERE conversation_id = :conversation_id AND target IN ('first_response', 'next_response')
          AND stopped_at IS NULL
        RETURNING conversation_id
    ), waiting AS (
        INSERT INTO sla_clock (conversation_id, target, team_id, policy_id, target_seconds, started_at, stopped_at,
                               cycles)
        SELECT c.id, 'next_response', c.team_id, p.id, p.next_response_seconds, now(), now(), 0
        FROM conversation c CROSS JOIN LATERAL ({POLICY_FOR}) p
        WHERE c.id = :conversation_id AND p.next_response_seconds IS NOT NULL
        ON CONFLICT (conversation_id, target) DO NOTHING
    )
    SELECT count(*) FROM stopped
    """
)

# What a visitor message does to the clocks, as CTEs of the ingest statement (which provides ``touched`` and
# ``latest``): a next-response clock waiting for it starts at the visitor's first message of the batch, and
# the conversation's ``sla`` timer is moved to now so the worker computes its deadline.
NEXT_RESPONSE_CTES = f"""
sla_next AS (
    UPDATE sla_clock s SET started_at = latest.first_at, stopped_at = NULL, at_risk_at = NULL, due_at = NULL,
        at_risk_reported_at = NULL, breached_at = NULL, cycles = s.cycles + 1
    FROM touched JOIN latest ON latest.conversation_id = touched.id
    WHERE s.conversation_id = touched.id AND s.target = 'next_response' AND s.stopped_at IS NOT NULL
    RETURNING s.conversation_id
), sla_timer AS ({upsert_timers("SELECT 'sla', conversation_id, now() FROM sla_next")})
"""


async def start(conn: AsyncConnection, conversation_id: str) -> None:
    """After the conversation is placed in a team: its clocks follow that team's policy (see ``_START``)."""
    armed = (await conn.execute(_START, {"conversation_id": conversation_id})).first()
    if armed is not None:
        remember(Trigger(armed.id, armed.revision, armed.due_at))


async def operator_replied(conn: AsyncConnection, conversation_id: str) -> None:
    """An operator answered: the first- and next-response clocks stop (met, or breached earlier)."""
    if await conn.scalar(_REPLIED, {"conversation_id": conversation_id}):
        now: datetime = (await conn.execute(sa.select(sa.func.now()))).scalar_one()
        await schedule_timer(conn, SLA, conversation_id, now)


async def closed(conn: AsyncConnection, conversation_id: str) -> None:
    """The conversation closed: every running clock stops (resolution met unless breached) and the timer ends."""
    await conn.execute(
        sa.update(sla_clock_t)
        .where(sla_clock_t.c.conversation_id == conversation_id, sla_clock_t.c.stopped_at.is_(None))
        .values(stopped_at=sa.func.clock_timestamp())
    )
    await cancel_timer(conn, SLA, conversation_id)


@dataclass(frozen=True)
class Moment:
    """A clock that has come due: ``at_risk`` or ``breached``, with its deadline."""

    target: str
    moment: str
    due_at: datetime
    policy_id: uuid.UUID | None


_CLOCKS = sa.text(
    """
    SELECT s.target, s.started_at, s.at_risk_at, s.due_at, s.at_risk_reported_at, s.breached_at, s.policy_id,
           s.ever_breached,
           CASE s.target WHEN 'first_response' THEN p.first_response_seconds
                         WHEN 'next_response' THEN p.next_response_seconds ELSE p.resolution_seconds END AS seconds,
           p.at_risk_share
    FROM sla_clock s LEFT JOIN sla_policy p ON p.id = s.policy_id
    WHERE s.conversation_id = :conversation_id AND s.stopped_at IS NULL
    ORDER BY array_position(ARRAY['first_response', 'next_response', 'resolution'], s.target)
    """
)


def deadlines(
    started_at: datetime, seconds: int, share: float, schedule: calendar.Schedule
) -> tuple[datetime, datetime]:
    """The at-risk moment and the deadline (real instants) of a clock started at ``started_at``: ``share * seconds``
    and ``seconds`` of the schedule's open time added, as the business-hours clock reads the start."""
    # The business-hours clock runs CLOCK_OFFSET_SECONDS ahead of the real one (0 in production).
    begin = started_at + (started_at - hours_clock.to_real(started_at))
    return (
        hours_clock.to_real(calendar.add_business_seconds(schedule, begin, seconds * share)),
        hours_clock.to_real(calendar.add_business_seconds(schedule, begin, seconds)),
    )


async def refresh(conn: AsyncConnection, conversation_id: str, *, default_share: float) -> list[Moment]:
    """Compute the running clocks' missing deadlines, flag what has come due by now, and move the ``sla`` timer
    to the next moment (cancelled when none is left). Returns the moments flagged now, clock by clock.

    A clock found past its deadline reports ``breached`` only (its at-risk moment is marked passed with it).
    """
    conv = (
        await conn.execute(
            sa.text("SELECT id, team_id, status, clock_timestamp() AS now FROM conversation WHERE id = :id"),
            {"id": conversation_id},
        )
    ).first()
    if conv is None:
        return []
    now: datetime = conv.now
    schedule = calendar.ALWAYS_OPEN if conv.team_id is None else await team_schedule(conn, conv.team_id)
    moments: list[Moment] = []
    upcoming: list[datetime] = []
    for clock in (await conn.execute(_CLOCKS, {"conversation_id": conversation_id})).all():
        values: dict[str, Any] = {}
        at_risk_at, due_at = clock.at_risk_at, clock.due_at
        if clock.seconds is None:
            # The policy lost this target (or was deleted): the clock is dropped, or stopped if it was
            # ever breached (that stays counted).
            this = (sla_clock_t.c.conversation_id == conversation_id) & (sla_clock_t.c.target == clock.target)
            if clock.ever_breached:
                await conn.execute(sa.update(sla_clock_t).where(this).values(stopped_at=now))
            else:
                await conn.execute(sa.delete(sla_clock_t).where(this))
            continue
        if due_at is None:
            share = clock.at_risk_share if clock.at_risk_share is not None else default_share
            at_risk_at, due_at = deadlines(clock.started_at, clock.seconds, share, schedule)
            values.update(at_risk_at=at_risk_at, due_at=due_at, target_seconds=clock.seconds)
        if clock.breached_at is None and due_at <= now:
            values.update(breached_at=now, ever_breached=True)
            if clock.at_risk_reported_at is None:
                values["at_risk_reported_at"] = now
            moments.append(Moment(clock.target, BREACHED, due_at, clock.policy_id))
        elif clock.at_risk_reported_at is None and at_risk_at <= now:
            values["at_risk_reported_at"] = now
            moments.append(Moment(clock.target, AT_RISK, due_at, clock.policy_id))
            upcoming.append(due_at)
        elif clock.breached_at is None:
            upcoming.append(at_risk_at if clock.at_risk_reported_at is None else due_at)
        if values:
            await conn.execute(
                sa.update(sla_clock_t)
                .where(sla_clock_t.c.conversation_id == conversation_id, sla_clock_t.c.target == clock.target)
                .values(**values)
            )
    if upcoming:
        await schedule_timer(conn, SLA, conversation_id, min(upcoming))
    else:
        await cancel_timer(conn, SLA, conversation_id)
    for moment in moments:
        await _report(conn, conv, moment)
    return moments


async def _report(conn: AsyncConnection, conv: Any, moment: Moment) -> None:
    """The ``sla.at_risk`` / ``sla.breached`` event (team, assignee) and its routing-audit entry."""
    row = await _subject(conn, conv.id)
    await record_event(
        conn,
        f"sla.{moment.moment}",
        team_id=row.team_id,
        conversation_id=conv.id,
        operator_ids=[row.assignee_id] if row.assignee_id else [],
        data={
            "conversationId": conv.id,
            "target": moment.target,
            "dueAt": moment.due_at.isoformat(),
            "assigneeId": str(row.assignee_id) if row.assignee_id else None,
            "policyId": str(moment.policy_id) if moment.policy_id else None,
        },
    )
    await audit_step(conn, conv.id, f"sla_{moment.moment}", moment.target)


async def _subject(conn: AsyncConnection, conversation_id: str) -> Any:
    return (
        await conn.execute(
            sa.text(
                "SELECT c.team_id, c.assignee_id, c.status, coalesce(t.routing_policy, 'manual') AS policy "
                "FROM conversation c LEFT JOIN team t ON t.id = c.team_id WHERE c.id = :id"
            ),
            {"id": conversation_id},
        )
    ).one()


async def audit_step(conn: AsyncConnection, conversation_id: str, trigger: str, reason: str) -> None:
    """A routing-audit entry (a ``routing_decision`` with outcome ``unchanged``) for an SLA step that moved nothing."""
    row = await _subject(conn, conversation_id)
    await conn.execute(
        sa.insert(decision_t).values(
            conversation_id=conversation_id,
            team_id=row.team_id,
            policy=row.policy,
            trigger=trigger,
            candidates=[],
            chosen_operator_id=row.assignee_id,
            outcome="unchanged",
            reason=reason,
        )
    )
