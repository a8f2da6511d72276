"""API schemas for a team's webhook endpoints and their delivery log."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Literal

from pydantic import AfterValidator, Field, HttpUrl

from service.schemas import ApiModel

WebhookEventKind = Literal[
    "conversation.queued",
    "conversation.assigned",
    "conversation.transferred",
    "conversation.closed",
    "conversation.reopened",
    "conversation.rated",
    "conversation.tags_changed",
    "message.created",
    "message.edited",
    "message.deleted",
    "ai.takeover",
    "ai.handed_back",
    "sla.at_risk",
    "sla.breached",
    "leads.alerted",
]

DeliveryState = Literal["pending", "held", "delivered", "dead"]


def _plain_url(value: HttpUrl) -> str:
    if value.username or value.password:
        raise ValueError("must not contain credentials")
    return str(value)


ReceiverUrl = Annotated[
    HttpUrl,
    AfterValidator(_plain_url),
    Field(
        max_length=2000,
        description="http:// or https:// URL that receives POSTs",
        examples=["https://example.com/hooks/switchboard"],
    ),
]
EventFilter = Annotated[
    list[WebhookEventKind],
    Field(max_length=20, description="Event kinds to receive; empty means every kind"),
]


class WebhookEndpointCreate(ApiModel):
    """A new receiver; the signing secret is generated and returned once."""

    url: ReceiverUrl
    events: EventFilter = []
    enabled: bool = True


class WebhookEndpointUpdate(ApiModel):
    """Fields to change; omitted fields stay as they are."""

    url: ReceiverUrl | None = None
    events: EventFilter | None = None
    enabled: bool | None = None


class WebhookEndpointPublic(ApiModel):
    """A receiver of the team's events (its secret is never shown again)."""

    id: uuid.UUID
    team_id: uuid.UUID
    url: str
    events: list[str]
    enabled: bool
    disabled_at: datetime | None = Field(
        description="When it was disabled (by a lead, or for failing); null if enabled"
    )
    disabled_reason: str | None = Field(
        description="Why it was disabled automatically (its deliveries kept failing); null otherwise"
    )
    created_at: datetime


class WebhookEndpointCreated(WebhookEndpointPublic):
    """The new receiver with its signing secret: store it now, it is not shown again."""

    secret: str = Field(description="HMAC-SHA256 key for Switchboard-Signature")


class WebhookEndpointPage(ApiModel):
    """The team's receivers, oldest first; pass ``nextCursor`` as ``cursor`` for the next page."""

    items: list[WebhookEndpointPublic]
    next_cursor: str | None = Field(description="Opaque; null on the last page")


class WebhookDeliveryPublic(ApiModel):
    """One event's delivery to one receiver, with its attempts so far."""

    id: int = Field(description="Also sent as Switchboard-Delivery, for de-duplication by the receiver")
    event_id: int | None = Field(description="The event's id; null for test deliveries")
    event_type: str
    state: DeliveryState = Field(
        description="pending: tried until it succeeds or is given up; held: waits for its disabled endpoint to be "
        "enabled; delivered; dead: given up (too many attempts, too old, or its address refused)"
    )
    attempts: int
    status_code: int | None = Field(description="The receiver's HTTP status on the latest attempt")
    last_error: str | None
    delivered_at: datetime | None
    dead_at: datetime | None = Field(description="When it was given up; null unless dead")
    next_attempt_at: datetime | None = Field(description="When it is tried again; null unless pending")
    created_at: datetime


class WebhookDeliveryPage(ApiModel):
    """Deliveries, newest first; pass ``nextCursor`` as ``cursor`` for the next page."""

    items: list[WebhookDeliveryPublic]
    next_cursor: str | None = Field(description="Opaque; null on the last page")
