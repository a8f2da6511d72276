"""The signed-in operator's own view (``/api/v1/me``) and operator administration (``/api/v1/operators``)."""

from __future__ import annotations

import uuid
from typing import Annotated, Any

from litestar import Controller, Request, get, patch
from litestar.di import NamedDependency
from litestar.params import FromPath, JSONBody, QueryParameter

from service.auth.principal import Principal, requires_admin
from service.deps import Cursor, Limit, engine, read, write
from service.operators import services
from service.operators.schemas import MePublic, OperatorPage, OperatorPublic, OperatorUpdate


class MeController(Controller):
    path = "/api/v1/me"
    tags = ["Me"]

    @get("", operation_id="getMe", summary="The signed-in operator and their team roles")
    async def get_me(self, principal: NamedDependency[Principal]) -> MePublic:
        return MePublic.from_principal(principal)


class OperatorController(Controller):
    """Operator administration (operators are created by their first sign-in)."""

    path = "/api/v1/operators"
    tags = ["Operators"]
    opt = {"admin": True}

    @get("", operation_id="listOperators", summary="Every operator (admins)")
    async def list_operators(
        self,
        request: Request[Any, Any, Any],
        principal: NamedDependency[Principal],
        include_deactivated: Annotated[
            bool, QueryParameter(name="includeDeactivated", description="Also deactivated operators")
        ] = False,
        cursor: Cursor = None,
        limit: Limit = 50,
    ) -> OperatorPage:
        """By display name, with their team roles."""
        requires_admin(principal)
        return await read(
            request,
            lambda conn: services.list_operators(
                conn, include_deactivated=include_deactivated, cursor=cursor, limit=limit
            ),
        )

    @get("/{operator_id:uuid}", operation_id="getOperator", summary="An operator (admins)")
    async def get_operator(
        self, operator_id: FromPath[uuid.UUID], request: Request[Any, Any, Any], principal: NamedDependency[Principal]
    ) -> OperatorPublic:
        requires_admin(principal)
        return await read(request, lambda conn: services.get_operator(conn, operator_id))

    @patch("/{operator_id:uuid}", operation_id="updateOperator", summary="Rename, grant admin, deactivate (admins)")
    async def update_operator(
        self,
        operator_id: FromPath[uuid.UUID],
        data: JSONBody[OperatorUpdate],
        request: Request[Any, Any, Any],
        principal: NamedDependency[Principal],
    ) -> OperatorPublic:
        """``deactivated: true`` stops their credentials, takes them out of routing and requeues their conversations."""
        requires_admin(principal)
        operator = await write(request, lambda conn: services.update_operator(conn, operator_id, data, principal))
        if data.deactivated:
            # Also when already deactivated: a repeated request finishes what an interrupted one started.
            state = request.app.state
            await services.finish_deactivation(
                engine(request), state.redis, state.settings, operator_id, principal.operator_id
            )
            operator = await read(request, lambda conn: services.get_operator(conn, operator_id))
        return operator
