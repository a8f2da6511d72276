"""The PocketPing widget protocol on Litestar, under ``/pocketping``."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Annotated, Any

import structlog
from litestar import Controller, Request, Response, WebSocket, delete, get, patch, post, put, websocket
from litestar.datastructures import State
from litestar.di import NamedDependency, Provide
from litestar.exceptions import (
    NotFoundException,
    PermissionDeniedException,
    TooManyRequestsException,
    ValidationException,
    WebSocketDisconnect,
)
from litestar.params import FromPath, JSONBody, QueryParameter
from litestar.response import ServerSentEvent, ServerSentEventMessage
from pocketping.models import (
    Attachment,
    ConnectRequest,
    CsatResponse,
    DeleteMessageRequest,
    DeleteMessageResponse,
    EditMessageResponse,
    IdentifyRequest,
    IdentifyResponse,
    PresenceResponse,
    ReadRequest,
    ReadResponse,
    Sender,
    SessionMetadata,
    TypingRequest,
    UploadResponse,
)

from service import metrics
from service.deps import engine, write
from service.files import services as files
from service.files.services import MAX_UPLOAD_BYTES
from service.gateway.hub import SwitchboardConnectResponse, SwitchboardPocketPing
from service.gateway.limits import OWN_BUDGET, RateLimiter, client_ip, count_signal
from service.gateway.schemas import (
    CompleteUploadBody,
    CsatBody,
    DisconnectRequest,
    EditMessageBody,
    MessagesPage,
    OkResponse,
    SendMessageBody,
    SentMessage,
    UploadBody,
    VisibilityRequest,
)

log = structlog.get_logger(__name__)

SSE_KEEPALIVE_SECONDS = 15.0
# Messages an SSE stream replays after its ``after``.
SSE_REPLAY_LIMIT = 1000


def _provide_limiter(state: State) -> RateLimiter:
    return state.rate_limiter  # type: ignore[no-any-return]


def _only_visitor(sender: Sender) -> None:
    if sender is not Sender.VISITOR:
        raise PermissionDeniedException(
            detail="The widget may only send as 'visitor'.",
            extra=[{"key": "sender", "message": f"'{sender.value}' is not allowed from the widget"}],
        )


def _not_blank(data: SendMessageBody) -> None:
    """400 naming ``content`` for no text and no attachment (an empty bubble); NUL is refused before, in bodies.py."""
    if not data.content.strip() and not data.attachment_ids:
        raise ValidationException(
            detail="content must not be blank", extra=[{"key": "content", "message": "must not be blank"}]
        )


async def _sdk(call: Any) -> Any:
    """Run an SDK handler, turning its ``ValueError``s into problem details."""
    try:
        return await call
    except ValueError as exc:
        text = str(exc)
        if "not found" in text.lower():
            raise NotFoundException(detail=text) from None
        raise ValidationException(detail=text) from None


class GatewayController(Controller):
    """Every endpoint the PocketPing widget calls; the SDK does the protocol, we do the limits."""

    path = "/pocketping"
    tags = ["widget"]
    before_request = count_signal  # type: ignore[assignment]  # a plain function, not a method
    dependencies = {"limiter": Provide(_provide_limiter, sync_to_thread=False)}

    @post("/connect", operation_id="widgetConnect", status_code=200)
    async def connect(
        self,
        data: JSONBody[ConnectRequest],
        request: Request[Any, Any, Any],
        pocketping: NamedDependency[SwitchboardPocketPing],
    ) -> Response[SwitchboardConnectResponse]:
        """Start or resume the visitor's session."""
        version = pocketping.check_widget_version(request.headers.get("x-pocketping-version"))
        headers = pocketping.get_version_headers(version)
        if not version.can_continue:
            # A problem document instead of the session.
            return Response(
                content={"title": "Widget version unsupported", "status": 426, "detail": version.message},  # type: ignore[arg-type]
                status_code=426,
                headers=headers,
                media_type="application/problem+json",
            )
        metadata = data.metadata or SessionMetadata(user_agent=request.headers.get("user-agent"))
        metadata.ip = client_ip(request)
        data.metadata = metadata
        result = await _sdk(pocketping.handle_connect(data))
        return Response(result, headers=headers)

    @post("/message", operation_id="widgetSendMessage", status_code=200, opt=OWN_BUDGET)
    async def send_message(
        self,
        data: JSONBody[SendMessageBody],
        request: Request[Any, Any, Any],
        pocketping: NamedDependency[SwitchboardPocketPing],
        limiter: NamedDependency[RateLimiter],
    ) -> SentMessage:
        """A visitor message: stored, shown to operators and routed (the session's and the IP's message budgets)."""
        _only_visitor(data.sender)
        _not_blank(data)
        await limiter.message(client_ip(request), data.session_id)
        sent = await _sdk(pocketping.handle_message(data.to_sdk()))
        attached = [a.model_dump(mode="json", by_alias=True) for a in sent.attachments] if sent.attachments else None
        return SentMessage(message_id=sent.message_id, timestamp=sent.timestamp, attachments=attached)

    @post("/upload", operation_id="widgetInitiateUpload", status_code=200)
    async def initiate_upload(
        self,
        data: JSONBody[UploadBody],
        request: Request[Any, Any, Any],
        pocketping: NamedDependency[SwitchboardPocketPing],
    ) -> UploadResponse:
        """Announce a file (name, type, size): refused at once beyond the team's limits; else where to PUT it."""
        attachment_id, url, expires_at = await write(
            request,
            lambda conn: files.initiate(
                conn, pocketping.files, data.session_id, data.filename, data.mime_type, data.size
            ),
        )
        return UploadResponse(attachment_id=attachment_id, upload_url=url, expires_at=expires_at)

    @put(
        "/upload/{attachment_id:str}",
        operation_id="widgetUploadFile",
        status_code=204,
        request_max_body_size=MAX_UPLOAD_BYTES,
    )
    async def upload_file(
        self,
        attachment_id: FromPath[str],
        request: Request[Any, Any, Any],
        pocketping: NamedDependency[SwitchboardPocketPing],
        expires: Annotated[str | None, QueryParameter(max_length=20)] = None,
        signature: Annotated[str | None, QueryParameter(max_length=100)] = None,
    ) -> None:
        """The file's bytes, to the signed URL ``/upload`` gave: sniffed and checked; a refused file is deleted."""
        pocketping.files.check(files.UPLOAD, attachment_id, expires, signature)
        await files.receive(engine(request), pocketping.files, attachment_id, await request.body())

    @post("/upload/complete", operation_id="widgetCompleteUpload", status_code=200)
    async def complete_upload(
        self,
        data: JSONBody[CompleteUploadBody],
        request: Request[Any, Any, Any],
        pocketping: NamedDependency[SwitchboardPocketPing],
    ) -> Attachment:
        """The upload is done: the file, ready to be sent with a message (its ``id`` in ``attachmentIds``)."""
        return await write(
            request, lambda conn: files.complete(conn, pocketping.files, data.session_id, data.attachment_id)
        )

    @get("/messages", operation_id="widgetListMessages")
    async def list_messages(
        self,
        pocketping: NamedDependency[SwitchboardPocketPing],
        session_id: Annotated[str, QueryParameter(name="sessionId", min_length=1, max_length=100)],
        after: Annotated[str | None, QueryParameter(max_length=100)] = None,
        limit: Annotated[int, QueryParameter(ge=1, le=100)] = 50,
    ) -> MessagesPage:
        """Oldest first: what changed after ``after`` (a message id or an ISO timestamp), else the latest messages."""
        found = await pocketping.storage.get_messages(session_id, after, limit + 1)
        # The one more than asked for says whether there are more: newer ones after a cursor, older ones without.
        page = found[:limit] if after else found[-limit:]
        return MessagesPage(messages=[m.model_dump(by_alias=True) for m in page], hasMore=len(found) > limit)

    @post("/typing", operation_id="widgetTyping", status_code=200, opt=OWN_BUDGET)
    async def typing(
        self,
        data: JSONBody[TypingRequest],
        request: Request[Any, Any, Any],
        pocketping: NamedDependency[SwitchboardPocketPing],
        limiter: NamedDependency[RateLimiter],
    ) -> OkResponse:
        """The visitor is (not) typing: one per keystroke from the widget, forwarded once per typing interval."""
        _only_visitor(data.sender)
        if await limiter.typing(client_ip(request), data.session_id, data.is_typing):
            await pocketping.handle_typing(data)
        return OkResponse()

    @post("/read", operation_id="widgetRead", status_code=200)
    async def read(
        self, data: JSONBody[ReadRequest], pocketping: NamedDependency[SwitchboardPocketPing]
    ) -> ReadResponse:
        """Delivery and read receipts from the widget."""
        return await _sdk(pocketping.handle_read(data))  # type: ignore[no-any-return]

    @get("/presence", operation_id="widgetPresence")
    async def presence(
        self,
        pocketping: NamedDependency[SwitchboardPocketPing],
        session_id: Annotated[
            str | None,
            QueryParameter(name="sessionId", min_length=1, max_length=100, description="For this session's team"),
        ] = None,
    ) -> PresenceResponse:
        """Whether an operator of the session's team (without one: the default team) is online, and its AI."""
        return await _sdk(pocketping.handle_presence(session_id))  # type: ignore[no-any-return]

    @post("/identify", operation_id="widgetIdentify", status_code=200)
    async def identify(
        self, data: JSONBody[IdentifyRequest], pocketping: NamedDependency[SwitchboardPocketPing]
    ) -> IdentifyResponse:
        """Attach the site's user identity to the session."""
        return await _sdk(pocketping.handle_identify(data))  # type: ignore[no-any-return]

    @post("/csat", operation_id="widgetCsat", status_code=200)
    async def csat(self, data: JSONBody[CsatBody], pocketping: NamedDependency[SwitchboardPocketPing]) -> CsatResponse:
        """The visitor's satisfaction rating (1-5), kept once: a second one answers ``alreadyRated``."""
        return await _sdk(pocketping.handle_csat(data.to_sdk()))  # type: ignore[no-any-return]

    @patch("/message/{message_id:str}", operation_id="widgetEditMessage")
    async def edit_message(
        self,
        message_id: FromPath[str],
        data: JSONBody[EditMessageBody],
        pocketping: NamedDependency[SwitchboardPocketPing],
    ) -> EditMessageResponse:
        """The visitor edits one of their own messages."""
        request = data.to_sdk(message_id)
        return await _sdk(pocketping.handle_edit_message(request))  # type: ignore[no-any-return]

    @delete("/message/{message_id:str}", operation_id="widgetDeleteMessage", status_code=200)
    async def delete_message(
        self,
        message_id: FromPath[str],
        pocketping: NamedDependency[SwitchboardPocketPing],
        session_id: Annotated[str, QueryParameter(name="sessionId", min_length=1, max_length=100)],
    ) -> DeleteMessageResponse:
        """The visitor deletes one of their own messages (soft delete)."""
        request = DeleteMessageRequest(session_id=session_id, message_id=message_id)
        return await _sdk(pocketping.handle_delete_message(request))  # type: ignore[no-any-return]

    @post("/disconnect", operation_id="widgetDisconnect", status_code=200)
    async def disconnect(
        self, data: JSONBody[DisconnectRequest], pocketping: NamedDependency[SwitchboardPocketPing]
    ) -> OkResponse:
        """The visitor left the page; operators' bridges are told."""
        await pocketping.handle_disconnect(data.session_id, data.duration, data.reason)
        return OkResponse()

    @post("/visibility", operation_id="widgetVisibility", status_code=204)
    async def visibility(self, data: JSONBody[VisibilityRequest]) -> None:
        """Tab hidden/visible pings; accepted and not stored."""

    @websocket("/stream")
    async def stream_websocket(
        self,
        socket: WebSocket[Any, Any, Any],
        pocketping: NamedDependency[SwitchboardPocketPing],
        limiter: NamedDependency[RateLimiter],
    ) -> None:
        """Live events for one session over WebSocket (typing can be sent back)."""
        session_id = socket.query_params.get("sessionId", "")
        if not session_id or await pocketping.storage.get_session(session_id) is None:
            await socket.close(code=4404, reason="Session not found")
            return
        await socket.accept()
        with metrics.connection("widget_websocket"):
            pocketping.register_websocket(session_id, socket)
            try:
                while True:
                    data = await socket.receive_json()
                    if isinstance(data, dict) and data.get("type") == "typing":
                        is_typing = bool(data.get("isTyping", True))
                        try:
                            forward = await limiter.typing(client_ip(socket), session_id, is_typing)
                        except TooManyRequestsException:
                            forward = False  # a frame has no answer to carry a 429: past the budget, it is dropped
                        if forward:
                            # Whatever the frame claims, a widget socket only ever speaks as the visitor.
                            await pocketping.handle_typing(
                                TypingRequest(session_id=session_id, sender=Sender.VISITOR, is_typing=is_typing)
                            )
            except (WebSocketDisconnect, json.JSONDecodeError):
                pass
            finally:
                pocketping.unregister_websocket(session_id, socket)

    @get("/stream", operation_id="widgetStreamSse")
    async def stream_sse(
        self,
        pocketping: NamedDependency[SwitchboardPocketPing],
        session_id: Annotated[str, QueryParameter(name="sessionId", min_length=1, max_length=100)],
        after: Annotated[
            str | None,
            QueryParameter(max_length=100, description="Replay what changed after this message id or ISO timestamp"),
        ] = None,
    ) -> ServerSentEvent:
        """Live events for one session over Server-Sent Events (the widget's fallback)."""
        if await pocketping.storage.get_session(session_id) is None:
            raise NotFoundException(detail="Session not found")
        replay = await pocketping.storage.get_messages(session_id, after, SSE_REPLAY_LIMIT) if after else []
        return ServerSentEvent(_sse_events(pocketping, session_id, replay))


class _SseSocket:
    """Looks like a WebSocket to the SDK (``send_text``) and feeds an SSE response."""

    def __init__(self) -> None:
        self.queue: asyncio.Queue[str] = asyncio.Queue(maxsize=1000)

    async def send_text(self, text: str) -> None:
        self.queue.put_nowait(text)


async def _sse_events(
    pocketping: NamedDependency[SwitchboardPocketPing], session_id: str, replay: list[Any]
) -> AsyncIterator[ServerSentEventMessage]:
    with metrics.connection("widget_sse"):
        sink = _SseSocket()
        pocketping.register_websocket(session_id, sink)
        try:
            yield ServerSentEventMessage(event="connected", data=json.dumps({"sessionId": session_id}))
            for message in replay:
                event = {"type": "message", "data": message.model_dump(mode="json", by_alias=True)}
                yield ServerSentEventMessage(event="message", data=json.dumps(event))
            while True:
                try:
                    text = await asyncio.wait_for(sink.queue.get(), timeout=SSE_KEEPALIVE_SECONDS)
                except TimeoutError:
                    yield ServerSentEventMessage(comment="keepalive")
                    continue
                kind = json.loads(text).get("type", "message")
                # The widget listens for these names; everything else arrives as "message".
                name = kind if kind in ("screenshot_request", "csat_request") else "message"
                yield ServerSentEventMessage(event=name, data=text)
        finally:
            pocketping.unregister_websocket(session_id, sink)
