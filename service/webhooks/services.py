"""Reads of a team's webhook endpoints and their delivery log, for the REST API and the dashboard alike."""

from __future__ import annotations

import uuid
from typing import Any

import sqlalchemy as sa
from litestar.exceptions import NotFoundException
from sqlalchemy.ext.asyncio import AsyncConnection

from service.db.tables import endpoint_t, outbox_t
from service.pagination import decode_cursor, encode_cursor
from service.webhooks.schemas import (
    WebhookDeliveryPage,
    WebhookDeliveryPublic,
    WebhookEndpointPage,
    WebhookEndpointPublic,
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


async def get_endpoint(conn: AsyncConnection, team_id: uuid.UUID, webhook_id: uuid.UUID) -> Any:
    """The team's endpoint row (its public columns); 404 for another team's or a missing one."""
    row = (
        await conn.execute(
            sa.select(*ENDPOINT_COLUMNS).where(endpoint_t.c.id == webhook_id, endpoint_t.c.team_id == team_id)
        )
    ).first()
    if row is None:
        raise NotFoundException("Webhook not found")
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
