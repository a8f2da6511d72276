"""API schemas for operators (camelCase on the wire)."""

from __future__ import annotations

import uuid

from service.auth.principal import Principal
from service.schemas import ApiModel


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
