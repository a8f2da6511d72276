"""Operator endpoints that move conversations: claim, transfer, close, reopen, and the routing decisions."""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from typing import Annotated, Any

import sqlalchemy as sa
from litestar import Controller, Request, Response, get, post
from litestar.di import NamedDependency
from litestar.exceptions import NotFoundException, ValidationException
from litestar.params import FromPath, JSONBody, QueryParameter
from sqlalchemy.ext.asyncio import AsyncConnection

from service import idempotency
from service.auth.principal import Principal, requires_lead, requires_team_member
from service.db.tables import conversation_t
from service.db.transactions import in_transaction
from service.deps import REPLAYED_HEADERS, IdempotencyKey, engine, replay_headers
from service.routing import handoff, queries
from service.routing.queries import decisions_for
from service.routing.schemas import (
    ConversationRoutingPublic,
    RoutingDecisionPage,
    RoutingDecisionPublic,
    TransferCreate,
)


async def _act(
    request: Request[Any, Any, Any],
    principal: Principal,
    conversation_id: str,
    action: Callable[[AsyncConnection, uuid.UUID], Awaitable[object]],
    key: str | None = None,
    body: Any = None,
) -> Response[ConversationRoutingPublic]:
    """Guard, act and read back the routing state in one transaction (run again if PostgreSQL broke a deadlock).

    With ``key``, a repeat of the same request answers what the first one did, without acting again.
    """
    idempotency.check_key(key)
    operation = request.url.path.rsplit("/", 1)[-1]
    bound_to = idempotency.request_hash(operation, conversation_id, body)

    async def work(conn: AsyncConnection) -> Response[ConversationRoutingPublic]:
        if key is not None and (earlier := await idempotency.replayed(conn, principal.operator_id, key, bound_to)):
            return Response(ConversationRoutingPublic.model_validate(earlier), headers=replay_headers(True))
        await action(conn, await queries.lock_for_member(conn, conversation_id, principal))
        state = await queries.routing_state(conn, conversation_id)
        if key is not None:
            answer = state.model_dump(mode="json", by_alias=True)
            await idempotency.remember(conn, principal.operator_id, key, bound_to, answer)
        return Response(state)

    return await in_transaction(engine(request), work)


class RoutingController(Controller):
    """Who holds a conversation, and why."""

    path = "/api/v1/conversations/{conversation_id:str}"
    tags = ["Routing"]

    @post(
        "/claim",
        operation_id="claimConversation",
        summary="Take a waiting conversation",
        status_code=200,
        response_headers=REPLAYED_HEADERS,
    )
    async def claim(
        self,
        conversation_id: FromPath[str],
        request: Request[Any, Any, Any],
        principal: NamedDependency[Principal],
        idempotency_key: IdempotencyKey = None,
    ) -> Response[ConversationRoutingPublic]:
        """Assign a queued conversation of your team to yourself, within your capacity (409 when full or taken)."""
        me = principal.operator_id
        return await _act(
            request,
            principal,
            conversation_id,
            lambda conn, _: handoff.claim(conn, conversation_id, me, actor_id=me),
            idempotency_key,
        )

    @post(
        "/transfer",
        operation_id="transferConversation",
        summary="Hand off to an operator or team",
        status_code=200,
        response_headers=REPLAYED_HEADERS,
    )
    async def transfer(
        self,
        conversation_id: FromPath[str],
        data: JSONBody[TransferCreate],
        request: Request[Any, Any, Any],
        principal: NamedDependency[Principal],
        idempotency_key: IdempotencyKey = None,
    ) -> Response[ConversationRoutingPublic]:
        """To an operator of the team (capacity-checked; leads may override) or to a team (routed by its policy)."""

        async def transfer(conn: AsyncConnection, team_id: uuid.UUID) -> None:
            if data.override_capacity:
                requires_lead(principal, team_id)
            if data.operator_id is not None:
                await handoff.transfer_to_operator(
                    conn,
                    conversation_id,
                    data.operator_id,
                    actor_id=principal.operator_id,
                    note=data.note,
                    override_capacity=data.override_capacity,
                )
            elif data.team_id is not None:
                await handoff.transfer_to_team(
                    conn, conversation_id, data.team_id, actor_id=principal.operator_id, note=data.note
                )

        return await _act(request, principal, conversation_id, transfer, idempotency_key, data.model_dump(mode="json"))

    @post(
        "/close",
        operation_id="closeConversation",
        summary="Close a conversation",
        status_code=200,
        response_headers=REPLAYED_HEADERS,
    )
    async def close(
        self,
        conversation_id: FromPath[str],
        request: Request[Any, Any, Any],
        principal: NamedDependency[Principal],
        idempotency_key: IdempotencyKey = None,
    ) -> Response[ConversationRoutingPublic]:
        """Closes it and gives the assignee's slot to the next queued conversation (409 if already closed)."""

        me = principal.operator_id
        return await _act(
            request,
            principal,
            conversation_id,
            lambda conn, _: handoff.close_conversation(conn, conversation_id, actor_id=me),
            idempotency_key,
        )

    @post("/reopen", operation_id="reopenConversation", summary="Reopen a closed conversation", status_code=200)
    async def reopen(
        self, conversation_id: FromPath[str], request: Request[Any, Any, Any], principal: NamedDependency[Principal]
    ) -> Response[ConversationRoutingPublic]:
        """Reopens it and routes it again in its team at once (409 unless closed)."""

        me = principal.operator_id
        return await _act(
            request,
            principal,
            conversation_id,
            lambda conn, _: handoff.reopen_conversation(conn, conversation_id, actor_id=me),
        )

    @get(
        "/routing-decisions",
        operation_id="listRoutingDecisions",
        summary="Why the conversation went where it did",
    )
    async def decisions(
        self,
        conversation_id: FromPath[str],
        request: Request[Any, Any, Any],
        principal: NamedDependency[Principal],
        cursor: Annotated[str | None, QueryParameter(description="nextCursor of the previous page")] = None,
        limit: Annotated[int, QueryParameter(ge=1, le=200)] = 50,
    ) -> RoutingDecisionPage:
        """Every decision, oldest first: policy, trigger, each candidate's exclusion reason or score, the outcome."""
        if cursor is not None and not cursor.isdigit():
            raise ValidationException(
                detail="cursor is not valid",
                extra=[{"key": "cursor", "message": "use nextCursor from a previous page"}],
            )
        async with engine(request).connect() as conn:
            row = (
                await conn.execute(sa.select(conversation_t.c.team_id).where(conversation_t.c.id == conversation_id))
            ).first()
            if row is None:
                raise NotFoundException("Conversation not found")
            requires_team_member(principal, row.team_id)
            found = await decisions_for(conn, conversation_id, after_id=int(cursor or 0), limit=limit + 1)
        items = [RoutingDecisionPublic.model_validate(row) for row in found[:limit]]
        return RoutingDecisionPage(items=items, next_cursor=str(items[-1].id) if len(found) > limit else None)
