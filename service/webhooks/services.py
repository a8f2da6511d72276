"""A team's webhook endpoints (their leads manage them) and their delivery log, for the REST API and the dashboard."""

from __future__ import annotations

import secrets
import uuid
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from service import outbox
from service.audit import record_audit
from service.auth.principal import Principal, requires_lead
from service.crypto import encrypt_secret
from service.db.tables import endpoint_t, outbox_t, team_t
from service.errors import Conflict, NotFound
from service.pagination import decode_cursor, encode_cursor
from service.settings import Settings
from service.webhooks.delivery import SECRET_PURPOSE, WEBHOOK, add_test_delivery
from service.webhooks.guard import check_url
from service.webhooks.schemas import (
    DeliveryState,
    WebhookDeliveryPage,
    WebhookDeliveryPublic,
    WebhookEndpointCreate,
    WebhookEndpointCreated,
    WebhookEndpointPage,
    WebhookEndpointPublic,
    WebhookEndpointUpdate,
)

ENDPOINT_COLUMNS = (
    endpoint_t.c.id,
    endpoint_t.c.team_id,
    endpoint_t.c.url,
    endpoint_t.c.events,
    endpoint_t.c.enabled,
    endpoint_t.c.disabled_at,
    endpoint_t.c.disabled_reason,
    endpoint_t.c.created_at,
)
DELIVERY_COLUMNS = (
    outbox_t.c.id,
    outbox_t.c.payload,
    outbox_t.c.attempts,
    outbox_t.c.status_code,
    outbox_t.c.last_error,
    outbox_t.c.delivered_at,
    outbox_t.c.dead_at,
    outbox_t.c.held_at,
    outbox_t.c.available_at,
    outbox_t.c.created_at,
)


async def require_lead(conn: AsyncConnection, principal: Principal, team_id: uuid.UUID) -> None:
    """The team exists and the caller leads it (admins: any team)."""
    requires_lead(principal, team_id)
    if await conn.scalar(sa.select(team_t.c.id).where(team_t.c.id == team_id)) is None:
        raise NotFound("Team not found")


async def get_endpoint(conn: AsyncConnection, team_id: uuid.UUID, webhook_id: uuid.UUID) -> Any:
    """The team's endpoint row (its public columns); 404 for another team's or a missing one."""
    row = (
        await conn.execute(
            sa.select(*ENDPOINT_COLUMNS).where(endpoint_t.c.id == webhook_id, endpoint_t.c.team_id == team_id)
        )
    ).first()
    if row is None:
        raise NotFound("Webhook not found")
    return row


def delivery_public(row: Any) -> WebhookDeliveryPublic:
    event = row.payload["event"]
    state: DeliveryState = (
        "delivered" if row.delivered_at else "dead" if row.dead_at else "held" if row.held_at else "pending"
    )
    return WebhookDeliveryPublic(
        id=row.id,
        event_id=event["id"],
        event_type=event["type"],
        state=state,
        attempts=row.attempts,
        status_code=row.status_code,
        last_error=row.last_error,
        delivered_at=row.delivered_at,
        dead_at=row.dead_at,
        next_attempt_at=row.available_at if state == "pending" else None,
        created_at=row.created_at,
    )


async def _delivery(conn: AsyncConnection, webhook_id: uuid.UUID, delivery_id: int) -> WebhookDeliveryPublic:
    row = (
        await conn.execute(
            sa.select(*DELIVERY_COLUMNS).where(
                outbox_t.c.id == delivery_id, outbox_t.c.webhook_endpoint_id == webhook_id
            )
        )
    ).first()
    if row is None:
        raise NotFound("Delivery not found")
    return delivery_public(row)


async def list_endpoints(
    conn: AsyncConnection, team_id: uuid.UUID, cursor: str | None, limit: int
) -> WebhookEndpointPage:
    """The team's endpoints, oldest first."""
    statement = sa.select(*ENDPOINT_COLUMNS).where(endpoint_t.c.team_id == team_id)
    if cursor is not None:
        created_at, last_id = decode_cursor(cursor, 2)
        statement = statement.where(
            sa.tuple_(endpoint_t.c.created_at, endpoint_t.c.id)
            > sa.tuple_(sa.cast(created_at, endpoint_t.c.created_at.type), sa.cast(last_id, sa.Uuid))
        )
    rows = (await conn.execute(statement.order_by(endpoint_t.c.created_at, endpoint_t.c.id).limit(limit + 1))).all()
    page = rows[:limit]
    after = encode_cursor(page[-1].created_at.isoformat(), str(page[-1].id)) if len(rows) > limit else None
    return WebhookEndpointPage(items=[WebhookEndpointPublic.model_validate(row) for row in page], next_cursor=after)


async def list_deliveries(
    conn: AsyncConnection, webhook_id: uuid.UUID, cursor: str | None, limit: int
) -> WebhookDeliveryPage:
    """An endpoint's deliveries, newest first."""
    statement = sa.select(*DELIVERY_COLUMNS).where(outbox_t.c.webhook_endpoint_id == webhook_id)
    if cursor is not None:
        (before,) = decode_cursor(cursor, 1, int)
        statement = statement.where(outbox_t.c.id < before)
    rows = (await conn.execute(statement.order_by(outbox_t.c.id.desc()).limit(limit + 1))).all()
    page = rows[:limit]
    return WebhookDeliveryPage(
        items=[delivery_public(row) for row in page],
        next_cursor=encode_cursor(page[-1].id) if len(rows) > limit else None,
    )


async def create_endpoint(
    conn: AsyncConnection, team_id: uuid.UUID, data: WebhookEndpointCreate, settings: Settings
) -> WebhookEndpointCreated:
    """A new endpoint with a fresh signing secret, returned this once and stored encrypted; its URL must not lead
    to an address webhooks may not be sent to (422 on ``url``)."""
    await check_url(str(data.url), settings.webhook_allowed_cidrs)
    secret = "whsec_" + secrets.token_urlsafe(32)
    row = (
        await conn.execute(
            sa.insert(endpoint_t)
            .values(
                id=uuid.uuid4(),
                team_id=team_id,
                url=str(data.url),
                secret_encrypted=encrypt_secret(settings.secret_key, SECRET_PURPOSE, secret),
                events=list(data.events),
                enabled=data.enabled,
            )
            .returning(*ENDPOINT_COLUMNS)
        )
    ).one()
    return WebhookEndpointCreated(**WebhookEndpointPublic.model_validate(row).model_dump(), secret=secret)


async def update_endpoint(
    conn: AsyncConnection, team_id: uuid.UUID, webhook_id: uuid.UUID, data: WebhookEndpointUpdate, settings: Settings
) -> tuple[WebhookEndpointPublic, list[int]]:
    """Change the URL, event filter or enabled flag given (the others stay). Enabling a disabled endpoint clears
    its disabled reason and releases its held deliveries: returns their ids, to enqueue after commit."""
    # Read as validated (``url`` is a checked str): dumping would serialize it as the HttpUrl it was parsed from.
    values: dict[str, Any] = {
        name: getattr(data, name) for name in data.model_fields_set if getattr(data, name) is not None
    }
    if "url" in values:
        values["url"] = str(values["url"])
        await check_url(values["url"], settings.webhook_allowed_cidrs)
    current = await get_endpoint(conn, team_id, webhook_id)
    released: list[int] = []
    if values.get("enabled") is True and not current.enabled:
        values |= {"disabled_at": None, "disabled_reason": None, "failing_since": None}
        released = await outbox.release(conn, outbox_t.c.webhook_endpoint_id == webhook_id)
    elif values.get("enabled") is False and current.enabled:
        values["disabled_at"] = sa.func.now()
    if values:
        await conn.execute(sa.update(endpoint_t).where(endpoint_t.c.id == webhook_id).values(**values))
    return WebhookEndpointPublic.model_validate(await get_endpoint(conn, team_id, webhook_id)), released


async def delete_endpoint(conn: AsyncConnection, team_id: uuid.UUID, webhook_id: uuid.UUID) -> None:
    """Remove the endpoint; its pending deliveries and log go with it."""
    await get_endpoint(conn, team_id, webhook_id)
    await conn.execute(sa.delete(endpoint_t).where(endpoint_t.c.id == webhook_id))


async def add_test(conn: AsyncConnection, team_id: uuid.UUID, webhook_id: uuid.UUID) -> WebhookDeliveryPublic:
    """A test delivery to the endpoint, in the outbox; the caller enqueues it after commit."""
    await get_endpoint(conn, team_id, webhook_id)
    return await _delivery(conn, webhook_id, await add_test_delivery(conn, webhook_id, team_id))


async def redeliver(
    conn: AsyncConnection, principal: Principal, team_id: uuid.UUID, webhook_id: uuid.UUID, delivery_id: int
) -> WebhookDeliveryPublic:
    """A new delivery of a finished one's body (same event id, so receivers de-duplicate); the caller enqueues it.

    409 while the endpoint is disabled or the delivery itself is still pending or held.
    """
    endpoint = await get_endpoint(conn, team_id, webhook_id)
    original = await _delivery(conn, webhook_id, delivery_id)
    if original.state in ("pending", "held"):
        raise Conflict("The delivery has not finished; it is still tried")
    if not endpoint.enabled:
        raise Conflict("The webhook is disabled; enable it first", field="enabled")
    payload = (await conn.execute(sa.select(outbox_t.c.payload).where(outbox_t.c.id == delivery_id))).scalar_one()
    outbox_id = await outbox.add(conn, WEBHOOK, payload, webhook_endpoint_id=webhook_id)
    await record_audit(
        conn,
        principal.operator_id,
        "webhook.redelivered",
        "webhook_endpoint",
        webhook_id,
        {"deliveryId": delivery_id, "newDeliveryId": outbox_id, "eventId": original.event_id},
    )
    return await _delivery(conn, webhook_id, outbox_id)
