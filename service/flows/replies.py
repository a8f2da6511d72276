"""What an operator's reply means beyond the message itself: the AI steps back, and the SLA response clocks stop."""

from __future__ import annotations

import uuid

from sqlalchemy.ext.asyncio import AsyncConnection

from service.ai import services as ai
from service.sla import clocks as sla_clocks


async def operator_replied(conn: AsyncConnection, conversation_id: str, operator_id: uuid.UUID | None) -> None:
    """The gateway's ``operator_replied`` hook, in the reply's own transaction (the AI's part first: it locks)."""
    await ai.operator_replied(conn, conversation_id, operator_id)
    await sla_clocks.operator_replied(conn, conversation_id)
