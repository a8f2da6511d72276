"""API schemas for operators' bridge links (camelCase on the wire)."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Literal

from pydantic import Field

from service.schemas import ApiModel

Platform = Literal["telegram", "discord", "slack"]


class LinkCodePublic(ApiModel):
    """A one-time code: send ``/link CODE`` to a team's bot (or the bot's DM) before it expires."""

    code: str
    command: str = Field(description="What to send to the bot, e.g. /link K7Q2M9XP")
    expires_at: datetime


class BridgeLinkPublic(ApiModel):
    """One of your chat accounts; the bot attributes its messages to you."""

    id: uuid.UUID
    platform: Platform
    external_user_id: str = Field(description="Your user id on the platform")
    external_name: str | None
    direct_chat: bool = Field(description="Whether the bot knows a direct chat with you (you linked from a DM)")
    created_at: datetime


class BridgeLinkList(ApiModel):
    items: list[BridgeLinkPublic]
