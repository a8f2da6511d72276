"""What operators do in a site's conversation, sent back to the site's backend: signed callbacks, through the outbox.

The worker's site relay reads the event table with a cursor of its own (``site_callbacks``) and writes one
``site_callback`` outbox row per event of a site's conversation that its visitor must see (an operator's or the
AI's message, an operator's read receipt, an assignment); the row's dedupe key makes a second pass add nothing.
Operator typing has no event: it is added to the outbox directly, and dropped when it is stale. The message row,
its event and so its callback exist together: a reply stored is a reply the site is told of, at least once; the
connector de-duplicates by the callback's id.
"""

from __future__ import annotations

import json
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import ClassVar

import httpx2
import sqlalchemy as sa
from arq.connections import ArqRedis
from sqlalchemy.ext.asyncio import AsyncEngine

from service import connect, outbox
from service.crypto import decrypt_secret
from service.db.tables import conversation_t, site_t
from service.outbox import Delivery, DeliveryFailed, Done
from service.queue import enqueue_delivery
from service.realtime.relay import OutboxRelay
from service.settings import Settings
from service.sites.services import CALLBACK_PURPOSE
from service.webhooks.delivery import post_guarded

SITE_CALLBACK = "site_callback"  # the outbox kind
SITE_CURSOR = "site_callbacks"
# Typing shown this late would be wrong: a typing callback not delivered by then is dropped.
TYPING_TTL_SECONDS = 10.0

_FAN_OUT = sa.text(
    """
    INSERT INTO outbox (kind, payload, dedupe_key)
    SELECT 'site_callback',
           jsonb_build_object('siteId', c.site_id, 'id', 'sb-' || e.id, 'sessionId', e.conversation_id,
                              'conversationId', e.conversation_id,
                              'type', CASE e.kind WHEN 'message.created' THEN 'message'
                                                  WHEN 'message.receipt' THEN 'read' ELSE 'assigned' END,
                              'data', e.data || jsonb_build_object('operatorName', o.display_name)),
           'site_callback:' || e.id
    FROM event e
    JOIN conversation c ON c.id = e.conversation_id
    LEFT JOIN operator o ON o.id = (e.data ->> 'operatorId')::uuid
    WHERE e.id = ANY(:ids) AND c.site_id IS NOT NULL
      AND ((e.kind = 'message.created' AND e.data ->> 'sender' IN ('operator', 'ai'))
           OR (e.kind = 'message.receipt' AND e.data ->> 'by' = 'operator')
           OR e.kind = 'conversation.assigned')
    ORDER BY e.id
    ON CONFLICT (dedupe_key) DO NOTHING
    RETURNING id
    """
)


class SiteCallbackRelay(OutboxRelay):
    """Reads new events into ``site_callback`` outbox rows with the ``site_callbacks`` cursor."""

    cursor = SITE_CURSOR
    statement: ClassVar[sa.TextClause] = _FAN_OUT


async def operator_typing(engine: AsyncEngine, arq: ArqRedis, conversation_id: str, is_typing: bool) -> None:
    """Tell the site's backend that an operator is (no longer) typing, if the conversation is a site's."""
    async with engine.begin() as conn:
        site_id = await conn.scalar(sa.select(conversation_t.c.site_id).where(conversation_t.c.id == conversation_id))
        if site_id is None:
            return
        expires = datetime.now(UTC) + timedelta(seconds=TYPING_TTL_SECONDS)
        payload = {
            "siteId": str(site_id),
            "id": f"sb-typing-{time.time_ns()}",
            "sessionId": conversation_id,
            "conversationId": conversation_id,
            "type": "typing",
            "data": {"isTyping": is_typing},
            "expiresAt": expires.isoformat(),
        }
        outbox_id = await outbox.add(conn, SITE_CALLBACK, payload)
    await enqueue_delivery(arq, outbox_id)


async def deliver(engine: AsyncEngine, client: httpx2.AsyncClient, settings: Settings, delivery: Delivery) -> Done:
    """POST one callback to its site, signed, to an address the guard allows; ``DeliveryFailed`` unless it answers
    2xx. A site without a callback URL (or revoked) gets nothing: the row is dead, the operator's work is kept."""
    payload = delivery.payload
    if "expiresAt" in payload and datetime.fromisoformat(payload["expiresAt"]) < datetime.now(UTC):
        return Done("expired")
    async with engine.connect() as conn:
        site = (
            await conn.execute(
                sa.select(site_t.c.callback_url, site_t.c.callback_secret_encrypted, site_t.c.revoked_at).where(
                    site_t.c.id == payload["siteId"]
                )
            )
        ).first()
    if site is None or site.revoked_at is not None:
        raise DeliveryFailed("site gone or revoked", final=True, tried=False)
    if not site.callback_url:
        raise DeliveryFailed("site has no callback URL", final=True, tried=False)
    secret = decrypt_secret(settings.secret_key, CALLBACK_PURPOSE, site.callback_secret_encrypted)
    event = {k: payload[k] for k in ("id", "type", "sessionId", "data")}
    body = json.dumps(event, separators=(",", ":"), ensure_ascii=False).encode()
    headers = {"User-Agent": "Switchboard-Connect/1", **connect.signed_headers(secret, body)}
    return await post_guarded(client, settings, site.callback_url, body, headers)


def outbox_kind(settings: Settings, send: Callable[[Delivery], Awaitable[Done]]) -> outbox.Kind:
    """The outbox's ``site_callback`` kind: ``send`` (``deliver``), retried as webhooks are (their timeout, tries
    and age)."""
    return outbox.Kind(
        send,
        lease_seconds=settings.webhook_timeout_seconds + 30.0,
        max_attempts=settings.webhook_max_attempts,
        max_age_seconds=settings.webhook_max_age_seconds,
    )
