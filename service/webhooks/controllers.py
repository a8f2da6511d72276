"""``/api/v1/teams/{teamId}/webhooks``: a team's receivers (leads), a test delivery, and the delivery log."""

from __future__ import annotations

import secrets
import uuid
from typing import Annotated, Any

import sqlalchemy as sa
from litestar import Controller, Request, delete, get, patch, post
from litestar.di import NamedDependency
from litestar.exceptions import NotFoundException
from litestar.params import FromPath, JSONBody, QueryParameter
from sqlalchemy.ext.asyncio import AsyncConnection

from service.auth.principal import Principal, requires_lead
from service.crypto import encrypt_secret
from service.db.tables import endpoint_t, outbox_t, team_t
from service.deps import engine
from service.outbox import enqueue_delivery
from service.webhooks import services
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

Cursor = Annotated[str | None, QueryParameter(description="nextCursor of the previous page", max_length=500)]
Limit = Annotated[int, QueryParameter(ge=1, le=100, description="Items per page")]


async def _lead_of(conn: AsyncConnection, principal: Principal, team_id: uuid.UUID) -> None:
    """The team exists and the caller leads it (admins: any team)."""
    requires_lead(principal, team_id)
    if await conn.scalar(sa.select(team_t.c.id).where(team_t.c.id == team_id)) is None:
        raise NotFoundException("Team not found")


class WebhookController(Controller):
    """Outbound webhooks of one team; its leads and admins manage them."""

    path = "/api/v1/teams/{team_id:uuid}/webhooks"
    tags = ["Webhooks"]

    @get("", operation_id="listWebhooks", summary="The team's webhook endpoints")
    async def list_webhooks(
        self,
        team_id: FromPath[uuid.UUID],
        request: Request[Any, Any, Any],
        principal: NamedDependency[Principal],
        cursor: Cursor = None,
        limit: Limit = 50,
    ) -> WebhookEndpointPage:
        """Oldest first."""
        async with engine(request).connect() as conn:
            await _lead_of(conn, principal, team_id)
            return await services.list_endpoints(conn, team_id, cursor, limit)

    @post("", operation_id="createWebhook", summary="Add a webhook endpoint", status_code=201)
    async def create_webhook(
        self,
        team_id: FromPath[uuid.UUID],
        data: JSONBody[WebhookEndpointCreate],
        request: Request[Any, Any, Any],
        principal: NamedDependency[Principal],
    ) -> WebhookEndpointCreated:
        """The response carries the signing secret, once; it is stored encrypted."""
        secret = "whsec_" + secrets.token_urlsafe(32)
        secret_key = request.app.state.settings.secret_key
        async with engine(request).begin() as conn:
            await _lead_of(conn, principal, team_id)
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
                    .returning(*services.ENDPOINT_COLUMNS)
                )
            ).one()
        return WebhookEndpointCreated(**WebhookEndpointPublic.model_validate(row).model_dump(), secret=secret)

    @get("/{webhook_id:uuid}", operation_id="getWebhook", summary="A webhook endpoint")
    async def get_webhook(
        self,
        team_id: FromPath[uuid.UUID],
        webhook_id: FromPath[uuid.UUID],
        request: Request[Any, Any, Any],
        principal: NamedDependency[Principal],
    ) -> WebhookEndpointPublic:
        """Its URL, event filter and whether it is enabled."""
        async with engine(request).connect() as conn:
            await _lead_of(conn, principal, team_id)
            return WebhookEndpointPublic.model_validate(await services.get_endpoint(conn, team_id, webhook_id))

    @patch("/{webhook_id:uuid}", operation_id="updateWebhook", summary="Change a webhook endpoint")
    async def update_webhook(
        self,
        team_id: FromPath[uuid.UUID],
        webhook_id: FromPath[uuid.UUID],
        data: JSONBody[WebhookEndpointUpdate],
        request: Request[Any, Any, Any],
        principal: NamedDependency[Principal],
    ) -> WebhookEndpointPublic:
        """URL, event filter, enabled; deliveries waiting for a disabled endpoint go out once it is enabled."""
        values = data.model_dump(exclude_unset=True, exclude_none=True)
        if "url" in values:
            values["url"] = str(values["url"])
        async with engine(request).begin() as conn:
            await _lead_of(conn, principal, team_id)
            await services.get_endpoint(conn, team_id, webhook_id)
            if values:
                await conn.execute(sa.update(endpoint_t).where(endpoint_t.c.id == webhook_id).values(**values))
            return WebhookEndpointPublic.model_validate(await services.get_endpoint(conn, team_id, webhook_id))

    @delete("/{webhook_id:uuid}", operation_id="deleteWebhook", summary="Remove a webhook endpoint", status_code=204)
    async def delete_webhook(
        self,
        team_id: FromPath[uuid.UUID],
        webhook_id: FromPath[uuid.UUID],
        request: Request[Any, Any, Any],
        principal: NamedDependency[Principal],
    ) -> None:
        """Its pending deliveries and log go with it."""
        async with engine(request).begin() as conn:
            await _lead_of(conn, principal, team_id)
            await services.get_endpoint(conn, team_id, webhook_id)
            await conn.execute(sa.delete(endpoint_t).where(endpoint_t.c.id == webhook_id))

    @post(
        "/{webhook_id:uuid}/test",
        operation_id="testWebhook",
        summary="Send a test delivery",
        status_code=202,
    )
    async def test_webhook(
        self,
        team_id: FromPath[uuid.UUID],
        webhook_id: FromPath[uuid.UUID],
        request: Request[Any, Any, Any],
        principal: NamedDependency[Principal],
    ) -> WebhookDeliveryPublic:
        """A signed ``webhook.test`` event, delivered by the worker like any other (see the delivery log)."""
        async with engine(request).begin() as conn:
            await _lead_of(conn, principal, team_id)
            await services.get_endpoint(conn, team_id, webhook_id)
            outbox_id = await add_test_delivery(conn, webhook_id, team_id)
            row = (await conn.execute(sa.select(*services.DELIVERY_COLUMNS).where(outbox_t.c.id == outbox_id))).one()
        await enqueue_delivery(request.app.state.redis, outbox_id)
        return services.delivery_public(row)

    @get("/{webhook_id:uuid}/deliveries", operation_id="listWebhookDeliveries", summary="The delivery log")
    async def list_deliveries(
        self,
        team_id: FromPath[uuid.UUID],
        webhook_id: FromPath[uuid.UUID],
        request: Request[Any, Any, Any],
        principal: NamedDependency[Principal],
        cursor: Cursor = None,
        limit: Limit = 50,
    ) -> WebhookDeliveryPage:
        """Newest first: event, attempts, the receiver's last status, last error, when delivered or retried."""
        async with engine(request).connect() as conn:
            await _lead_of(conn, principal, team_id)
            await services.get_endpoint(conn, team_id, webhook_id)
            return await services.list_deliveries(conn, webhook_id, cursor, limit)
