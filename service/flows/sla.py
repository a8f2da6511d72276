"""What an SLA timer does when it fires: the clocks' deadlines computed and flagged, then the policy's escalation
steps for each moment that came due (offer to another operator, tell the leads, move to an overflow team).

It runs in the transaction that marks the timer fired, with the conversation locked, so each step runs once.
"""

from __future__ import annotations

import uuid
from typing import Any

import sqlalchemy as sa
import structlog
from sqlalchemy.ext.asyncio import AsyncConnection

from service.errors import Conflict
from service.routing import handoff
from service.sla import clocks
from service.teams.leads import tell_leads

log = structlog.get_logger(__name__)

ESCALATION = "sla_escalation"  # the routing-audit trigger of every step


async def fire(conn: AsyncConnection, conversation_id: str, *, default_share: float) -> str:
    """Refresh the conversation's clocks and run the escalation steps of what came due; returns the outcome."""
    moments = await clocks.refresh(conn, conversation_id, default_share=default_share)
    for moment in moments:
        for step in await _steps(conn, moment):
            await _escalate(conn, conversation_id, moment, step)
    if moments:
        # A step may have moved the conversation to another team: its clocks are measured by that policy now.
        await clocks.refresh(conn, conversation_id, default_share=default_share)
    return "sla_" + ",".join(f"{m.target}_{m.moment}" for m in moments) if moments else "sla_refreshed"


async def _steps(conn: AsyncConnection, moment: clocks.Moment) -> list[dict[str, Any]]:
    if moment.policy_id is None:
        return []
    escalation = await conn.scalar(
        sa.text("SELECT escalation FROM sla_policy WHERE id = :id"), {"id": moment.policy_id}
    )
    return [step for step in escalation or [] if step.get("on") == moment.moment]


async def _escalate(conn: AsyncConnection, conversation_id: str, moment: clocks.Moment, step: dict[str, Any]) -> None:
    """One step; each leaves a routing-audit entry (a reassignment or transfer leaves its own decision)."""
    conv = (
        await conn.execute(
            sa.text("SELECT status, team_id, assignee_id FROM conversation WHERE id = :id"), {"id": conversation_id}
        )
    ).one()
    action = step["action"]
    why = f"{moment.target}_{moment.moment}"
    if conv.status == "closed":
        return
    if action == "reassign":
        if conv.status != "assigned":
            await clocks.audit_step(conn, conversation_id, ESCALATION, f"reassign skipped: not assigned ({why})")
            return
        await handoff.reassign(conn, conversation_id, reason=ESCALATION, exclude_operator_id=conv.assignee_id)
    elif action == "tell_leads":
        leads = await tell_leads(
            conn,
            conv.team_id,
            conversation_id,
            reason=f"sla_{why}",
            data={"target": moment.target, "moment": moment.moment, "dueAt": moment.due_at.isoformat()},
        )
        await clocks.audit_step(conn, conversation_id, ESCALATION, f"leads told ({why}): {len(leads)}")
    elif action == "overflow":
        team_id = uuid.UUID(step["teamId"])
        try:
            await handoff.transfer_to_team(
                conn, conversation_id, team_id, actor_id=None, trigger=ESCALATION, reason="sla_overflow"
            )
        except Conflict as exc:
            await clocks.audit_step(conn, conversation_id, ESCALATION, f"overflow skipped: {exc} ({why})")
    log.info("sla escalation", conversation_id=conversation_id, action=action, target=moment.target)
