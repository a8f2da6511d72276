"""API schemas for presence (camelCase on the wire)."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import Field

from service.schemas import ApiModel


class PresenceUpdate(ApiModel):
    status: Literal["online", "away", "offline"] = Field(
        description="online: takes new work; away: keeps its conversations, takes none; offline: grace, then policy"
    )


class PresencePublic(ApiModel):
    status: Literal["online", "away", "offline"]
    status_changed_at: datetime | None
    last_heartbeat_at: datetime | None = Field(description="Set once the operator's client sends heartbeats")
    heartbeat_timeout_seconds: int = Field(description="Silence after which a heartbeating client goes offline")
