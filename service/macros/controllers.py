"""Macro endpoints: a team's macros (``/api/v1/teams/{id}/macros``) and applying one to a conversation."""

from __future__ import annotations

import uuid
from typing import Any

from litestar import Controller, Request, Response, delete, get, post, put
from litestar.di import NamedDependency
from litestar.params import FromPath, JSONBody

from service.auth.principal import Principal, requires_lead, requires_team_member
from service.deps import REPLAYED_HEADERS, IdempotencyKey, engine, read, replay_headers, write
from service.gateway.hub import SwitchboardPocketPing
from service.macros import services
from service.macros.schemas import MacroApplied, MacroCreate, MacroList, MacroPublic


class TeamMacroController(Controller):
    """A team's macros: its members read (and apply) them, its leads (and admins) define them."""

    path = "/api/v1/teams/{team_id:uuid}/macros"
    tags = ["Macros"]

    @get("", operation_id="listTeamMacros", summary="A team's macros, by name")
    async def list_macros(
        self, team_id: FromPath[uuid.UUID], request: Request[Any, Any, Any], principal: NamedDependency[Principal]
    ) -> MacroList:
        requires_team_member(principal, team_id, "Team")
        return await read(request, lambda conn: services.list_macros(conn, team_id))

    @post("", operation_id="createTeamMacro", summary="Create a macro")
    async def create_macro(
        self,
        team_id: FromPath[uuid.UUID],
        data: JSONBody[MacroCreate],
        request: Request[Any, Any, Any],
        principal: NamedDependency[Principal],
    ) -> MacroPublic:
        """The team's leads. The canned response, tags and transfer target must be the team's (422 naming each)."""
        requires_lead(principal, team_id)
        return await write(request, lambda conn: services.create_macro(conn, team_id, data, principal))

    @put("/{macro_id:uuid}", operation_id="replaceTeamMacro", summary="Replace a macro")
    async def replace_macro(
        self,
        team_id: FromPath[uuid.UUID],
        macro_id: FromPath[uuid.UUID],
        data: JSONBody[MacroCreate],
        request: Request[Any, Any, Any],
        principal: NamedDependency[Principal],
    ) -> MacroPublic:
        requires_lead(principal, team_id)
        return await write(request, lambda conn: services.replace_macro(conn, team_id, macro_id, data, principal))

    @delete("/{macro_id:uuid}", operation_id="deleteTeamMacro", summary="Delete a macro")
    async def delete_macro(
        self,
        team_id: FromPath[uuid.UUID],
        macro_id: FromPath[uuid.UUID],
        request: Request[Any, Any, Any],
        principal: NamedDependency[Principal],
    ) -> None:
        requires_lead(principal, team_id)
        await write(request, lambda conn: services.delete_macro(conn, team_id, macro_id, principal))


class ConversationMacroController(Controller):
    """Applying a macro of the conversation's team."""

    path = "/api/v1/conversations/{conversation_id:str}/macros"
    tags = ["Macros"]

    @post(
        "/{macro_id:uuid}",
        operation_id="applyMacro",
        summary="Apply a macro to the conversation",
        status_code=200,
        response_headers=REPLAYED_HEADERS,
    )
    async def apply(
        self,
        conversation_id: FromPath[str],
        macro_id: FromPath[uuid.UUID],
        request: Request[Any, Any, Any],
        principal: NamedDependency[Principal],
        pocketping: NamedDependency[SwitchboardPocketPing],
        idempotency_key: IdempotencyKey = None,
    ) -> Response[MacroApplied]:
        """Sends its canned reply as you (as ``POST .../messages`` would: a waiting conversation is claimed), then
        takes its tags off, puts its tags on and runs its action (assign to you, transfer, close) in one
        transaction. A state that rules the action out (closed, already in the target team) is a 409 before
        anything is sent. With an ``Idempotency-Key``, a repeat answers what the first did (replying once)."""
        applied, answer = await services.apply_macro(
            engine(request), pocketping, principal, conversation_id, macro_id, idempotency_key
        )
        return Response(answer, headers=replay_headers(not applied))
