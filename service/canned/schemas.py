"""API schemas for canned responses and their rendering (camelCase on the wire)."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Literal

from pydantic import BeforeValidator, Field, StringConstraints, field_validator

from service.schemas import ApiModel
from service.teams.schemas import NoNul, lowercase, not_null

Shortcut = Annotated[
    str,
    BeforeValidator(lowercase),
    StringConstraints(pattern=r"^[a-z0-9][a-z0-9_\-]{0,31}$"),
    Field(description="Typed after '/' in the composer; lowercased; unique per team or per owner"),
]
Title = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=100), NoNul]
Body = Annotated[
    str,
    StringConstraints(min_length=1, max_length=5000),
    NoNul,
    Field(description='Text with placeholders such as {{visitor.name || "there"}} (see docs/teams.md)'),
]


class CannedCreate(ApiModel):
    team_id: uuid.UUID | None = Field(default=None, description="The team's (leads manage it); null = your own")
    shortcut: Shortcut
    title: Title
    body: Body


class CannedUpdate(ApiModel):
    shortcut: Shortcut | None = None
    title: Title | None = None
    body: Body | None = None

    _required = field_validator("shortcut", "title", "body")(not_null)


class CannedPublic(ApiModel):
    id: uuid.UUID
    scope: Literal["team", "personal"]
    team_id: uuid.UUID | None
    owner_id: uuid.UUID | None
    shortcut: str
    title: str
    body: str
    variables: list[str] = Field(description="The variables the body uses")
    created_at: datetime
    updated_at: datetime


class CannedPage(ApiModel):
    """A page by shortcut; pass ``nextCursor`` as ``cursor`` for the next page."""

    items: list[CannedPublic]
    next_cursor: str | None


class RenderRequest(ApiModel):
    conversation_id: Annotated[str, StringConstraints(min_length=1, max_length=200), NoNul]


class PreviewRequest(ApiModel):
    body: Body
    conversation_id: Annotated[str, StringConstraints(min_length=1, max_length=200), NoNul] | None = Field(
        default=None, description="Fill the visitor and team variables from this conversation; none: left empty"
    )


class RenderedPublic(ApiModel):
    body: str = Field(description="The text to send, placeholders filled")
    missing: list[str] = Field(description="Placeholders that came out empty (no value and no fallback)")
