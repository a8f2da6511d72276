"""API schemas for connected sites (``/api/v1/sites``) and the events their connectors send."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import Field

from service.schemas import ApiModel
from service.webhooks.schemas import ReceiverUrl

SiteName = Annotated[str, Field(min_length=1, max_length=200, description="What the site is, for admins")]
EventKind = Literal["session", "message", "identify", "typing", "read", "disconnect", "csat"]


class SiteCreate(ApiModel):
    """A new connected backend; its key is generated and returned once."""

    name: SiteName
    callback_url: ReceiverUrl | None = Field(None, description="Where operator replies are POSTed (signed)")
    team_id: uuid.UUID | None = Field(None, description="The team its conversations go to; null: the routing rules")


class SiteUpdate(ApiModel):
    """Fields to change; omitted fields stay as they are (null clears callbackUrl or teamId)."""

    name: SiteName | None = None
    callback_url: ReceiverUrl | None = None
    team_id: uuid.UUID | None = None


class SitePublic(ApiModel):
    """A connected site (its key is never shown again, only its prefix)."""

    id: uuid.UUID
    name: str
    key_prefix: str = Field(description="The key's first characters, to tell keys apart")
    scopes: list[str]
    callback_url: str | None
    team_id: uuid.UUID | None
    revoked_at: datetime | None = Field(description="When its key was revoked; null while it works")
    key_rotated_at: datetime | None
    created_at: datetime


class SiteCreated(SitePublic):
    """The site with its key: put it in the connector's configuration now, it is not shown again."""

    key: str = Field(description="The site key (sbk_...): sent by the connector, and the HMAC key of its requests")


class SitePage(ApiModel):
    """Sites, oldest first; pass ``nextCursor`` as ``cursor`` for the next page."""

    items: list[SitePublic]
    next_cursor: str | None = Field(description="Opaque; null on the last page")


class ConnectEvent(ApiModel):
    """One thing that happened on the site's PocketPing, in the order it happened per session."""

    id: str = Field(min_length=1, max_length=64, description="Unique per site: a re-sent event is applied once")
    type: EventKind
    session_id: str = Field(min_length=1, max_length=200)
    data: dict[str, Any]


class ConnectBatch(ApiModel):
    """Events in order; they are applied in this order."""

    events: list[ConnectEvent] = Field(max_length=200)


class RejectedEvent(ApiModel):
    """An event acknowledged but not applied, and why (re-sending it cannot help)."""

    id: str
    reason: str


class ConnectResult(ApiModel):
    """What the batch did: every event is applied, was applied before, or is rejected for good."""

    applied: int
    duplicates: int
    rejected: list[RejectedEvent]
