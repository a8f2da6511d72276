"""The signed-in operator's own view (``/api/v1/me``)."""

from __future__ import annotations

from litestar import Controller, get
from litestar.di import NamedDependency

from service.auth.principal import Principal
from service.operators.schemas import MePublic


class MeController(Controller):
    path = "/api/v1/me"
    tags = ["Me"]

    @get("", operation_id="getMe", summary="The signed-in operator and their team roles")
    async def get_me(self, principal: NamedDependency[Principal]) -> MePublic:
        return MePublic.from_principal(principal)
