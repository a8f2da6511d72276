"""Timeout flows: what each kind of timer does when it fires (first-response timeout, presence lapse, offline
grace, AI takeover, CSAT request, a team's opening, SLA clocks).

Each runs in the transaction that marks the timer fired, so a timer acts once.
"""

from __future__ import annotations

import uuid

import sqlalchemy as sa
import structlog
from sqlalchemy.ext.asyncio import AsyncConnection

from service.ai.services import Takeover, take_over
from service.csat.services import RatingAsk, ask_owed
from service.db.tables import timer_t
from service.flows import sla
from service.hours.services import arm_opening, team_hours
from service.presence.services import announce_opening, lapse, schedule_grace
from service.routing import handoff, placement
from service.timers.services import (
    AI_TAKEOVER,
    CSAT_REQUEST,
    FIRST_RESPONSE,
    HOURS_OPEN,
    OFFLINE_GRACE,
    PRESENCE_LAPSE,
    SLA,
    claim_fire,
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


async def fire(
    conn: AsyncConnection, timer_id: int, revision: int, *, sla_at_risk_share: float
) -> tuple[str, Takeover | RatingAsk | None]:
    """Fire this revision once: ``(outcome, what the visitor is owed after the commit)``: an AI reply, a rating
    ask, or nothing; outcome ``stale`` when it is no longer pending. ``sla_at_risk_share``: the setting, for
    SLA policies with no share of their own.

    The subject (conversation) is locked before the timer row, the order the operator-reply hook
    uses too, so a reply and a firing serialize: whichever comes second sees the other's work.
    """
    row = (
        await conn.execute(
            sa.select(timer_t.c.kind, timer_t.c.subject).where(
                timer_t.c.id == timer_id, timer_t.c.revision == revision, timer_t.c.state == "pending"
            )
        )
    ).first()
    if row is None:
        return "stale", None
    if row.kind in (FIRST_RESPONSE, AI_TAKEOVER, CSAT_REQUEST, SLA):
        structlog.contextvars.bind_contextvars(conversation_id=row.subject)
        await conn.execute(sa.text("SELECT 1 FROM conversation WHERE id = :id FOR UPDATE"), {"id": row.subject})
    if await claim_fire(conn, timer_id, revision) is None:
        return "stale", None
    if row.kind == FIRST_RESPONSE:
        return await _first_response(conn, row.subject), None
    if row.kind == OFFLINE_GRACE:
        return await _offline_grace(conn, uuid.UUID(row.subject)), None
    if row.kind == PRESENCE_LAPSE:
        # The operator's last client left a grace ago: offline now (then each team's offline grace and policy).
        return await lapse(conn, uuid.UUID(row.subject)), None
    if row.kind == SLA:
        return await sla.fire(conn, row.subject, default_share=sla_at_risk_share), None
    if row.kind == HOURS_OPEN:
        return await _hours_open(conn, uuid.UUID(row.subject)), None
    if row.kind == CSAT_REQUEST:
        ask = await ask_owed(conn, row.subject)
        return ("csat_requested" if ask else "csat_answered"), ask
    takeover = await take_over(conn, row.subject, message_id=f"ai-{timer_id}-{revision}")
    return ("ai_takeover" if takeover else "ai_not_needed"), takeover


async def _first_response(conn: AsyncConnection, conversation_id: str) -> str:
    """The assignee never replied: the next eligible operator (never the same one) gets it, else the queue."""
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
