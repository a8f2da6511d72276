"""API schemas for the AI controls (camelCase on the wire)."""

from __future__ import annotations

from pydantic import Field

from service.schemas import ApiModel


class AiStatePublic(ApiModel):
    conversation_id: str
    ai_active: bool = Field(description="The AI answers this conversation's visitor messages (AI mode)")
    ai_paused: bool = Field(description="The AI never takes this conversation over until resumed")
