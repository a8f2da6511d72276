"""API schemas for operators (camelCase on the wire)."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated

from pydantic import Field, StringConstraints, field_validator

from service.auth.principal import Principal
from service.schemas import ApiModel
from service.teams.schemas import NoNul, not_null


class TeamRole(ApiModel):
    team_id: uuid.UUID
    role: str


class MePublic(ApiModel):
    id: uuid.UUID
    display_name: str
    is_admin: bool
    teams: list[TeamRole]

    @classmethod
    def from_principal(cls, principal: Principal) -> MePublic:
        return cls(
            id=principal.operator_id,
            display_name=principal.display_name,
            is_admin=principal.is_admin,
            teams=[TeamRole(team_id=team, role=role) for team, role in principal.teams.items()],
        )


class OperatorPublic(ApiModel):
    """An operator as administrators see them."""

    id: uuid.UUID
    subject: str = Field(description="The identity provider's 'sub'")
    email: str | None
    display_name: str
    is_admin: bool
    status: str
    open_conversations: int
    teams: list[TeamRole]
    created_at: datetime
    deactivated_at: datetime | None


class OperatorUpdate(ApiModel):
    """Change some of an operator; ``deactivated: true`` signs them out everywhere and keeps them out."""

    display_name: (
        Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=100), NoNul] | None
    ) = None
    is_admin: bool | None = None
    deactivated: bool | None = None

    _required = field_validator("display_name", "is_admin", "deactivated")(not_null)


class OperatorPage(ApiModel):
    """A page of operators by name; pass ``nextCursor`` as ``cursor`` for the next page."""

    items: list[OperatorPublic]
    next_cursor: str | None
