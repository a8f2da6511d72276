"""The AI reply as outbox work: sent at least once and stored once, retried on vendor errors, handed back.

The firing transaction leaves an ``ai_reply`` row (``take_over``); a worker sends it after the commit. A
message id derived from the timer revision makes a retry after a crash find the reply already stored
instead of sending a second one. A vendor error is retried with the outbox's backoff; when the last of
``AI_MAX_ATTEMPTS`` tries fails, or no further try could start before ``AI_HANDBACK_SECONDS`` after the
takeover fired (a try is cut off at that limit), the conversation goes back to the team's humans
(``hand_back``) and the row is done.
"""

from __future__ import annotations

from datetime import UTC, datetime

import sqlalchemy as sa
import structlog
from pocketping.ai.base import AIProvider

from service.ai.services import AiSender, hand_back, respond, still_owed
from service.db.tables import message_t
from service.db.transactions import in_transaction
from service.outbox import Delivery, DeliveryFailed, Done, retry_delay
from service.settings import Settings

log = structlog.get_logger(__name__)


async def deliver(pocketping: AiSender, provider: AIProvider, settings: Settings, delivery: Delivery) -> Done:
    """Send one owed AI reply, unless it was sent already or is no longer owed (an operator answered, AI paused)."""
    conversation_id, message_id = delivery.payload["conversationId"], delivery.payload["messageId"]
    async with pocketping.engine.connect() as conn:
        if await conn.scalar(sa.select(sa.exists().where(message_t.c.id == message_id))):
            return Done("already_sent")
        if not await still_owed(conn, conversation_id):
            return Done("not_needed")
    fired_at = datetime.fromisoformat(delivery.payload["firedAt"])

    def seconds_left() -> float:
        return settings.ai_handback_seconds - (datetime.now(UTC) - fired_at).total_seconds()

    try:
        if seconds_left() <= 0:
            raise TimeoutError("no time was left before the hand-back")
        await respond(
            pocketping,
            provider,
            conversation_id,
            message_id=message_id,
            announce=delivery.payload["announce"],
            context_messages=settings.ai_context_messages,
            vendor_seconds=seconds_left(),
        )
    except Exception as exc:
        error = f"{type(exc).__name__}: {exc}"[:300]
        attempts = delivery.attempts + 1
        # Retry while tries are left and the next one would start before the hand-back is due.
        if attempts < settings.ai_max_attempts and retry_delay(settings, attempts) < seconds_left():
            raise DeliveryFailed(f"The AI provider failed: {error}") from exc
        handed = await in_transaction(
            pocketping.engine, lambda conn: hand_back(conn, conversation_id, attempts=attempts, error=error)
        )
        log.warning("AI reply given up", conversation_id=conversation_id, attempts=attempts, error=error)
        return Done("handed_back" if handed else "not_needed")
    return Done("delivered")
