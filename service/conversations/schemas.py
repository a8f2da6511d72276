"""API schemas for conversations, their messages and internal notes (camelCase on the wire)."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, ConfigDict, Field, ValidationInfo, field_validator
from pydantic.alias_generators import to_camel

from service.schemas import ApiModel
from service.tags.schemas import ConversationTagPublic

ConversationStatus = Literal["new", "queued", "assigned", "closed"]
Sender = Literal["visitor", "operator", "ai", "system"]

_OPERATOR_ID = "5b0c1f7e-3c1e-4f7a-9d54-2f1c8e6a4b21"
_TEAM_ID = "0f6d9a2e-8b7c-4e1d-a3f5-6c2b9e8d7a10"
EXAMPLE_CONVERSATION_ID = "18c2f0a9d41-4be1c2d3"


def _examples(*examples: dict[str, Any]) -> ConfigDict:
    """The base model's config plus OpenAPI examples (already in wire format)."""
    return ConfigDict(
        alias_generator=to_camel,
        populate_by_name=True,
        from_attributes=True,
        json_schema_extra={"examples": list(examples)},
    )


def _clean(value: str) -> str:
    if "\x00" in value:  # PostgreSQL text cannot hold it
        raise ValueError("NUL characters are not allowed")
    if not value.strip():
        raise ValueError("must not be blank")
    return value


# Text an operator writes: not blank, and storable.
Text = Annotated[str, AfterValidator(_clean)]


class TeamRef(ApiModel):
    """The team a conversation belongs to."""

    id: uuid.UUID
    name: str


class OperatorRef(ApiModel):
    """An operator, as shown next to what they did."""

    id: uuid.UUID
    display_name: str


class AiState(ApiModel):
    """Whether the AI answers this conversation right now, and whether an operator paused it."""

    active: bool
    paused: bool


class VisitorPublic(ApiModel):
    """Who the visitor is, as far as the widget told us."""

    id: str
    identity: dict[str, Any] | None = Field(description="What the site passed to identify(): id, email, name, ...")
    metadata: dict[str, Any] | None = Field(description="Page URL, referrer, language, country, device, ...")
    phone: str | None
    phone_country: str | None


class DevicePublic(ApiModel):
    """The visitor's device, read from the user agent the widget sent."""

    browser: str | None = Field(description="Browser and version, e.g. Chrome 131.0")
    os: str | None = Field(description="Operating system and version, e.g. iOS 17.2")
    model: str | None = Field(description="Device model when the user agent names one (iPhone, ...); bot for crawlers")


class VisitorDetail(VisitorPublic):
    """The visitor, with the device named from their user agent."""

    device: DevicePublic | None = Field(description="Null when the widget sent no user agent")


class EarlierConversation(ApiModel):
    """Another conversation of the same visitor, begun before this one."""

    id: str
    status: ConversationStatus
    team_name: str | None
    created_at: datetime
    last_activity: datetime


class CsatPublic(ApiModel):
    """The visitor's rating: asked for when the conversation closed (if its team asks), given once."""

    requested_at: datetime | None = Field(description="When the widget was asked; null for a rating nobody asked for")
    score: int | None = Field(description="1 (very unhappy) to 5 (very happy); null until the visitor answers")
    comment: str | None
    rated_at: datetime | None
    operator: OperatorRef | None = Field(description="Who the rating counts for: the assignee when it closed")


SlaTarget = Literal["first_response", "next_response", "resolution"]


class SlaClockPublic(ApiModel):
    """One SLA clock of the conversation (see docs/routing.md, "SLA policies")."""

    target: SlaTarget
    started_at: datetime
    at_risk_at: datetime | None = Field(description="Null until the worker has computed it (within moments)")
    due_at: datetime | None = Field(description="The deadline, the team's closed hours skipped")
    stopped_at: datetime | None = Field(description="Met (or ended) at; null while it runs")
    seconds_left: int | None = Field(
        description="Wall-clock seconds to the deadline (negative: overdue); null if stopped"
    )
    at_risk: bool
    breached: bool = Field(description="This cycle missed its deadline")


class SlaPublic(ApiModel):
    """The conversation's SLA: the running clock due soonest, and every clock."""

    next: SlaClockPublic | None = Field(description="The running clock with the nearest deadline; null when none runs")
    clocks: list[SlaClockPublic]


class ConversationPublic(ApiModel):
    """A conversation with its routing state, assignee, AI state and visitor."""

    model_config = _examples(
        {
            "id": EXAMPLE_CONVERSATION_ID,
            "status": "assigned",
            "priority": 0,
            "team": {"id": _TEAM_ID, "name": "Support"},
            "assignee": {"id": _OPERATOR_ID, "displayName": "Ada Lovelace"},
            "waitingSince": "2026-11-25T21:58:03Z",
            "assignedAt": "2026-11-25T21:58:04Z",
            "firstResponseAt": "2026-11-25T21:59:10Z",
            "closedAt": None,
            "createdAt": "2026-11-25T21:57:40Z",
            "lastActivity": "2026-11-25T22:01:15Z",
            "visitorLeftAt": None,
            "requiredSkills": ["billing"],
            "ai": {"active": False, "paused": False},
            "csat": None,
            "tags": [],
            "sla": None,
            "visitor": {
                "id": "visitor-7f3a",
                "identity": {"id": "u-42", "email": "grace@example.com", "name": "Grace"},
                "metadata": {"url": "https://shop.example/pricing", "language": "en"},
                "phone": None,
                "phoneCountry": None,
            },
        }
    )

    id: str = Field(description="The PocketPing session id")
    status: ConversationStatus
    priority: int
    team: TeamRef | None
    assignee: OperatorRef | None
    waiting_since: datetime | None = Field(description="When the visitor started waiting for a person")
    assigned_at: datetime | None
    first_response_at: datetime | None
    closed_at: datetime | None
    created_at: datetime
    last_activity: datetime
    visitor_left_at: datetime | None
    required_skills: list[str]
    ai: AiState
    csat: CsatPublic | None = Field(description="The visitor's rating; null when none was asked for or given")
    tags: list[ConversationTagPublic] = Field(description="Its tags, by name")
    sla: SlaPublic | None = Field(description="SLA clocks and time left; null when the team's policy tracks none")
    visitor: VisitorPublic


class ConversationDetail(ConversationPublic):
    """A conversation in detail: also the visitor's device and their earlier conversations."""

    visitor: VisitorDetail
    earlier_conversations: list[EarlierConversation] = Field(
        description="The same visitor's (same widget visitor id, or the same identity id) conversations begun "
        "before this one that you may see, newest first, at most 10"
    )


class ConversationListed(ConversationPublic):
    """A conversation in the inbox list: also how many of the visitor's messages no operator has read."""

    unread_count: int = Field(description="Visitor messages not read yet (POST .../read marks them)")


class ConversationPage(ApiModel):
    """Conversations, most recent activity first; pass ``nextCursor`` as ``cursor`` for the next page."""

    items: list[ConversationListed]
    next_cursor: str | None = Field(description="Opaque; null on the last page")
    unread_total: int = Field(
        description="Unread visitor messages in every conversation these filters match, not only this page"
    )


class MessagePublic(ApiModel):
    """One message of the conversation, with the operator who wrote it when there is one."""

    model_config = _examples(
        {
            "id": "18c2f0b1e02-9a8b7c6d",
            "seq": 12,
            "conversationId": EXAMPLE_CONVERSATION_ID,
            "sender": "operator",
            "operator": {"id": _OPERATOR_ID, "displayName": "Ada Lovelace"},
            "content": "Yes, we ship to Lyon in two days.",
            "createdAt": "2026-11-25T21:59:10Z",
            "replyTo": None,
            "status": "sent",
            "deliveredAt": None,
            "readAt": None,
            "editedAt": None,
            "deletedAt": None,
        }
    )

    id: str
    seq: int = Field(description="Position in the conversation (increasing)")
    conversation_id: str
    sender: Sender
    operator: OperatorRef | None
    content: str
    created_at: datetime
    reply_to: str | None
    status: Literal["sending", "sent", "delivered", "read"]
    delivered_at: datetime | None
    read_at: datetime | None
    edited_at: datetime | None
    deleted_at: datetime | None
    attachments: list[AttachmentPublic] = Field(default_factory=list, description="Files sent with the message")


class AttachmentPublic(ApiModel):
    """A file on a message; ``url`` downloads it until ``ATTACHMENT_URL_TTL_SECONDS`` after this answer."""

    id: str
    filename: str
    mime_type: str = Field(description="Sniffed from the file's bytes")
    size: int = Field(description="Bytes")
    url: str = Field(description="A short-lived signed URL; ask again for a fresh one")
    status: Literal["pending", "uploading", "ready", "failed"]


MessagePublic.model_rebuild()


class MessagePage(ApiModel):
    """Messages, oldest first; pass ``nextCursor`` as ``cursor`` for the next page."""

    items: list[MessagePublic]
    next_cursor: str | None = Field(description="Opaque; null on the last page")


class ReplyCreate(ApiModel):
    """An operator's reply, sent to the visitor's widget and mirrored to the bridges."""

    model_config = _examples(
        {"content": "Yes, we ship to Lyon in two days."},
        {"content": "Here is your invoice.", "attachmentIds": ["att-5f1c2b9e8d7a10e4b3c2a1f0"]},
    )

    # Before ``content``, whose check reads it.
    attachment_ids: list[Annotated[str, Field(max_length=100)]] = Field(
        default_factory=list,
        max_length=10,
        description="Files uploaded to this conversation (POST .../attachments) and not sent yet",
    )
    content: str = Field(
        default="",
        max_length=4000,
        validate_default=True,
        description="Plain text, as the widget shows it; may be empty when files are attached",
    )

    @field_validator("content")
    @classmethod
    def _text_or_files(cls, value: str, info: ValidationInfo) -> str:
        return value if info.data.get("attachment_ids") and value == "" else _clean(value)


class MessageEdit(ApiModel):
    """New text for one of your own messages, within the team's edit window."""

    model_config = _examples({"content": "Yes, we ship to Lyon in three days."})

    content: Text = Field(min_length=1, max_length=4000, description="Plain text, as the widget shows it")


class TypingUpdate(ApiModel):
    """Whether you are typing a reply: the visitor's widget shows it (call again with false when you stop)."""

    model_config = _examples({"isTyping": True})

    is_typing: bool = Field(True, description="true while you type; false when you stop or leave the reply box")


class ReadPublic(ApiModel):
    """The visitor's messages this call marked read (none when they all were already)."""

    model_config = _examples({"messageIds": ["18c2f0b1e02-9a8b7c6d"], "readAt": "2026-11-25T22:01:00Z"})

    message_ids: list[str] = Field(description="In conversation order")
    read_at: datetime | None = Field(description="When they were marked read; null when none changed")


class NoteCreate(ApiModel):
    """An internal note for the team; ``@handle`` mentions notify those operators. Never sent to the visitor."""

    model_config = _examples({"body": "@grace.hopper can you check the refund for this order?"})

    body: Text = Field(min_length=1, max_length=10_000)


class NotePublic(ApiModel):
    """An internal note with its author and the operators it mentioned."""

    model_config = _examples(
        {
            "id": "6a1e4c2b-0d3f-4b5a-9c8e-7f6a5b4c3d2e",
            "conversationId": EXAMPLE_CONVERSATION_ID,
            "author": {"id": _OPERATOR_ID, "displayName": "Ada Lovelace"},
            "body": "@grace.hopper can you check the refund for this order?",
            "mentions": ["3c9e1b7a-5d2f-4e6a-8b1c-0f9e8d7c6b5a"],
            "createdAt": "2026-11-25T22:03:00Z",
        }
    )

    id: uuid.UUID
    conversation_id: str
    author: OperatorRef | None
    body: str
    mentions: list[uuid.UUID] = Field(description="Operators mentioned with @handle and notified")
    created_at: datetime


class NotePage(ApiModel):
    """Notes, oldest first; pass ``nextCursor`` as ``cursor`` for the next page."""

    items: list[NotePublic]
    next_cursor: str | None = Field(description="Opaque; null on the last page")


# --- Screenshots ------------------------------------------------------------------------------------------------

ScreenshotStatus = Literal["pending", "uploading", "done", "expired"]


class ScreenshotPublic(ApiModel):
    """A capture of the visitor's page an operator asked for, and how far the widget got with it."""

    model_config = _examples(
        {
            "id": "7d4c2b1a-9e8f-4a3b-8c7d-6e5f4a3b2c1d",
            "conversationId": EXAMPLE_CONVERSATION_ID,
            "status": "done",
            "requestedBy": {"id": _OPERATOR_ID, "displayName": "Ada Lovelace"},
            "requestedAt": "2026-11-25T22:04:00Z",
            "expiresAt": "2026-11-25T22:06:00Z",
            "capturedAt": "2026-11-25T22:04:02Z",
            "mimeType": "image/png",
            "size": 184_233,
            "imageUrl": f"/api/v1/conversations/{EXAMPLE_CONVERSATION_ID}/screenshots/"
            "7d4c2b1a-9e8f-4a3b-8c7d-6e5f4a3b2c1d/image",
        }
    )

    id: uuid.UUID = Field(description="Also the widget's requestId")
    conversation_id: str
    status: ScreenshotStatus = Field(
        description="pending: asked; uploading: the widget is sending it; done: stored; expired: not done in time"
    )
    requested_by: OperatorRef | None
    requested_at: datetime
    expires_at: datetime = Field(description="The widget must finish its upload by then")
    captured_at: datetime | None
    mime_type: str | None = Field(description="image/png, image/jpeg or image/webp, read from the image's bytes")
    size: int | None = Field(description="Bytes")
    image_url: str | None = Field(description="The image (same credentials as this API); null until done")


class ScreenshotPage(ApiModel):
    """Screenshots, oldest request first; pass ``nextCursor`` as ``cursor`` for the next page."""

    items: list[ScreenshotPublic]
    next_cursor: str | None = Field(description="Opaque; null on the last page")


_SessionId = Annotated[str, Field(min_length=1, max_length=100)]
_Key = Annotated[str, Field(min_length=1, max_length=100)]


class WidgetScreenshotRequests(ApiModel):
    """``GET /pocketping/screenshot/requests``: the requests the widget has not been handed yet."""

    requests: list[dict[str, Any]] = Field(description="{requestId, requestedBy, requestedFrom, silent}")


class WidgetUploadStart(ApiModel):
    """``POST /pocketping/screenshot/upload``, as the widget sends it."""

    session_id: _SessionId
    request_id: _Key


class WidgetUploadStarted(ApiModel):
    """Where the widget ``PUT``s the image (``attachmentId`` is the secret part of the URL)."""

    attachment_id: str
    upload_url: str
    expires_at: datetime
    storage_key: str


class WidgetUploadComplete(ApiModel):
    """``POST /pocketping/screenshot/upload/complete``, as the widget sends it."""

    session_id: _SessionId
    request_id: _Key
    attachment_id: _Key
    size: int = Field(ge=0, description="Bytes the widget uploaded")


class WidgetUploadCompleted(ApiModel):
    success: bool
    attachment_id: str
    screenshot_id: uuid.UUID
