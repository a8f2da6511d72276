"""Telling a team's leads that a conversation needs them (an SLA escalation, the AI handing one back).

One ``leads.alerted`` event, addressed to the leads: it reaches them on the operator event stream, and the
bridge and push relays turn it into a direct message on each chat bridge a lead is linked on and a push to
each of their devices (``service/bridges/notify.py``, ``service/push/notify.py``, texts in ``service/notices``).
"""

from __future__ import annotations

import uuid
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from service.db.tables import member_t, operator_t
from service.events import record_event

LEADS_ALERTED = "leads.alerted"


async def tell_leads(
    conn: AsyncConnection, team_id: uuid.UUID, conversation_id: str, *, reason: str, data: dict[str, Any] | None = None
) -> list[uuid.UUID]:
    """Record the alert for the team's active leads in the caller's transaction; returns who was told."""
    leads = list(
        (
            await conn.scalars(
                sa.select(member_t.c.operator_id)
                .join(operator_t, operator_t.c.id == member_t.c.operator_id)
                .where(member_t.c.team_id == team_id, member_t.c.role == "lead", operator_t.c.deactivated_at.is_(None))
                .order_by(member_t.c.operator_id)
            )
        ).all()
    )
    await record_event(
        conn,
        LEADS_ALERTED,
        team_id=team_id,
        conversation_id=conversation_id,
        operator_ids=leads,
        data={
            "conversationId": conversation_id,
            "reason": reason,
            "leadIds": [str(lead) for lead in leads],
            **(data or {}),
        },
    )
    return leads
