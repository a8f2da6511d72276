"""API schemas for personal access tokens (camelCase on the wire)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Literal

from pydantic import Field, field_validator

from service.schemas import ApiModel

Scope = Literal["read", "write", "admin", "scim"]


class TokenCreate(ApiModel):
    name: str = Field(min_length=1, max_length=100, description="What the token is for, e.g. 'ops laptop'")
    scopes: list[Scope] = Field(
        default=["read", "write"],
        min_length=1,
        description=(
            "read: safe methods; write: changes; admin: administration routes (admins only); "
            "scim: the identity provider's /scim/v2 provisioning (admins only)"
        ),
    )
    expires_at: datetime | None = Field(default=None, description="When it stops working; never when absent")

    @field_validator("expires_at")
    @classmethod
    def _future(cls, value: datetime | None) -> datetime | None:
        if value is not None and (value.tzinfo is None or value <= datetime.now(UTC)):
            raise ValueError("must be a future time with a timezone")
        return value


class TokenPublic(ApiModel):
    id: uuid.UUID
    name: str
    prefix: str = Field(description="The first characters of the secret, to recognise it")
    scopes: list[str]
    created_at: datetime
    expires_at: datetime | None
    last_used_at: datetime | None


class TokenCreated(TokenPublic):
    token: str = Field(description="The secret; shown only in this response, send it as 'Authorization: Bearer'")


class TokenList(ApiModel):
    items: list[TokenPublic] = Field(description="The caller's live tokens, newest first (at most 50 exist)")
