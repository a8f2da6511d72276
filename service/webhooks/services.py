"""A team's webhook endpoints (their leads manage them) and their delivery log, for the REST API and the dashboard."""

from __future__ import annotations

import secrets
import uuid
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from service.auth.principal import Principal, requires_lead
from service.crypto import encrypt_secret
from service.db.tables import endpoint_t, outbox_t, team_t
from service.errors import NotFound
from service.pagination import decode_cursor, encode_cursor
from service.webhooks.delivery import SECRET_PURPOSE, add_test_delivery
from service.webhooks.schemas import (
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
    endpoint_t.c.created_at,
)
DELIVERY_COLUMNS = (
    outbox_t.c.id,
    outbox_t.c.payload,
    outbox_t.c.attempts,
    outbox_t.c.status_code,
    outbox_t.c.last_error,
    outbox_t.c.delivered_at,
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
    return WebhookDeliveryPublic(
        id=row.id,
        event_id=event["id"],
        event_type=event["type"],
        attempts=row.attempts,
        status_code=row.status_code,
        last_error=row.last_error,
        delivered_at=row.delivered_at,
        next_attempt_at=None if row.delivered_at else row.available_at,
        created_at=row.created_at,
    )


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
    conn: AsyncConnection, team_id: uuid.UUID, data: WebhookEndpointCreate, secret_key: str
) -> WebhookEndpointCreated:
    """A new endpoint with a fresh signing secret, returned this once and stored encrypted."""
    secret = "whsec_" + secrets.token_urlsafe(32)
    row = (
        await conn.execute(
            sa.insert(endpoint_t)
            .values(
                id=uuid.uuid4(),
                team_id=team_id,
                url=str(data.url),
                secret_encrypted=encrypt_secret(secret_key, SECRET_PURPOSE, secret),
                events=list(data.events),
                enabled=data.enabled,
            )
            .returning(*ENDPOINT_COLUMNS)
        )
    ).one()
    return WebhookEndpointCreated(**WebhookEndpointPublic.model_validate(row).model_dump(), secret=secret)


async def update_endpoint(
    conn: AsyncConnection, team_id: uuid.UUID, webhook_id: uuid.UUID, data: WebhookEndpointUpdate
) -> WebhookEndpointPublic:
    """Change the URL, event filter or enabled flag given (the others stay)."""
    values = data.model_dump(exclude_unset=True, exclude_none=True)
    if "url" in values:
        values["url"] = str(values["url"])
    await get_endpoint(conn, team_id, webhook_id)
    if values:
        await conn.execute(sa.update(endpoint_t).where(endpoint_t.c.id == webhook_id).values(**values))
    return WebhookEndpointPublic.model_validate(await get_endpoint(conn, team_id, webhook_id))


async def delete_endpoint(conn: AsyncConnection, team_id: uuid.UUID, webhook_id: uuid.UUID) -> None:
    """Remove the endpoint; its pending deliveries and log go with it."""
    await get_endpoint(conn, team_id, webhook_id)
    await conn.execute(sa.delete(endpoint_t).where(endpoint_t.c.id == webhook_id))


async def add_test(conn: AsyncConnection, team_id: uuid.UUID, webhook_id: uuid.UUID) -> WebhookDeliveryPublic:
    """A test delivery to the endpoint, in the outbox; the caller enqueues it after commit."""
    await get_endpoint(conn, team_id, webhook_id)
    outbox_id = await add_test_delivery(conn, webhook_id, team_id)
    return delivery_public((await conn.execute(sa.select(*DELIVERY_COLUMNS).where(outbox_t.c.id == outbox_id))).one())
