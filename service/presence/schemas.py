"""API schemas for presence (camelCase on the wire)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from pydantic import Field

from service.schemas import ApiModel

ClientId = Annotated[
    str,
    Field(
        min_length=1,
        max_length=100,
        pattern=r"^[A-Za-z0-9_.:-]+$",
        description="This client's id, chosen by the client and kept for its life (a tab, an app install)",
    ),
]


class PresenceUpdate(ApiModel):
    status: Literal["online", "away", "offline"] = Field(
        description="online: follow your clients (this one is online); away: keeps its conversations, takes none; "
        "offline: grace, then policy. away and offline hold until you choose online."
    )
    client_id: ClientId | None = None
    kind: Literal["web", "mobile", "api"] | None = Field(
        default=None, description="This client's kind; web for a browser session, else api, when absent"
    )


class Heartbeat(ApiModel):
    client_id: ClientId = "mobile"
    kind: Literal["mobile", "web"] = "mobile"
    active: bool = Field(default=False, description="The user did something since the last heartbeat (auto-away)")


class ClientPublic(ApiModel):
    client_id: str
    kind: Literal["web", "mobile", "bridge", "api"]
    status: Literal["online", "away"]
    last_seen_at: datetime | None
    expires_at: datetime | None = Field(description="Gone unless renewed by then; null: until ended (bridge, api)")


class PresencePublic(ApiModel):
    status: Literal["online", "away", "offline"]
    status_changed_at: datetime | None
    chosen_status: Literal["away", "offline"] | None = Field(description="Your choice that holds, if any")
    clients: list[ClientPublic] = Field(description="Your live clients, oldest first")
    last_heartbeat_at: datetime | None = Field(description="Your clients' latest heartbeat")
    heartbeat_timeout_seconds: int = Field(description="Silence after which a heartbeating client is gone")
    offline_grace_seconds: float = Field(description="How long after your last client left you go offline")
