"""Operator AI controls per conversation: pause, resume, hand over to the AI now, take back."""

from __future__ import annotations

from typing import Any

from litestar import Controller, Request, post
from litestar.di import NamedDependency
from litestar.params import FromPath

from service.ai import services as ai
from service.ai.schemas import AiStatePublic
from service.auth.principal import Principal
from service.db.transactions import in_transaction


async def _control(
    request: Request[Any, Any, Any], principal: Principal, conversation_id: str, action: str
) -> AiStatePublic:
    """Check the caller is in the conversation's team (404 otherwise), apply the action, then tell the bridges."""
    state = request.app.state
    result = await in_transaction(
        state.engine, lambda conn: ai.control_as_member(conn, principal, conversation_id, action)
    )
    if action == "handover":
        await state.pocketping.announce_takeover(conversation_id, "handover")
    return AiStatePublic(conversation_id=result.conversation_id, ai_active=result.ai_active, ai_paused=result.ai_paused)


class AiController(Controller):
    """Who answers the visitor: the operators or the AI."""

    path = "/api/v1/conversations/{conversation_id:str}/ai"
    tags = ["AI"]

    @post("/pause", operation_id="pauseAi", summary="Keep the AI out of this conversation", status_code=200)
    async def pause(
        self, conversation_id: FromPath[str], request: Request[Any, Any, Any], principal: NamedDependency[Principal]
    ) -> AiStatePublic:
        """Cancels a pending takeover and ends AI mode; no takeover happens until resumed."""
        return await _control(request, principal, conversation_id, "pause")

    @post("/resume", operation_id="resumeAi", summary="Let the AI take over again when nobody answers", status_code=200)
    async def resume(
        self, conversation_id: FromPath[str], request: Request[Any, Any, Any], principal: NamedDependency[Principal]
    ) -> AiStatePublic:
        """The next unanswered visitor message starts the team's takeover delay again."""
        return await _control(request, principal, conversation_id, "resume")

    @post("/handover", operation_id="handOverToAi", summary="Hand the conversation to the AI now", status_code=200)
    async def handover(
        self, conversation_id: FromPath[str], request: Request[Any, Any, Any], principal: NamedDependency[Principal]
    ) -> AiStatePublic:
        """AI mode starts: the AI answers a waiting visitor message at once, and each later one (409 if AI is off)."""
        return await _control(request, principal, conversation_id, "handover")

    @post("/takeback", operation_id="takeBackFromAi", summary="Take the conversation back from the AI", status_code=200)
    async def takeback(
        self, conversation_id: FromPath[str], request: Request[Any, Any, Any], principal: NamedDependency[Principal]
    ) -> AiStatePublic:
        """AI mode ends and a pending AI reply is cancelled (replying as an operator does the same)."""
        return await _control(request, principal, conversation_id, "takeback")
