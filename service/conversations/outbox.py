"""Messages to the visitor produced outside a request (workers, other processes) go through the outbox."""

from __future__ import annotations

import secrets
import time
import uuid

import sqlalchemy as sa
from arq.connections import ArqRedis
from sqlalchemy.ext.asyncio import AsyncConnection

from service.db.tables import outbox_t

WIDGET_MESSAGE = "widget_message"


def new_message_id() -> str:
    """An id in the SDK's format (hex milliseconds, dash, random), chosen before sending."""
    return f"{int(time.time() * 1000):x}-{secrets.token_hex(4)}"


async def add_widget_message(
    conn: AsyncConnection,
    *,
    conversation_id: str,
    content: str,
    operator_id: uuid.UUID | None,
    operator_name: str | None,
) -> int:
    """Record, in the caller's transaction, an operator message to deliver; returns the outbox id."""
    payload = {
        "conversationId": conversation_id,
        "messageId": new_message_id(),
        "content": content,
        "operatorId": str(operator_id) if operator_id else None,
        "operatorName": operator_name,
    }
    return int(
        await conn.scalar(sa.insert(outbox_t).values(kind=WIDGET_MESSAGE, payload=payload).returning(outbox_t.c.id))
    )


async def enqueue_delivery(arq: ArqRedis, outbox_id: int) -> None:
    """Trigger delivery now; if this is lost, the worker's sweep finds the row anyway."""
    await arq.enqueue_job("deliver_outbox", outbox_id=outbox_id, _job_id=f"outbox:{outbox_id}")
