"""``/api/v1/teams/{teamId}/webhooks``: a team's receivers (leads), a test delivery, the delivery log, redelivery."""

from __future__ import annotations

import uuid
from typing import Annotated, Any

from litestar import Controller, Request, delete, get, patch, post
from litestar.di import NamedDependency
from litestar.params import FromPath, JSONBody, QueryParameter

from service.auth.principal import Principal
from service.deps import engine
from service.queue import enqueue_delivery
from service.webhooks import services
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
            await services.require_lead(conn, principal, team_id)
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
        async with engine(request).begin() as conn:
            await services.require_lead(conn, principal, team_id)
            return await services.create_endpoint(conn, team_id, data, request.app.state.settings)

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
            await services.require_lead(conn, principal, team_id)
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
        """URL, event filter, enabled; deliveries held for a disabled endpoint go out once it is enabled."""
        async with engine(request).begin() as conn:
            await services.require_lead(conn, principal, team_id)
            endpoint, released = await services.update_endpoint(
                conn, team_id, webhook_id, data, request.app.state.settings
            )
        for outbox_id in released:
            await enqueue_delivery(request.app.state.redis, outbox_id)
        return endpoint

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
            await services.require_lead(conn, principal, team_id)
            await services.delete_endpoint(conn, team_id, webhook_id)

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
            await services.require_lead(conn, principal, team_id)
            delivery = await services.add_test(conn, team_id, webhook_id)
        await enqueue_delivery(request.app.state.redis, delivery.id)
        return delivery

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
            await services.require_lead(conn, principal, team_id)
            await services.get_endpoint(conn, team_id, webhook_id)
            return await services.list_deliveries(conn, webhook_id, cursor, limit)

    @post(
        "/{webhook_id:uuid}/deliveries/{delivery_id:int}/redeliver",
        operation_id="redeliverWebhookDelivery",
        summary="Send a delivery again",
        status_code=202,
    )
    async def redeliver(
        self,
        team_id: FromPath[uuid.UUID],
        webhook_id: FromPath[uuid.UUID],
        delivery_id: FromPath[int],
        request: Request[Any, Any, Any],
        principal: NamedDependency[Principal],
    ) -> WebhookDeliveryPublic:
        """The same body (same event id) as a new delivery with attempts of its own; 409 while the original is still
        being tried or the endpoint is disabled."""
        async with engine(request).begin() as conn:
            await services.require_lead(conn, principal, team_id)
            delivery = await services.redeliver(conn, principal, team_id, webhook_id, delivery_id)
        await enqueue_delivery(request.app.state.redis, delivery.id)
        return delivery
