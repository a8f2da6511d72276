"""Widget protocol bodies the SDK does not define (it ships them only as FastAPI handler arguments)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

import msgspec
from pocketping.models import CsatRequest, EditMessageRequest, Sender, SendMessageRequest
from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field


class _Body(BaseModel):
    model_config = ConfigDict(populate_by_name=True)


class EditMessageBody(_Body):
    """``PATCH /message/{id}``: the id is in the path."""

    session_id: str = Field(alias="sessionId", min_length=1, max_length=100)
    content: str = Field(max_length=4000)

    def to_sdk(self, message_id: str) -> EditMessageRequest:
        return EditMessageRequest(session_id=self.session_id, message_id=message_id, content=self.content)


def _whole_number(value: Any) -> Any:
    # The widget sends a JSON integer; "5", 4.5 or true are mistakes, not ratings.
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError("must be a whole number from 1 to 5")
    return value


def _storable(value: str) -> str:
    if "\x00" in value:  # PostgreSQL text and JSONB cannot hold it
        raise ValueError("NUL characters are not allowed")
    return value


class CsatBody(_Body):
    """``POST /csat``: what the widget's rating card sends (its comment box takes 1000 characters)."""

    session_id: str = Field(alias="sessionId", min_length=1, max_length=100)
    score: Annotated[int, BeforeValidator(_whole_number)] = Field(
        ge=1, le=5, description="1 (very unhappy) to 5 (very happy)"
    )
    comment: Annotated[str, Field(max_length=1000), AfterValidator(_storable)] | None = None

    def to_sdk(self) -> CsatRequest:
        return CsatRequest(session_id=self.session_id, score=self.score, comment=self.comment)


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


_Id = Annotated[str, msgspec.Meta(min_length=1, max_length=100)]


class SendMessageBody(msgspec.Struct, rename="camel"):
    """``POST /message``, decoded by msgspec: the hottest request, so no pydantic pass on the way in.

    The SDK's fields and limits, minus inline attachments (those come from bridges, not visitors).
    """

    session_id: _Id
    content: Annotated[str, msgspec.Meta(max_length=4000)]
    sender: Sender
    reply_to: _Id | None = None
    attachment_ids: (
        Annotated[list[Annotated[str, msgspec.Meta(max_length=100)]], msgspec.Meta(max_length=10)] | None
    ) = None

    def to_sdk(self) -> SendMessageRequest:
        # Already validated to the SDK model's constraints, so skip pydantic's second pass.
        return SendMessageRequest.model_construct(
            session_id=self.session_id,
            content=self.content,
            sender=self.sender,
            reply_to=self.reply_to,
            attachment_ids=self.attachment_ids,
            attachments=None,
        )


class SentMessage(msgspec.Struct, rename="camel", omit_defaults=True):
    """The SDK's ``SendMessageResponse``, encoded by msgspec, with the message's files (the widget shows them)."""

    message_id: str
    timestamp: datetime
    attachments: list[dict[str, Any]] | None = None


class UploadBody(_Body):
    """``POST /upload``: the file the widget is about to send (its ``File``'s name, type and size)."""

    session_id: str = Field(alias="sessionId", min_length=1, max_length=100)
    filename: Annotated[str, AfterValidator(_storable)] = Field(min_length=1, max_length=1000)
    mime_type: str = Field(alias="mimeType", min_length=1, max_length=255, pattern=r"^[\w.+-]+/[\w.+-]+$")
    size: int = Field(ge=0, description="Bytes")


class CompleteUploadBody(_Body):
    """``POST /upload/complete``: the bytes were PUT to the upload URL."""

    session_id: str = Field(alias="sessionId", min_length=1, max_length=100)
    attachment_id: str = Field(alias="attachmentId", min_length=1, max_length=100)
