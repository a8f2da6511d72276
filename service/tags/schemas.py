"""API schemas for team tags and the tags on a conversation (camelCase on the wire)."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated

from pydantic import ConfigDict, Field, StringConstraints, field_validator

from service.schemas import ApiModel, NoNul, not_null

MAX_TAG_NAME = 50
MAX_TAGS_PER_TEAM = 500

TagName = Annotated[
    str,
    StringConstraints(strip_whitespace=True, min_length=1, max_length=MAX_TAG_NAME),
    NoNul,
    Field(description="Unique in the team whatever its case, e.g. 'refund' or 'VIP'"),
]
Color = Annotated[str, StringConstraints(pattern=r"^#[0-9a-fA-F]{6}$"), Field(description="#rrggbb")]


class TagCreate(ApiModel):
    model_config = ConfigDict(extra="forbid")

    name: TagName
    color: Color | None = None


class TagUpdate(ApiModel):
    model_config = ConfigDict(extra="forbid")

    name: TagName | None = None
    color: Color | None = Field(default=None, description="null: the default colour")

    _required = field_validator("name")(not_null)


class TagPublic(ApiModel):
    id: uuid.UUID
    team_id: uuid.UUID
    name: str
    color: str | None
    created_at: datetime


class TagList(ApiModel):
    """Every tag of the team, by name."""

    items: list[TagPublic]


class ConversationTagCreate(ApiModel):
    model_config = ConfigDict(extra="forbid")

    tag_id: uuid.UUID = Field(description="A tag of the conversation's team")


class ConversationTagPublic(ApiModel):
    """A tag on a conversation, and who or what put it there."""

    id: uuid.UUID
    team_id: uuid.UUID
    name: str
    color: str | None
    source: str = Field(description="operator, rule or macro")
    added_by: uuid.UUID | None = Field(description="The operator (also for a macro they applied); null for a rule")
    added_at: datetime


class ConversationTagList(ApiModel):
    items: list[ConversationTagPublic]
