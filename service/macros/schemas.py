"""API schemas for macros: a team's canned reply plus tag and routing actions, applied in one click."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Literal

from pydantic import AfterValidator, ConfigDict, Field, StringConstraints

from service.conversations.schemas import MessagePublic
from service.routing.schemas import ConversationRoutingPublic
from service.schemas import ApiModel, NoNul
from service.tags.schemas import ConversationTagPublic

MAX_MACRO_TAGS = 20
MAX_MACROS_PER_TEAM = 200

MacroAction = Literal["none", "assign", "transfer", "close"]


def _unique(values: list[uuid.UUID]) -> list[uuid.UUID]:
    return list(dict.fromkeys(values))


TagIds = Annotated[list[uuid.UUID], Field(max_length=MAX_MACRO_TAGS), AfterValidator(_unique)]


class MacroCreate(ApiModel):
    """The whole macro (``PUT`` replaces it with the same body)."""

    model_config = ConfigDict(extra="forbid")

    name: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=100), NoNul] = Field(
        description="Unique in the team whatever its case"
    )
    canned_id: uuid.UUID | None = Field(
        default=None, description="A canned response of the team, sent first as your reply; null: no reply"
    )
    add_tags: TagIds = Field(default_factory=list, description="Ids of the team's tags to put on")
    remove_tags: TagIds = Field(default_factory=list, description="Ids of tags to take off")
    action: MacroAction = Field(
        default="none",
        description="After the reply and the tags: assign (to whoever applies it), transfer, close, or none",
    )
    transfer_team_id: uuid.UUID | None = Field(default=None, description="action=transfer: to this other team")
    transfer_operator_id: uuid.UUID | None = Field(
        default=None, description="action=transfer: to this member of the team (capacity-checked)"
    )


class MacroPublic(MacroCreate):
    id: uuid.UUID
    team_id: uuid.UUID
    created_at: datetime
    updated_at: datetime


class MacroList(ApiModel):
    """Every macro of the team, by name."""

    items: list[MacroPublic]


class MacroApplied(ApiModel):
    """What applying the macro did."""

    message: MessagePublic | None = Field(description="The reply sent; null for a macro without one")
    tags: list[ConversationTagPublic] = Field(description="The conversation's tags afterwards")
    routing: ConversationRoutingPublic = Field(description="Who holds the conversation afterwards")
