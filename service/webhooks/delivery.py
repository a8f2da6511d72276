"""Outbound webhooks: one outbox row per (event, endpoint), signed, retried with backoff until delivered or dead;
an endpoint failing for too long is disabled."""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, get_args
from urllib.parse import quote

import httpx2
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from service import outbox
from service.audit import record_audit
from service.crypto import decrypt_secret
from service.db.tables import endpoint_t, outbox_t
from service.events import record_event
from service.outbox import Delivery, DeliveryFailed, Done
from service.settings import Settings
from service.webhooks import guard
from service.webhooks.schemas import WebhookEventKind

WEBHOOK = "webhook"
SECRET_PURPOSE = "webhook-signing"  # the key-derivation label for endpoint secrets at rest
TEST_EVENT = "webhook.test"
DISABLED_EVENT = "webhook.disabled"  # told to the team (event stream, dashboard) and kept in the audit trail
# The domain events a receiver outside Switchboard can subscribe to (notes and presence stay inside).
WEBHOOK_EVENT_KINDS = get_args(WebhookEventKind)
# A delivery being sent is leased for the send's timeout plus this.
LEASE_MARGIN_SECONDS = 30.0

# Each new event, for each enabled endpoint of its team that wants its kind: one row, whose
# dedupe key makes a second pass over the same events (another relay, a restart) add nothing.
_FAN_OUT = sa.text(
    """
    INSERT INTO outbox (kind, payload, webhook_endpoint_id, dedupe_key)
    SELECT 'webhook',
           jsonb_build_object('event', jsonb_build_object(
               'id', e.id, 'type', e.kind, 'createdAt', e.created_at, 'teamId', e.team_id,
               'conversationId', e.conversation_id, 'data', e.data)),
           w.id,
           'webhook:' || w.id || ':' || e.id
    FROM event e
    JOIN webhook_endpoint w
      ON w.team_id = e.team_id AND w.enabled AND (cardinality(w.events) = 0 OR e.kind = ANY(w.events))
    WHERE e.id = ANY(:ids) AND e.kind = ANY(:kinds)
    ORDER BY e.id, w.id
    ON CONFLICT (dedupe_key) DO NOTHING
    RETURNING id
    """
)


async def fan_out(conn: AsyncConnection, event_ids: Sequence[int]) -> list[int]:
    """Outbox rows for the webhook deliveries these events call for; returns the new rows' ids."""
    result = await conn.execute(_FAN_OUT, {"ids": list(event_ids), "kinds": list(WEBHOOK_EVENT_KINDS)})
    return [row.id for row in result]


async def add_test_delivery(conn: AsyncConnection, endpoint_id: Any, team_id: Any) -> int:
    """A ``webhook.test`` delivery to one endpoint, through the same outbox and retries as real events."""
    event: dict[str, Any] = {
        "id": None,
        "type": TEST_EVENT,
        "createdAt": None,
        "teamId": str(team_id),
        "conversationId": None,
        "data": {"message": "Test delivery from Switchboard"},
    }
    return await outbox.add(conn, WEBHOOK, {"event": event}, webhook_endpoint_id=endpoint_id)


def sign(secret: str, timestamp: int, body: bytes) -> str:
    """The ``Switchboard-Signature`` header: HMAC-SHA256 of ``"{timestamp}.{body}"`` keyed with the secret."""
    digest = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={digest}"


def with_links(settings: Settings, event: dict[str, Any]) -> dict[str, Any]:
    """The event as sent: with ``links.conversation``, the conversation's dashboard page (under ``PATH_PREFIX``),
    added when it is sent so a moved or re-prefixed site links right."""
    if not event.get("conversationId"):
        return event
    page = f"{settings.base_url}/app/conversations/{quote(event['conversationId'], safe='')}"
    return {**event, "links": {"conversation": page}}


def lease_seconds(settings: Settings) -> float:
    """How long a delivery is leased: the send's timeout plus a margin."""
    return settings.webhook_timeout_seconds + LEASE_MARGIN_SECONDS


def outbox_kind(settings: Settings, send: Callable[[Delivery], Awaitable[Done]]) -> outbox.Kind:
    """The outbox's webhook kind: ``send`` (``deliver``), leased for its timeout, given up after the configured tries
    or age."""
    return outbox.Kind(
        send,
        lease_seconds=lease_seconds(settings),
        max_attempts=settings.webhook_max_attempts,
        max_age_seconds=settings.webhook_max_age_seconds,
    )


async def deliver(engine: AsyncEngine, client: httpx2.AsyncClient, settings: Settings, delivery: Delivery) -> Done:
    """POST one leased delivery to its endpoint, signed, to an address the guard allows; ``DeliveryFailed`` unless
    it answers 2xx (held while the endpoint is disabled, final when its address is refused)."""
    async with engine.connect() as conn:
        endpoint = (
            await conn.execute(
                sa.select(
                    endpoint_t.c.id,
                    endpoint_t.c.url,
                    endpoint_t.c.secret_encrypted,
                    endpoint_t.c.enabled,
                    endpoint_t.c.failing_since,
                )
                .join(outbox_t, outbox_t.c.webhook_endpoint_id == endpoint_t.c.id)
                .where(outbox_t.c.id == delivery.id)
            )
        ).one()
    if not endpoint.enabled:
        raise DeliveryFailed("endpoint disabled; the delivery waits until it is enabled again", hold=True, tried=False)
    try:
        done = await _post(client, settings, endpoint, delivery)
    except DeliveryFailed as exc:
        if await _failed(engine, settings, endpoint.id, exc):
            raise DeliveryFailed(str(exc), exc.status_code, hold=True) from exc
        raise
    if endpoint.failing_since is not None:
        async with engine.begin() as conn:
            await conn.execute(sa.update(endpoint_t).where(endpoint_t.c.id == endpoint.id).values(failing_since=None))
    return done


async def _post(client: httpx2.AsyncClient, settings: Settings, endpoint: Any, delivery: Delivery) -> Done:
    secret = decrypt_secret(settings.secret_key, SECRET_PURPOSE, endpoint.secret_encrypted)
    event = with_links(settings, delivery.payload["event"])
    body = json.dumps(event, separators=(",", ":"), ensure_ascii=False).encode()
    headers = {
        "User-Agent": "Switchboard-Webhooks/1",
        "Switchboard-Event": event["type"],
        "Switchboard-Delivery": str(delivery.id),
        "Switchboard-Signature": sign(secret, int(time.time()), body),
    }
    return await post_guarded(client, settings, endpoint.url, body, headers)


async def post_guarded(
    client: httpx2.AsyncClient, settings: Settings, url: str, body: bytes, headers: dict[str, str]
) -> Done:
    """POST a JSON body to an address the guard allows (``WEBHOOK_ALLOWED_CIDRS``), with the webhook timeout;
    ``DeliveryFailed`` unless it answers 2xx (final when the address is refused; redirects are not followed)."""
    try:
        target = await guard.target(url, settings.webhook_allowed_cidrs)
    except guard.Blocked as exc:
        raise DeliveryFailed(f"refused: {exc}", final=True) from exc
    except OSError as exc:
        raise DeliveryFailed(f"DNS: {exc}"[:500]) from exc
    headers = {"Host": target.host_header, "Content-Type": "application/json", **headers}
    # The checked address, never the name again; TLS still checks the certificate against the name.
    extensions = {"sni_hostname": target.sni_hostname} if target.sni_hostname else None
    try:
        response = await client.post(
            target.url, content=body, headers=headers, timeout=settings.webhook_timeout_seconds, extensions=extensions
        )
    except httpx2.HTTPError as exc:
        raise DeliveryFailed(f"{type(exc).__name__}: {exc}"[:500]) from exc
    if response.is_redirect:
        # Not followed: a receiver cannot send a delivery on to an address the guard did not check.
        location = response.headers.get("location", "")[:200]
        raise DeliveryFailed(f"HTTP {response.status_code}: redirect to {location} not followed", response.status_code)
    if not 200 <= response.status_code < 300:
        raise DeliveryFailed(f"HTTP {response.status_code}: {response.text[:200]}", response.status_code)
    return Done(status_code=response.status_code)


async def _failed(engine: AsyncEngine, settings: Settings, endpoint_id: Any, error: DeliveryFailed) -> bool:
    """Note the endpoint's failure; one failing for ``WEBHOOK_DISABLE_AFTER_SECONDS`` is disabled (returns True)."""
    async with engine.begin() as conn:
        row = (
            await conn.execute(
                sa.update(endpoint_t)
                .where(endpoint_t.c.id == endpoint_id, endpoint_t.c.enabled)
                .values(failing_since=sa.func.coalesce(endpoint_t.c.failing_since, sa.func.now()))
                .returning(
                    endpoint_t.c.team_id,
                    endpoint_t.c.url,
                    endpoint_t.c.failing_since,
                    (
                        endpoint_t.c.failing_since
                        <= sa.func.now()
                        - sa.func.make_interval(0, 0, 0, 0, 0, 0, settings.webhook_disable_after_seconds)
                    ).label("overdue"),
                )
            )
        ).first()
        if row is None or not row.overdue:
            return False
        reason = f"every delivery failed since {row.failing_since.isoformat()}; last: {error}"[:500]
        await conn.execute(
            sa.update(endpoint_t)
            .where(endpoint_t.c.id == endpoint_id)
            .values(enabled=False, disabled_at=sa.func.now(), disabled_reason=reason)
        )
        data = {"webhookId": str(endpoint_id), "url": row.url, "reason": reason}
        await record_event(conn, DISABLED_EVENT, team_id=row.team_id, data=data)
        await record_audit(conn, None, DISABLED_EVENT, "webhook_endpoint", endpoint_id, data)
    return True
