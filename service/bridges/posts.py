"""What a conversation's team chats are to hear (messages, edits, the AI taking over, the visitor leaving), posted
by a worker through the outbox: never inside the request that caused it, in order per conversation, retried.

Every process's hub has the ``PostQueue`` bridge: its SDK hooks add a ``bridge_post`` row (one statement, nothing
when the conversation's team has no chat bridge enabled). Visitor messages get theirs from the ingest statement
itself (service/gateway/bridge.py), in the transaction that stores them. A worker delivers a row by running the
hook on the ``TeamBridge`` together with every other undelivered row of the same conversation, oldest first,
under a lock per conversation: a later post never overtakes an earlier one, whichever worker has which row.
"""

from __future__ import annotations

import contextlib
import json
from typing import Any

import sqlalchemy as sa
import structlog
from arq.connections import ArqRedis
from pocketping.bridges import Bridge
from pocketping.models import CustomEvent, Message, Session
from redis.exceptions import LockError
from sqlalchemy.ext.asyncio import AsyncEngine

from service.bridges.dispatch import NAME, TeamBridge
from service.db.tables import conversation_t, message_t, outbox_t
from service.gateway.bridge import BRIDGE_POST, TEAM_BRIDGED, enqueue_post
from service.gateway.storage import MESSAGE_COLUMNS, row_to_message, row_to_session
from service.outbox import Delivery, DeliveryFailed, Done

log = structlog.get_logger(__name__)

# A post the platforms keep refusing is given up after this many tries (the later ones then go ahead).
MAX_ATTEMPTS = 10

_QUEUE = sa.text(
    f"""
    INSERT INTO outbox (kind, payload)
    SELECT '{BRIDGE_POST}', CAST(:payload AS jsonb) WHERE {TEAM_BRIDGED.format(conversation=":conversation")}
    RETURNING id
    """
)
# One worker at a time posts a conversation's rows, under a Redis lock renewed after each post (a killed
# worker's lock ends this long after its last post).
LOCK_SECONDS = 60
_PENDING = sa.text(
    f"""
    SELECT id, payload FROM outbox
    WHERE kind = '{BRIDGE_POST}' AND delivered_at IS NULL AND dead_at IS NULL
      AND payload ->> 'conversationId' = :conversation
    ORDER BY id
    """
)


def reads_own_message_ids(bridge: Bridge) -> bool:
    """The team chats' bridge looks each platform's message id up itself (edits, deletes): the SDK must call
    its edit and delete hooks although it has no id to give."""
    return isinstance(bridge, PostQueue)


class PostQueue(Bridge):
    """The hub's bridge for the team chats: each hook becomes a ``bridge_post`` outbox row for a worker."""

    def __init__(self, engine: AsyncEngine, arq: ArqRedis) -> None:
        self._engine = engine
        self._arq = arq

    @property
    def name(self) -> str:
        return NAME

    async def _queue(self, conversation_id: str, hook: str, **values: Any) -> None:
        payload = {"conversationId": conversation_id, "hook": hook, **values}
        async with self._engine.begin() as conn:
            outbox_id = await conn.scalar(_QUEUE, {"payload": json.dumps(payload), "conversation": conversation_id})
        if outbox_id is not None:
            await enqueue_post(self._arq, outbox_id)

    async def on_visitor_message(self, message: Message, session: Session) -> None:
        """Queued with the message, by the statement that stored it."""

    async def on_operator_message(
        self, message: Message, session: Session, source_bridge: str | None = None, operator_name: str | None = None
    ) -> None:
        await self._queue(
            session.id, "operator_message", messageId=message.id, sourceBridge=source_bridge, operatorName=operator_name
        )

    async def on_message_edit(self, message: Message, session: Session, platform_message_id: Any = None) -> None:
        # The hub labels an operator's edit with the operator's name; the worker's copy must carry it too.
        author = (message.metadata or {}).get("operatorName")
        await self._queue(session.id, "message_edit", messageId=message.id, operatorName=author)

    async def on_message_delete(self, message: Message, session: Session, platform_message_id: Any = None) -> None:
        await self._queue(session.id, "message_delete", messageId=message.id)

    async def on_ai_takeover(self, session: Session, reason: str) -> None:
        await self._queue(session.id, "ai_takeover", reason=reason)

    async def notify_disconnect(self, session: Session, message: str) -> None:
        await self._queue(session.id, "disconnect", text=message)

    async def on_identity_update(self, session: Session) -> None:
        await self._queue(session.id, "identity")

    async def on_custom_event(self, event: CustomEvent, session: Session) -> None:
        await self._queue(session.id, "custom_event", event=event.model_dump(mode="json", by_alias=True))


async def deliver(engine: AsyncEngine, arq: ArqRedis, team_bridge: TeamBridge, delivery: Delivery) -> Done:
    """Post the conversation's undelivered rows, oldest first, this one among them, until none is left.

    Another worker posting the conversation now posts this one too: this try fails, and its retry finds it
    posted. The lock is Redis's, not a database connection held: the holder needs
    the pool's connections to post, and waiters holding them would starve it.
    """
    conversation_id = delivery.payload["conversationId"]
    lock = arq.lock(f"{arq.default_queue_name}:bridge-post:{conversation_id}", timeout=LOCK_SECONDS, blocking=False)
    if not await lock.acquire():
        raise DeliveryFailed("another worker is posting this conversation", tried=False)
    try:
        while rows := await _pending(engine, conversation_id):
            for row in rows:
                await _run(engine, team_bridge, row.payload)
                # Marked at once (this one too, which the outbox marks again): a failure further on must not
                # have it posted a second time.
                async with engine.begin() as conn:
                    await conn.execute(
                        sa.update(outbox_t).where(outbox_t.c.id == row.id).values(delivered_at=sa.func.now())
                    )
                await lock.reacquire()  # the lease runs from the last post
    finally:
        with contextlib.suppress(LockError):  # expired meanwhile: nothing to let go
            await lock.release()
    return Done("posted")


async def _pending(engine: AsyncEngine, conversation_id: str) -> list[Any]:
    """The conversation's undelivered, not given up rows, oldest first (rows added while posting included)."""
    async with engine.connect() as conn:
        return list((await conn.execute(_PENDING, {"conversation": conversation_id})).all())


async def _run(engine: AsyncEngine, team_bridge: TeamBridge, payload: dict[str, Any]) -> None:
    """One hook on the team bridge, with the session and message as they are stored now."""
    async with engine.connect() as conn:
        conversation = (
            await conn.execute(sa.select(conversation_t).where(conversation_t.c.id == payload["conversationId"]))
        ).first()
        message = None
        if "messageId" in payload:
            found = (
                await conn.execute(sa.select(*MESSAGE_COLUMNS).where(message_t.c.id == payload["messageId"]))
            ).first()
            message = row_to_message(found) if found is not None else None
    if conversation is None or ("messageId" in payload and message is None):
        return  # deleted since
    session = row_to_session(conversation)
    hook = payload["hook"]
    if hook == "visitor_message":
        await team_bridge.on_visitor_message(message, session)  # type: ignore[arg-type]
    elif hook == "operator_message":
        await team_bridge.on_operator_message(
            message,  # type: ignore[arg-type]
            session,
            payload.get("sourceBridge"),
            payload.get("operatorName"),
        )
    elif hook == "message_edit":
        assert message is not None
        if author := payload.get("operatorName"):
            message = message.model_copy(update={"metadata": {**(message.metadata or {}), "operatorName": author}})
        await team_bridge.on_message_edit(message, session)
    elif hook == "message_delete":
        await team_bridge.on_message_delete(message, session)  # type: ignore[arg-type]
    elif hook == "ai_takeover":
        await team_bridge.on_ai_takeover(session, payload["reason"])
    elif hook == "disconnect":
        await team_bridge.notify_disconnect(session, payload["text"])
    elif hook == "identity":
        await team_bridge.on_identity_update(session)
    elif hook == "custom_event":
        await team_bridge.on_custom_event(CustomEvent.model_validate(payload["event"]), session)
    else:
        raise ValueError(f"unknown bridge hook {hook!r}")
