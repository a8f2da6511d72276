"""Operator messages produced outside a request (a worker, another process), sent to the widget through the outbox."""

from __future__ import annotations

import secrets
import time
import uuid

from sqlalchemy.ext.asyncio import AsyncConnection

from service import outbox
from service.gateway.hub import SwitchboardPocketPing
from service.outbox import Delivery, Done

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
    return await outbox.add(conn, WIDGET_MESSAGE, payload)


async def deliver_widget_message(pocketping: SwitchboardPocketPing, delivery: Delivery) -> Done:
    """Send the message through the SDK (stored, pushed to the widget, mirrored to bridges)."""
    payload = delivery.payload
    # The message id was fixed when the row was written: a re-delivery after a crash
    # re-sends the same message, which storage upserts and the widget de-duplicates.
    await pocketping.send_as_operator(
        payload["conversationId"],
        payload["content"],
        operator_id=uuid.UUID(payload["operatorId"]) if payload["operatorId"] else None,
        operator_name=payload["operatorName"],
        message_id=payload["messageId"],
    )
    return Done()
