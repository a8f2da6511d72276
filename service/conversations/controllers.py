"""Operator endpoints for conversations: list and search, detail, message history, replies and internal notes."""

from __future__ import annotations

import functools
import hashlib
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Annotated, Any, Literal

from litestar import Controller, Request, Response, delete, get, patch, post, put
from litestar.datastructures import ResponseHeader, UploadFile
from litestar.di import NamedDependency
from litestar.enums import RequestEncodingType
from litestar.exceptions import ValidationException
from litestar.exceptions.http_exceptions import RequestEntityTooLarge
from litestar.openapi.datastructures import ResponseSpec
from litestar.openapi.spec import Example
from litestar.params import Body, FromPath, HeaderParameter, JSONBody, PathParameter, QueryParameter
from sqlalchemy.ext.asyncio import AsyncConnection

from service.auth.principal import Principal
from service.conversations import screenshots, services, visitors
from service.conversations.schemas import EXAMPLE_CONVERSATION_ID as EXAMPLE_ID
from service.conversations.schemas import (
    AttachmentPublic,
    ConversationDetail,
    ConversationPage,
    ConversationStatus,
    MessageEdit,
    MessagePage,
    MessagePublic,
    NoteCreate,
    NotePage,
    NotePublic,
    ReadPublic,
    ReplyCreate,
    ScreenshotPage,
    ScreenshotPublic,
    TypingUpdate,
    WidgetScreenshotRequests,
    WidgetUploadComplete,
    WidgetUploadCompleted,
    WidgetUploadStart,
    WidgetUploadStarted,
)
from service.deps import REPLAYED_HEADERS, IdempotencyKey, engine, files, replay_headers
from service.files.services import MAX_UPLOAD_BYTES
from service.gateway.hub import SwitchboardPocketPing
from service.gateway.limits import count_signal
from service.settings import Settings

ConversationId = Annotated[
    str, PathParameter(description="Its PocketPing session id", examples=[Example(value=EXAMPLE_ID)])
]
MessageId = Annotated[str, PathParameter(description="The message's id", max_length=100)]
WidgetSession = Annotated[str, QueryParameter(name="sessionId", min_length=1, max_length=100)]
Cursor = Annotated[str | None, QueryParameter(description="nextCursor of the previous page", max_length=500)]
Limit = Annotated[int, QueryParameter(ge=1, le=services.MAX_PAGE, description="Items per page")]


Lister = Callable[[AsyncConnection, str, str | None, int], Awaitable[tuple[list[dict[str, Any]], str | None]]]


async def _list_of(
    request: Request[Any, Any, Any],
    principal: Principal,
    conversation_id: str,
    lister: Lister,
    cursor: str | None,
    limit: int,
) -> dict[str, Any]:
    """A page of something inside a conversation the caller can see."""
    async with engine(request).connect() as conn:
        await services.visible_conversation(conn, principal, conversation_id)
        items, after = await lister(conn, conversation_id, cursor, limit)
    return {"items": items, "next_cursor": after}


def conditional(page: ConversationPage, if_none_match: str | None) -> Response[ConversationPage]:
    """The page with its strong ``ETag``, or ``304`` and the ETag alone when ``If-None-Match`` names it."""
    etag = '"' + hashlib.sha256(page.model_dump_json(by_alias=True).encode()).hexdigest()[:32] + '"'
    headers = {"ETag": etag, "Cache-Control": "private, no-cache"}
    if if_none_match is not None:
        # RFC 9110 13.1.2: the weak comparison, so a W/ prefix added by a proxy still matches.
        held = {tag.strip().removeprefix("W/") for tag in if_none_match.split(",")}
        if etag in held or "*" in held:
            # No body at all (Litestar sends none for a 304); the type speaks of the 200.
            return Response(content=None, status_code=304, headers=headers)  # type: ignore[arg-type]
    return Response(content=page, headers=headers)


@dataclass
class FileForm:
    """``multipart/form-data`` with one file in the field ``file``."""

    file: UploadFile


class ConversationController(Controller):
    """Conversations of the caller's teams (every team for admins); another team's conversation is 404."""

    path = "/api/v1/conversations"
    tags = ["Conversations"]

    @get(
        "",
        operation_id="listConversations",
        summary="List and search conversations",
        response_headers=[
            ResponseHeader(
                name="ETag",
                documentation_only=True,
                description="A strong validator of this very page; send it back as If-None-Match",
            )
        ],
        responses={
            304: ResponseSpec(
                None, description="Not Modified: the page is the one of If-None-Match (no body; the ETag again)"
            )
        },
    )
    async def list_conversations(
        self,
        request: Request[Any, Any, Any],
        principal: NamedDependency[Principal],
        if_none_match: Annotated[
            str | None,
            HeaderParameter(
                name="If-None-Match",
                description="ETags of pages you hold: if this page is one of them, 304 without a body",
                max_length=2000,
            ),
        ] = None,
        cursor: Cursor = None,
        limit: Limit = 25,
        status: Annotated[
            list[ConversationStatus] | None, QueryParameter(description="Repeat to match several statuses")
        ] = None,
        team_id: Annotated[uuid.UUID | None, QueryParameter(name="teamId")] = None,
        assignee: Annotated[
            str | None,
            QueryParameter(
                description="me, unassigned, offered (what pooled teams offer you), or an operator id",
                max_length=36,
                examples=[Example(value="me"), Example(value="unassigned"), Example(value="offered")],
            ),
        ] = None,
        q: Annotated[
            str | None,
            QueryParameter(
                description="Words in any message, or part of the visitor's id, name or email",
                min_length=1,
                max_length=200,
            ),
        ] = None,
        tag: Annotated[
            uuid.UUID | None, QueryParameter(description="Only conversations with this tag (its id)")
        ] = None,
    ) -> Response[ConversationPage]:
        """Most recent activity first; filters combine with AND. Conditional: a strong ``ETag`` of the page,
        and ``If-None-Match`` with it answers ``304`` without a body while nothing on the page changed."""
        if q is not None and "\x00" in q:
            raise ValidationException(
                detail="q is not valid", extra=[{"key": "q", "message": "NUL characters are not allowed"}]
            )
        filters = services.ConversationFilters(statuses=status or (), team_id=team_id, assignee=assignee, q=q, tag=tag)
        async with engine(request).connect() as conn:
            items, after = await services.list_conversations(conn, principal, filters, cursor, limit)
            unread = await services.unread_total(conn, principal, filters)
        page = ConversationPage.model_validate({"items": items, "next_cursor": after, "unread_total": unread})
        return conditional(page, if_none_match)

    @get("/{conversation_id:str}", operation_id="getConversation", summary="A conversation in detail")
    async def get_conversation(
        self, conversation_id: ConversationId, request: Request[Any, Any, Any], principal: NamedDependency[Principal]
    ) -> ConversationDetail:
        """Team, assignee, status, priority, waiting time, AI state, the visitor's identity, metadata and device,
        and their earlier conversations."""
        async with engine(request).connect() as conn:
            row = await services.visible_conversation(conn, principal, conversation_id)
            detail = await visitors.conversation_detail(conn, principal, row)
        return ConversationDetail.model_validate(detail)

    @get("/{conversation_id:str}/messages", operation_id="listMessages", summary="The conversation's messages")
    async def list_messages(
        self,
        conversation_id: ConversationId,
        request: Request[Any, Any, Any],
        principal: NamedDependency[Principal],
        cursor: Cursor = None,
        limit: Limit = 50,
        order: Annotated[
            Literal["oldest", "newest"],
            QueryParameter(description="newest: newest first, and nextCursor leads to the messages before them"),
        ] = "oldest",
    ) -> MessagePage:
        """Oldest first, in the order they were stored, with the operator who wrote each reply; ``order=newest``
        for a chat screen that opens at the bottom and scrolls back."""
        stored = files(request)

        async def lister(conn: AsyncConnection, conversation: str, after: str | None, size: int) -> Any:
            return await services.list_messages(conn, stored, conversation, after, size, newest_first=order == "newest")

        page = await _list_of(request, principal, conversation_id, lister, cursor, limit)
        return MessagePage.model_validate(page)

    @post(
        "/{conversation_id:str}/attachments",
        operation_id="uploadAttachment",
        summary="Upload a file to send",
        status_code=201,
        request_max_body_size=MAX_UPLOAD_BYTES,
    )
    async def upload_attachment(
        self,
        conversation_id: ConversationId,
        data: Annotated[FileForm, Body(media_type=RequestEncodingType.MULTI_PART)],
        request: Request[Any, Any, Any],
        principal: NamedDependency[Principal],
    ) -> AttachmentPublic:
        """A file for your next reply (``attachmentIds``), checked against the team's ``attachmentMaxBytes`` and
        ``attachmentTypes`` by its bytes (413, 415 naming ``file``). Not sent within
        ``ATTACHMENT_UPLOAD_TTL_SECONDS``, it is deleted."""
        upload = data.file
        content = await upload.read()
        attachment = await services.upload(
            engine(request), files(request), principal, conversation_id, upload.filename, upload.content_type, content
        )
        return AttachmentPublic.model_validate(attachment)

    @post(
        "/{conversation_id:str}/messages",
        operation_id="replyToConversation",
        summary="Reply to the visitor",
        status_code=201,
        response_headers=REPLAYED_HEADERS,
    )
    async def reply(
        self,
        conversation_id: ConversationId,
        data: JSONBody[ReplyCreate],
        request: Request[Any, Any, Any],
        principal: NamedDependency[Principal],
        pocketping: NamedDependency[SwitchboardPocketPing],
        idempotency_key: IdempotencyKey = None,
    ) -> Response[MessagePublic]:
        """Sent to the widget and the bridges as you. A waiting conversation of your team is claimed first."""
        sent, message = await services.reply(
            engine(request),
            pocketping,
            principal,
            conversation_id,
            data.content,
            idempotency_key,
            attachment_ids=data.attachment_ids,
        )
        return Response(MessagePublic.model_validate(message), status_code=201, headers=replay_headers(not sent))

    @patch("/{conversation_id:str}/messages/{message_id:str}", operation_id="editMessage", summary="Edit your message")
    async def edit_message(
        self,
        conversation_id: ConversationId,
        message_id: MessageId,
        data: JSONBody[MessageEdit],
        request: Request[Any, Any, Any],
        principal: NamedDependency[Principal],
        pocketping: NamedDependency[SwitchboardPocketPing],
    ) -> MessagePublic:
        """Your own message, within the team's ``messageEditWindowSeconds`` (409 after it or once deleted; 403 for
        anyone else's). The visitor's widget and the team's chats show the new text."""
        message = await services.edit_message(
            engine(request), pocketping, principal, conversation_id, message_id, data.content
        )
        return MessagePublic.model_validate(message)

    @delete(
        "/{conversation_id:str}/messages/{message_id:str}",
        operation_id="deleteMessage",
        summary="Delete your message",
        status_code=200,
    )
    async def delete_message(
        self,
        conversation_id: ConversationId,
        message_id: MessageId,
        request: Request[Any, Any, Any],
        principal: NamedDependency[Principal],
        pocketping: NamedDependency[SwitchboardPocketPing],
    ) -> MessagePublic:
        """Soft delete (``deletedAt``; the text stays for operators) of your own message, within the team's edit
        window (409 after it; 403 for anyone else's). The widget hides it; the team's chats delete their copies."""
        message = await services.delete_message(engine(request), pocketping, principal, conversation_id, message_id)
        return MessagePublic.model_validate(message)

    @post(
        "/{conversation_id:str}/typing",
        operation_id="sendTyping",
        summary="Tell the visitor you are typing",
        status_code=204,
    )
    async def typing(
        self,
        conversation_id: ConversationId,
        data: JSONBody[TypingUpdate],
        request: Request[Any, Any, Any],
        principal: NamedDependency[Principal],
        pocketping: NamedDependency[SwitchboardPocketPing],
    ) -> None:
        """The widget shows "typing" until you send or call again with isTyping false; debounce your calls."""
        await services.typing(engine(request), pocketping, principal, conversation_id, data.is_typing)

    @post(
        "/{conversation_id:str}/read",
        operation_id="markConversationRead",
        summary="Mark the visitor's messages read",
        status_code=200,
    )
    async def mark_read(
        self,
        conversation_id: ConversationId,
        request: Request[Any, Any, Any],
        principal: NamedDependency[Principal],
        pocketping: NamedDependency[SwitchboardPocketPing],
    ) -> ReadPublic:
        """You saw the conversation: its visitor messages are read (stored), and the widget shows them read."""
        return ReadPublic.model_validate(
            await services.mark_read(engine(request), pocketping, principal, conversation_id)
        )

    @get("/{conversation_id:str}/notes", operation_id="listNotes", summary="The conversation's internal notes")
    async def list_notes(
        self,
        conversation_id: ConversationId,
        request: Request[Any, Any, Any],
        principal: NamedDependency[Principal],
        cursor: Cursor = None,
        limit: Limit = 50,
    ) -> NotePage:
        """Oldest first. Notes are for operators only."""
        page = await _list_of(request, principal, conversation_id, services.list_notes, cursor, limit)
        return NotePage.model_validate(page)

    @post(
        "/{conversation_id:str}/notes",
        operation_id="createNote",
        summary="Add an internal note",
        status_code=201,
        response_headers=REPLAYED_HEADERS,
    )
    async def create_note(
        self,
        conversation_id: ConversationId,
        data: JSONBody[NoteCreate],
        request: Request[Any, Any, Any],
        principal: NamedDependency[Principal],
        idempotency_key: IdempotencyKey = None,
    ) -> Response[NotePublic]:
        """Visible to operators only, never sent to the visitor or the bridges; ``@handle`` notifies that operator."""
        async with engine(request).begin() as conn:
            stored, note = await services.add_note(conn, principal, conversation_id, data.body, idempotency_key)
        return Response(NotePublic.model_validate(note), status_code=201, headers=replay_headers(not stored))

    @post(
        "/{conversation_id:str}/screenshots",
        operation_id="requestScreenshot",
        summary="Ask the visitor's widget for a screenshot",
        status_code=201,
    )
    async def request_screenshot(
        self,
        conversation_id: ConversationId,
        request: Request[Any, Any, Any],
        principal: NamedDependency[Principal],
        pocketping: NamedDependency[SwitchboardPocketPing],
    ) -> ScreenshotPublic:
        """The widget captures the visitor's viewport and uploads it within ``SCREENSHOT_REQUEST_TTL_SECONDS``;
        follow ``status`` here or wait for ``screenshot.captured`` on the event stream."""
        settings: Settings = request.app.state.settings
        screenshot = await screenshots.request_screenshot(
            engine(request), pocketping, principal, conversation_id, settings.screenshot_request_ttl_seconds
        )
        return ScreenshotPublic.model_validate(screenshot)

    @get("/{conversation_id:str}/screenshots", operation_id="listScreenshots", summary="The conversation's screenshots")
    async def list_screenshots(
        self,
        conversation_id: ConversationId,
        request: Request[Any, Any, Any],
        principal: NamedDependency[Principal],
        cursor: Cursor = None,
        limit: Limit = 50,
    ) -> ScreenshotPage:
        """Oldest request first, each with its status; ``imageUrl`` once the image is stored."""
        prefix = request.app.state.settings.path_prefix
        lister = functools.partial(screenshots.list_screenshots, prefix=prefix)
        page = await _list_of(request, principal, conversation_id, lister, cursor, limit)
        return ScreenshotPage.model_validate(page)

    @get(
        "/{conversation_id:str}/screenshots/{screenshot_id:uuid}/image",
        operation_id="getScreenshotImage",
        summary="A screenshot's image",
        media_type="image/png",
    )
    async def screenshot_image(
        self,
        conversation_id: ConversationId,
        screenshot_id: FromPath[uuid.UUID],
        request: Request[Any, Any, Any],
        principal: NamedDependency[Principal],
    ) -> Response[bytes]:
        """The stored image, typed by its own bytes (PNG, JPEG or WebP); 404 until it is uploaded."""
        async with engine(request).connect() as conn:
            await services.visible_conversation(conn, principal, conversation_id)
            content, mime_type = await screenshots.image(conn, conversation_id, screenshot_id)
        # The visitor's bytes, shown to operators: never sniffed into anything else, never run as a document.
        headers = {
            "X-Content-Type-Options": "nosniff",
            "Content-Security-Policy": "default-src 'none'; sandbox",
            "Cache-Control": "private, max-age=3600",
        }
        return Response(content, media_type=mime_type, headers=headers)


class WidgetScreenshotController(Controller):
    """The widget's side of screenshots (PocketPing widget 2.6's protocol); each request counts as a signal."""

    path = "/pocketping/screenshot"
    tags = ["widget"]
    before_request = count_signal  # type: ignore[assignment]  # a plain function, not a method

    @get("/requests", operation_id="widgetScreenshotRequests")
    async def pending(self, request: Request[Any, Any, Any], session_id: WidgetSession) -> WidgetScreenshotRequests:
        """The widget's poll: requests it has not been handed yet, each handed out once; usually none."""
        async with engine(request).begin() as conn:
            requests = await screenshots.offer_pending(conn, session_id)
        return WidgetScreenshotRequests(requests=requests)

    @post("/upload", operation_id="widgetScreenshotUpload", status_code=200)
    async def start_upload(
        self, data: JSONBody[WidgetUploadStart], request: Request[Any, Any, Any]
    ) -> WidgetUploadStarted:
        """Where to ``PUT`` the image of a live request of this session (until ``expiresAt``)."""
        async with engine(request).begin() as conn:
            key, expires_at = await screenshots.start_upload(conn, data.session_id, data.request_id)
        settings: Settings = request.app.state.settings
        base = settings.base_url
        return WidgetUploadStarted(
            attachment_id=key,
            upload_url=f"{base}{self.path}/upload/{key}",
            expires_at=expires_at,
            storage_key=f"screenshot/{data.request_id}",
        )

    # No framework limit: the image has its own, SCREENSHOT_MAX_BYTES, checked while it streams in.
    @put("/upload/{key:str}", operation_id="widgetScreenshotPut", status_code=204, request_max_body_size=None)
    async def put_image(
        self, key: Annotated[str, PathParameter(max_length=100)], request: Request[Any, Any, Any]
    ) -> None:
        """The image itself (the widget sends a PNG); stored once, typed by its bytes."""
        limit = request.app.state.settings.screenshot_max_bytes
        if int(request.headers.get("content-length") or 0) > limit:
            raise RequestEntityTooLarge
        chunks, size = [], 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                raise RequestEntityTooLarge
            chunks.append(chunk)
        async with engine(request).begin() as conn:
            await screenshots.store_upload(conn, key, b"".join(chunks))

    @post("/upload/complete", operation_id="widgetScreenshotComplete", status_code=200)
    async def complete(
        self, data: JSONBody[WidgetUploadComplete], request: Request[Any, Any, Any]
    ) -> WidgetUploadCompleted:
        """The widget's last step: confirms the stored image (its size must match)."""
        async with engine(request).connect() as conn:
            done = await screenshots.complete_upload(
                conn, data.session_id, data.request_id, data.attachment_id, data.size
            )
        return WidgetUploadCompleted.model_validate(done)
