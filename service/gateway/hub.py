"""The per-process ``PocketPing`` instance, with widget events fanned out across processes over Redis."""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import json
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
import structlog
from pocketping import PocketPing
from pocketping.bridges import Bridge
from pocketping.models import (
    Attachment,
    ConnectRequest,
    ConnectResponse,
    CsatRequest,
    CsatResponse,
    IdentifyRequest,
    IdentifyResponse,
    Message,
    MessageStatus,
    PresenceResponse,
    ReadRequest,
    ReadResponse,
    Sender,
    SendMessageRequest,
    SendMessageResponse,
    TypingRequest,
    WebSocketEvent,
)
from pocketping.storage import BridgeMessageIds
from pydantic import Field
from redis.asyncio import Redis
from sqlalchemy.ext.asyncio import AsyncEngine

from service.batching import Batcher
from service.db.tables import message_t
from service.errors import field_invalid
from service.files import services as files
from service.gateway.bridge import RoutingBridge
from service.gateway.hooks import GatewayHooks, HostHooks
from service.gateway.storage import MESSAGE_COLUMNS, PostgresStorage, acting_operator, row_to_message
from service.settings import Settings

log = structlog.get_logger(__name__)

# A message id chosen before the SDK creates the message, so a retried delivery re-sends the
# same message (the widget de-duplicates by id) instead of a second copy.
_preset_message_id: contextvars.ContextVar[str | None] = contextvars.ContextVar("preset_message_id", default=None)
# The name of the operator whose message is being sent, shown by the widget next to it.
_acting_name: contextvars.ContextVar[str | None] = contextvars.ContextVar("acting_name", default=None)


class SentWithAttachments(SendMessageResponse):
    """The SDK's answer to a message plus the files now on it (the widget shows them from this answer)."""

    attachments: list[Attachment] | None = None


class SwitchboardConnectResponse(ConnectResponse):
    """The SDK's connect response plus who is answering, so the widget can say it."""

    operator_name: str | None = Field(
        None, alias="operatorName", description="Display name of the assigned operator, if any"
    )
    ai_enabled: bool = Field(False, alias="aiEnabled", description="Whether the visitor's team lets the AI answer")
    outside_hours: bool = Field(
        False, alias="outsideHours", description="The visitor's team is closed (business hours): nobody is online"
    )
    opens_at: datetime | None = Field(
        None, alias="opensAt", description="When the closed team opens again, and answers; null while it is open"
    )


# Message ids one widget receipt may name (the widget sends the few it has just shown).
MAX_RECEIPT_IDS = 500


def widget_channel(settings: Settings) -> str:
    """The Redis pub/sub channel carrying widget events between processes."""
    return f"{settings.redis_prefix}:widget-events"


def widget_team_channel(settings: Settings) -> str:
    """The Redis pub/sub channel carrying widget events for every visitor of a team (``[team id, event]``)."""
    return f"{settings.redis_prefix}:widget-team-events"


def _envelope(session_id: str, event: str) -> str:
    """One event on the widget channel; ``event`` is encoded once, and the relay sends it to sockets as it is."""
    return json.dumps([session_id, event])


class SwitchboardPocketPing(PocketPing):
    """PocketPing with our storage, no SDK AI, and socket delivery through Redis pub/sub.

    Any process may produce an event for a visitor; it is published once, and every api
    process delivers it to the sockets it holds for that session. So each socket gets it
    exactly once, wherever it is connected, and bridges are called only by the producer.
    """

    storage: PostgresStorage

    def __init__(
        self,
        *,
        settings: Settings,
        engine: AsyncEngine,
        redis: Redis,
        hooks: GatewayHooks,
        files: files.Files,
        routing: RoutingBridge | None = None,
        bridges: list[Bridge] | None = None,
        host: HostHooks | None = None,
    ) -> None:
        """``routing`` stores visitor messages (api processes); without it this instance only sends. ``host`` is
        the embedding app's own bridges and hooks (library mode)."""
        host = host or HostHooks()
        all_bridges = ([routing] if routing else []) + (bridges or []) + list(host.bridges)
        super().__init__(
            storage=PostgresStorage(engine, files),
            bridges=all_bridges,
            ai_provider=None,
            on_new_session=host.on_new_session,
            on_message=host.on_message,
            on_event=host.on_event,
            on_identify=host.on_identify,
            on_csat=host.on_csat,
        )
        self.host_bridges = list(host.bridges)
        self.settings = settings
        self.files = files
        self.engine = engine
        self.redis = redis
        self.hooks = hooks
        self.routing = routing
        self._channel = widget_channel(settings)
        self._team_channel = widget_team_channel(settings)
        self._subscriber: asyncio.Task[None] | None = None
        self._subscribed = asyncio.Event()
        self._publisher: Batcher[str, None] = Batcher(self._publish, max_size=512)

    # Visitor messages -------------------------------------------------------------------

    async def _link_attachments(self, message: Message, request: SendMessageRequest) -> None:
        """The files named by id must be this session's, completed and on no message yet (else 400 naming
        ``attachmentIds``, nothing linked); inline ones (from chat platforms) are kept as given."""
        linked = list(request.attachments or [])
        if request.attachment_ids:
            async with self.engine.begin() as conn:
                linked += await files.link(conn, self.files, request.session_id, request.attachment_ids, message.id)
        if linked:
            message.attachments = linked

    async def handle_message(self, request: SendMessageRequest) -> SentWithAttachments:
        """Visitor messages go through the routing bridge's group commit; the rest as the SDK does it."""
        if request.sender is not Sender.VISITOR or self.routing is None:
            sent = await super().handle_message(request)
            return SentWithAttachments(message_id=sent.message_id, timestamp=sent.timestamp)
        message = Message(
            id=self._generate_id(),
            session_id=request.session_id,
            content=request.content,
            sender=request.sender,
            timestamp=datetime.now(UTC),
            reply_to=request.reply_to,
        )
        await self._link_attachments(message, request)
        await self.receive_visitor_message(message, inline=request.attachments or [])
        return SentWithAttachments(message_id=message.id, timestamp=message.timestamp, attachments=message.attachments)

    async def receive_visitor_message(self, message: Message, *, inline: list[Attachment] | None = None) -> None:
        """A visitor message with its id and time chosen already (by the widget's request, or by a connected site's
        PocketPing): stored and routed through the routing bridge, pushed to sockets, told to the team's chats."""
        assert self.routing is not None, "only an instance with the routing bridge receives visitor messages"
        await self.routing.ingest(message)
        for attachment in inline or []:  # inline ones are not stored yet
            await self.storage.save_attachment(attachment.model_copy(update={"message_id": message.id}))
        # The WebSocketEvent the SDK would build, encoded in one pass. Pub/sub delivers at most
        # once anyway, so the visitor's answer does not wait for the PUBLISH.
        event = '{"type":"message","data":' + message.model_dump_json(by_alias=True) + "}"
        self._publisher.post(_envelope(message.session_id, event))
        # The routing bridge has done its part, the team chats' post queued with the message; the SDK's hook
        # tells the embedding app's bridges and hook, if it has any (without, no further round trip).
        wanted = self.on_message or self.host_bridges
        session = await self.storage.get_session(message.session_id) if wanted else None
        if session is not None:
            await self._notify_bridges_message(message, session)  # the routing bridge's hook is a no-op
            if self.on_message:
                result = self.on_message(message, session)
                if asyncio.iscoroutine(result):
                    await result

    # Cross-process delivery ---------------------------------------------------------------

    async def _broadcast_to_session(self, session_id: str, event: WebSocketEvent) -> None:
        name = _acting_name.get()
        if name is not None and event.type == "message" and event.data.get("sender") == Sender.OPERATOR:
            event.data["metadata"] = {**(event.data.get("metadata") or {}), "operatorName": name}
        await self._publisher.submit(_envelope(session_id, event.model_dump_json(by_alias=True)))

    async def _publish(self, envelopes: list[str]) -> list[None]:
        """One PUBLISH carries every event produced since the last one: a JSON list of [session id, event]."""
        try:
            await self.redis.publish(self._channel, "[" + ",".join(envelopes) + "]")
        except Exception:
            # Sockets miss these live events; widgets re-sync through GET /messages.
            log.warning("widget events not published", events=len(envelopes), exc_info=True)
            raise
        return [None] * len(envelopes)

    async def publish_to_team(self, team_id: uuid.UUID, event: WebSocketEvent) -> None:
        """Send ``event`` to the sockets of every visitor dealing with the team, on whichever api process."""
        await self.redis.publish(self._team_channel, json.dumps([str(team_id), event.model_dump_json(by_alias=True)]))

    async def flush_events(self) -> None:
        """Publish what is still pending (at shutdown)."""
        await self._publisher.join()

    async def deliver_local(self, session_id: str, text: str) -> None:
        """Send one serialized event to this process's sockets for the session."""
        dead = []
        for socket in list(self._websocket_connections.get(session_id, ())):
            try:
                await socket.send_text(text)
            except Exception:
                dead.append(socket)
        for socket in dead:
            self.unregister_websocket(session_id, socket)
        if session_id in self._websocket_connections and not self._websocket_connections[session_id]:
            del self._websocket_connections[session_id]

    async def start_subscriber(self) -> None:
        """Start relaying published events to local sockets (api processes only)."""
        self._subscriber = asyncio.create_task(self._relay(), name="widget-relay")
        await asyncio.wait_for(self._subscribed.wait(), timeout=10)

    async def stop_subscriber(self) -> None:
        if self._subscriber:
            self._subscriber.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._subscriber

    async def _relay(self) -> None:
        while True:
            try:
                async with self.redis.pubsub(ignore_subscribe_messages=True) as pubsub:
                    await pubsub.subscribe(self._channel, self._team_channel)
                    self._subscribed.set()
                    async for item in pubsub.listen():
                        channel = item["channel"]
                        if (channel.decode() if isinstance(channel, bytes) else channel) == self._team_channel:
                            await self._deliver_to_team(*json.loads(item["data"]))
                            continue
                        for session_id, text in json.loads(item["data"]):
                            if session_id in self._websocket_connections:
                                await self.deliver_local(session_id, text)
            except asyncio.CancelledError:
                raise
            except Exception:
                # Redis went away: sockets miss live events meanwhile (widgets re-sync through
                # GET /messages), and we resubscribe as soon as Redis answers again.
                log.warning("widget relay lost Redis; retrying", exc_info=True)
                await asyncio.sleep(1)

    async def _deliver_to_team(self, team_id: str, text: str) -> None:
        """Send a team's event to this process's sockets of that team's visitors."""
        local = [session_id for session_id, sockets in self._websocket_connections.items() if sockets]
        if not local:
            return
        try:
            async with self.engine.connect() as conn:
                sessions = await self.hooks.team_sessions(conn, uuid.UUID(team_id), local)
        except Exception:
            # Their widgets learn the team's availability again when they reconnect.
            log.warning("team event not delivered", team_id=team_id, exc_info=True)
            return
        for session_id in sessions:
            await self.deliver_local(session_id, text)

    # Ids and attribution ----------------------------------------------------------------

    def _generate_id(self) -> str:
        preset = _preset_message_id.get()
        if preset is not None:
            _preset_message_id.set(None)
            return preset
        return super()._generate_id()

    @contextlib.contextmanager
    def _as(self, operator_id: uuid.UUID | None, operator_name: str | None, message_id: str | None) -> Iterator[None]:
        operator_token = acting_operator.set(operator_id)
        name_token = _acting_name.set(operator_name)
        id_token = _preset_message_id.set(message_id)
        try:
            yield
        finally:
            acting_operator.reset(operator_token)
            _acting_name.reset(name_token)
            _preset_message_id.reset(id_token)

    async def send_as_operator(
        self,
        session_id: str,
        content: str,
        *,
        operator_id: uuid.UUID | None,
        operator_name: str | None,
        message_id: str | None = None,
        source_bridge: str = "api",
        attachment_ids: list[str] | None = None,
    ) -> Message:
        """Send through the SDK (persist, widget, bridges), attributed to ``operator_id``, with the files of
        ``attachment_ids`` (uploaded to this conversation and not sent yet)."""
        with self._as(operator_id, operator_name, message_id):
            # The SDK's send_operator_message, with the files: the bridges get the message as the widget does.
            request = SendMessageRequest(
                session_id=session_id, content=content, sender=Sender.OPERATOR, attachment_ids=attachment_ids or None
            )
            response = await self.handle_message(request)
            sent = await self.storage.get_message(response.message_id) or Message(
                id=response.message_id,
                session_id=session_id,
                content=content,
                sender=Sender.OPERATOR,
                timestamp=response.timestamp,
            )
            session = await self.storage.get_session(session_id)
            if session:
                await self._notify_bridges_operator_message(sent, session, source_bridge, operator_name)
        async with self.engine.begin() as conn:
            await self.hooks.operator_replied(conn, session_id, operator_id)
        return sent

    async def send_as_ai(
        self, session_id: str, content: str, *, message_id: str, takeover_reason: str | None = None
    ) -> Message:
        """Send an AI reply (sender ``ai``): stored, pushed to the widget, mirrored to bridges.

        With ``takeover_reason`` the AI is starting to answer this conversation: bridges hear
        ``on_ai_takeover`` and the widget an ``ai_takeover`` event first, as the SDK does it.
        """
        session = await self.storage.get_session(session_id)
        if session is None:
            raise ValueError("Session not found")
        if takeover_reason is not None:
            await self.announce_takeover(session_id, takeover_reason)
        message = Message(
            id=message_id, session_id=session_id, content=content, sender=Sender.AI, timestamp=datetime.now(UTC)
        )
        await self.storage.save_message(message)
        await self._broadcast_to_session(
            session_id, WebSocketEvent(type="message", data=message.model_dump(by_alias=True))
        )
        await self._notify_bridges_operator_message(message, session, "ai", "AI")
        return message

    async def announce_takeover(self, session_id: str, reason: str) -> None:
        """Tell the bridges (``on_ai_takeover``) and the widget that the AI now answers this conversation."""
        session = await self.storage.get_session(session_id)
        if session is None:
            return
        for bridge in self.bridges:
            try:
                await bridge.on_ai_takeover(session, reason)
            except Exception:
                log.warning("bridge failed on AI takeover", bridge=bridge.name, exc_info=True)
        await self._broadcast_to_session(
            session_id, WebSocketEvent(type="ai_takeover", data={"sessionId": session_id, "reason": reason})
        )

    async def announce_edit(self, message: Message, author: str | None) -> None:
        """An operator's edit, already stored: to the team's chats (the SDK's edit hooks) and the widget."""
        session = await self.storage.get_session(message.session_id)
        if session is not None:
            # The SDK's hooks label an edit with the visitor's name; the platform bridges use this one instead.
            labelled = message.model_copy(update={"metadata": {**(message.metadata or {}), "operatorName": author}})
            await self._sync_edit_to_bridges(labelled, session)
        edited_at = message.edited_at.isoformat() if message.edited_at else None
        data = {"messageId": message.id, "content": message.content, "editedAt": edited_at}
        await self._broadcast_to_session(message.session_id, WebSocketEvent(type="message_edited", data=data))

    async def announce_delete(self, message: Message) -> None:
        """An operator's deletion, already stored (soft, as the SDK deletes): to the team's chats and the widget."""
        session = await self.storage.get_session(message.session_id)
        if session is not None:
            await self._sync_delete_to_bridges(message, session)
        deleted_at = message.deleted_at.isoformat() if message.deleted_at else None
        data = {"messageId": message.id, "deletedAt": deleted_at}
        await self._broadcast_to_session(message.session_id, WebSocketEvent(type="message_deleted", data=data))

    async def show_system_messages(self, created: list[str], edited: list[str]) -> None:
        """Push stored system messages to their widgets, as ``GET /messages`` shows them: new ones as ``message``,
        changed ones as ``message_edited``. Published once (a widget that missed it reads it on its next poll)."""
        ids = created + edited
        if not ids:
            return
        changed = set(edited)
        async with self.engine.connect() as conn:
            rows = list(await conn.execute(sa.select(*MESSAGE_COLUMNS).where(message_t.c.id.in_(ids))))
        for row in rows:
            message = row_to_message(row)
            if message.id in changed:
                edited_at = message.edited_at.isoformat() if message.edited_at else None
                data = {"messageId": message.id, "content": message.content, "editedAt": edited_at}
                event = WebSocketEvent(type="message_edited", data=data)
            else:
                event = WebSocketEvent(type="message", data=message.model_dump(by_alias=True))
            self._publisher.post(_envelope(message.session_id, event.model_dump_json(by_alias=True)))
        await self._publisher.join()

    async def ask_for_rating(self, session_id: str, requested_at: str) -> None:
        """Push ``csat_request`` to the visitor's widget (the conversation is already marked as asked)."""
        event = WebSocketEvent(type="csat_request", data={"requestedAt": requested_at})
        await self._broadcast_to_session(session_id, event)

    async def ask_for_screenshot(self, session_id: str, request: dict[str, Any]) -> None:
        """Push ``screenshot_request`` to the visitor's widget (the request is already stored)."""
        await self._broadcast_to_session(session_id, WebSocketEvent(type="screenshot_request", data=request))

    def _platform_message_id(self, bridge: Bridge, bridge_ids: BridgeMessageIds) -> str | int | None:
        if self.hooks.reads_own_message_ids(bridge):
            return bridge.name  # any id: the SDK only calls a bridge's edit and delete hooks with one
        return super()._platform_message_id(bridge, bridge_ids)

    # Protocol handlers that need Switchboard's view ---------------------------------------

    async def handle_connect(self, request: ConnectRequest) -> SwitchboardConnectResponse:
        """The SDK's connect, then the team chosen by the rules (unless placed already) and its greeting."""
        response = await super().handle_connect(request)
        async with self.engine.begin() as conn:
            await self.hooks.choose_team(conn, response.session_id)
            greeting = await self.hooks.greeting(conn, response.session_id)
        return SwitchboardConnectResponse.model_validate(
            {
                **response.model_dump(),
                "operator_online": greeting.availability.online,
                "ai_enabled": greeting.availability.ai_enabled,
                "welcome_message": greeting.welcome,
                "operator_name": greeting.operator_name,
                "outside_hours": greeting.outside_hours,
                "opens_at": greeting.opens_at,
            }
        )

    async def handle_csat(self, request: CsatRequest) -> CsatResponse:
        """The visitor's rating, stored once: a second answer changes nothing (``alreadyRated``, as the SDK
        answers it); the team's chats hear of a new one as the SDK tells its bridges."""
        comment = (request.comment or "").strip() or None
        async with self.engine.begin() as conn:
            rated = await self.hooks.rated(conn, request.session_id, request.score, comment)
        if rated is None:
            raise ValueError("Session not found")
        if not rated:
            return CsatResponse(ok=True, already_rated=True)
        session = await self.storage.get_session(request.session_id)
        if session is not None:
            await self._notify_bridges_csat(session, request.score, comment)
            if self.on_csat_callback:
                result = self.on_csat_callback(session, {"score": request.score, "comment": comment})
                if asyncio.iscoroutine(result):
                    await result
        return CsatResponse(ok=True)

    async def handle_identify(self, request: IdentifyRequest) -> IdentifyResponse:
        """The SDK's identify; a new identity may make the rules choose another team for a session not placed yet."""
        response = await super().handle_identify(request)
        async with self.engine.begin() as conn:
            await self.hooks.choose_team(conn, request.session_id)
        return response

    async def handle_typing(self, request: TypingRequest) -> dict[str, bool]:
        """Typing to the session's sockets, as the SDK does; the visitor's also to the operator event stream."""
        await super().handle_typing(request)
        if request.sender is Sender.VISITOR:
            await self.storage.record_typing(request.session_id, request.is_typing)
        return {"ok": True}

    async def operator_typing(self, session_id: str, is_typing: bool) -> None:
        """Tell the visitor's widget that an operator is (no longer) typing."""
        await super().handle_typing(TypingRequest(session_id=session_id, sender=Sender.OPERATOR, is_typing=is_typing))

    async def handle_read(self, request: ReadRequest) -> ReadResponse:
        """The visitor's receipts: stored in one statement (a message read stays read), to the session's sockets
        and the bridges as the SDK tells them; ``updated`` counts the messages that changed."""
        if len(request.message_ids) > MAX_RECEIPT_IDS:
            raise field_invalid("messageIds", f"at most {MAX_RECEIPT_IDS} message ids per receipt")
        changed, at = await self.storage.record_receipts(
            request.session_id, request.status, message_ids=request.message_ids
        )
        if changed:
            await self._announce_receipts(request.session_id, changed, request.status, at)
            session = await self.storage.get_session(request.session_id)
            if session is not None:
                await self._notify_bridges_read(request.session_id, changed, request.status, session)
        return ReadResponse(updated=len(changed))

    async def read_by_operator(self, session_id: str, operator_id: uuid.UUID) -> tuple[list[str], datetime]:
        """An operator saw the conversation: the visitor's messages are read, and the widget shows it."""
        changed, at = await self.storage.record_receipts(session_id, MessageStatus.READ, operator_id=operator_id)
        if changed:
            await self._announce_receipts(session_id, changed, MessageStatus.READ, at)
        return changed, at

    async def _announce_receipts(
        self, session_id: str, message_ids: list[str], status: MessageStatus, at: datetime
    ) -> None:
        """The widget's ``read`` event, shaped as the SDK sends it."""
        data: dict[str, Any] = {"sessionId": session_id, "messageIds": message_ids, "status": status.value}
        if status in (MessageStatus.DELIVERED, MessageStatus.READ):
            data["deliveredAt"] = at.isoformat()
        if status is MessageStatus.READ:
            data["readAt"] = at.isoformat()
        await self._broadcast_to_session(session_id, WebSocketEvent(type="read", data=data))

    async def handle_disconnect(self, session_id: str, duration: int | None, reason: str | None) -> None:
        """Record that the visitor left and tell the bridges (the SDK has no handler for this)."""
        await self.storage.mark_visitor_left(session_id)
        session = await self.storage.get_session(session_id)
        if session is None:
            return
        text = f"Visitor left after {duration} s" if duration is not None else "Visitor left"
        for bridge in self.bridges:
            try:
                await bridge.notify_disconnect(session, text)
            except Exception:
                log.warning("bridge failed on disconnect", bridge=bridge.name, exc_info=True)

    async def handle_presence(self, session_id: str | None = None) -> PresenceResponse:  # type: ignore[override]
        """Whether the session's team (without one: the default team) has someone online, and its AI."""
        async with self.engine.connect() as conn:
            available = await self.hooks.availability(conn, session_id)
        if available is None:
            raise ValueError("Session not found")
        return PresenceResponse(
            online=available.online, ai_enabled=available.ai_enabled, ai_active_after=available.ai_active_after
        )
