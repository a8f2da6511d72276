"""Widget protocol bodies the SDK does not define (it ships them only as FastAPI handler arguments)."""

from __future__ import annotations

from typing import Any

from pocketping.models import EditMessageRequest
from pydantic import BaseModel, ConfigDict, Field


class _Body(BaseModel):
    model_config = ConfigDict(populate_by_name=True)


class EditMessageBody(_Body):
    """``PATCH /message/{id}``: the id is in the path."""

    session_id: str = Field(alias="sessionId", min_length=1, max_length=100)
    content: str = Field(max_length=4000)

    def to_sdk(self, message_id: str) -> EditMessageRequest:
        return EditMessageRequest(session_id=self.session_id, message_id=message_id, content=self.content)


class DisconnectRequest(_Body):
    """Sent by the widget (a beacon) when the visitor leaves."""

    session_id: str = Field(alias="sessionId", min_length=1, max_length=100)
    duration: int | None = Field(None, ge=0, description="Seconds the visitor was connected")
    reason: str | None = Field(None, max_length=100)


class VisibilityRequest(_Body):
    """Tab visibility ping."""

    session_id: str = Field(alias="sessionId", min_length=1, max_length=100)
    state: str = Field(pattern="^(hidden|visible)$")
    timestamp: int | None = None


class MessagesPage(_Body):
    """``GET /messages``."""

    messages: list[dict[str, Any]]
    has_more: bool = Field(alias="hasMore")


class OkResponse(_Body):
    ok: bool = True
