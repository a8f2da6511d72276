"""The one PocketPing bridge Switchboard adds to the SDK: each hook goes to the bridges of the conversation's team.

A conversation gets a thread in its team's chat (Telegram forum topic, Slack thread, Discord
thread) when routing places it in the team (the worker's bridge relay calls ``open_threads``),
or at its next hook if that came first or the team's chat changed since; the opening posts
the messages so far. Every SDK hook (visitor message, operator reply, AI takeover, visitor
left, ...) is posted into that thread by the team's own bridges, and the platform message ids
are stored so that inbound replies map back. A conversation that moves to another team gets a
thread there; the old team's chat hears nothing more.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from functools import partial
from typing import Any

import sqlalchemy as sa
import structlog
from pocketping import PocketPing
from pocketping.bridges import Bridge
from pocketping.models import BridgeMessageResult, CustomEvent, Message, Session
from pocketping.storage import BridgeMessageIds
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from service.bridges.platforms import PlatformBridge, PlatformError, destination
from service.bridges.registry import BridgeRegistry, TeamBridges
from service.db.tables import message_t, operator_t, thread_t
from service.files import services as files
from service.gateway.storage import MESSAGE_COLUMNS, row_to_message, row_to_session

log = structlog.get_logger(__name__)
NAME = "switchboard-teams"
# Messages posted into a new thread: the latest ones the conversation already has.
CATCH_UP_MESSAGES = 20

_WHERE = sa.text(
    """
    SELECT c.team_id, t.bridge_settings,
           coalesce(jsonb_object_agg(bt.platform, bt.thread_ref) FILTER (WHERE bt.platform IS NOT NULL), '{}')
               AS threads
    FROM conversation c
    JOIN team t ON t.id = c.team_id
    LEFT JOIN bridge_thread bt ON bt.conversation_id = c.id AND bt.team_id = c.team_id
    WHERE c.id = :id
    GROUP BY c.team_id, t.bridge_settings
    """
)
# Opening a conversation's threads and posting into a thread still being opened take turns.
_LOCK = sa.text("SELECT pg_advisory_xact_lock(hashtext('bridge-thread'), hashtext(:id))")
_ID_COLUMN = {"telegram": "telegram_message_id", "discord": "discord_message_id", "slack": "slack_message_ts"}


def _ids(posted: dict[str, str]) -> BridgeMessageIds:
    telegram = posted.get("telegram")
    return BridgeMessageIds(
        telegram_message_id=int(telegram) if telegram else None,
        discord_message_id=posted.get("discord"),
        slack_message_ts=posted.get("slack"),
    )


async def _nothing() -> None:
    pass


def visitor_name(session: Session) -> str:
    """Who the visitor is, as the chats name them."""
    who = session.visitor_id[:8]
    if session.identity and (session.identity.name or session.identity.email):
        who = session.identity.name or session.identity.email or who
    return who


def thread_title(session: Session) -> str:
    """A thread's name in the team's chat: who the visitor is and where they are."""
    who = visitor_name(session)
    page = session.metadata.url if session.metadata and session.metadata.url else None
    return f"{who} · {page}" if page else who


class TeamBridge(Bridge):
    """Dispatches the SDK's bridge hooks to the bridges of the conversation's current team only."""

    def __init__(self, engine: AsyncEngine, registry: BridgeRegistry) -> None:
        self._engine = engine
        self.registry = registry
        self._pocketping: PocketPing | None = None

    @property
    def name(self) -> str:
        return NAME

    async def init(self, pocketping: PocketPing) -> None:
        self._pocketping = pocketping
        self.registry.pocketping = pocketping

    async def destroy(self) -> None:
        await self.registry.close()

    # Where a conversation's messages go ------------------------------------------------------

    async def _where(self, conn: AsyncConnection, conversation_id: str) -> tuple[TeamBridges, dict[str, str]] | None:
        row = (await conn.execute(_WHERE, {"id": conversation_id})).first()
        if row is None:
            return None  # no team yet: the thread opens, with these messages, once routing places it
        return await self.registry.team(row.team_id, row.bridge_settings), row.threads

    async def _post(
        self, conversation_id: str, call: Callable[[PlatformBridge], Awaitable[Any]], message_id: str | None = None
    ) -> None:
        """Run ``call`` on each team bridge inside the conversation's thread; store the ids of what it posted."""
        found = await self._destinations(conversation_id, message_id)
        if found is not None and any(platform not in found[1] for platform in found[0].bridges):
            try:
                await self.open_threads(conversation_id)  # the opening posts the messages so far
            except Exception:
                log.warning("bridge threads not opened", conversation_id=conversation_id, exc_info=True)
            found = await self._destinations(conversation_id, message_id)
        if found is None:
            return
        team, _, threads = found
        posted: dict[str, str] = {}
        failed: list[str] = []
        for platform, bridge in team.bridges.items():
            if platform not in threads:
                continue
            try:
                with destination(thread=threads[platform]) as sent:
                    await call(bridge)
            except Exception:
                log.warning("bridge call failed", platform=platform, conversation_id=conversation_id, exc_info=True)
                failed.append(platform)
                continue
            if sent:
                posted[platform] = sent[0]
        if posted and message_id is not None and self._pocketping is not None:
            await self._pocketping.storage.save_bridge_message_ids(message_id, _ids(posted))
        if failed:
            # Retried by the outbox (service/bridges/posts.py); a message is not posted twice where it went.
            raise PlatformError(f"not posted to {', '.join(failed)}")

    async def _destinations(
        self, conversation_id: str, message_id: str | None
    ) -> tuple[TeamBridges, dict[str, str], dict[str, str]] | None:
        """The team's bridges, the conversation's threads, and those of them that do not have this message yet
        (a thread's opening posted it, or an earlier try did); None while the conversation has no team."""
        async with self._engine.connect() as conn:
            where = await self._where(conn, conversation_id)
            if where is None:
                return None
            team, threads = where
            if message_id is None:
                return team, threads, threads
            columns = [message_t.c[name] for name in _ID_COLUMN.values()]
            row = (await conn.execute(sa.select(*columns).where(message_t.c.id == message_id))).first()
        to_post = {p: t for p, t in threads.items() if row is None or getattr(row, _ID_COLUMN[p]) is None}
        return team, threads, to_post

    # SDK hooks -------------------------------------------------------------------------------

    async def on_visitor_message(self, message: Message, session: Session) -> BridgeMessageResult | None:
        async def mirror(bridge: PlatformBridge) -> None:
            text = partial(bridge.on_visitor_message, message, session)
            await self._with_files(bridge, message, visitor_name(session), text)

        await self._post(session.id, mirror, message.id)
        return None  # the ids are stored per platform above; the SDK would file them under our name

    async def on_operator_message(
        self, message: Message, session: Session, source_bridge: str | None = None, operator_name: str | None = None
    ) -> None:
        # Each SDK bridge skips the message when it is its own source_bridge: no echo (of its files neither).
        async def mirror(bridge: PlatformBridge) -> None:
            if source_bridge == bridge.name:
                return
            text = partial(bridge.on_operator_message, message, session, source_bridge, operator_name)
            await self._with_files(bridge, message, operator_name or "Operator", text)

        await self._post(session.id, mirror, message.id)

    async def _with_files(
        self, bridge: PlatformBridge, message: Message, author: str, text: Callable[[], Awaitable[Any]]
    ) -> None:
        """The message's text (none for a files-only message: its first file's caption names the author), then
        each of its files as the platform takes them."""
        if message.content.strip() or not message.attachments:
            await text()
            caption: str | None = None
        else:
            caption = f"{author}:"
        for attachment in message.attachments or []:
            found = await files.read(self._engine, self.registry.files, attachment.id)
            if found is None:  # not a file Switchboard holds
                continue
            row, data = found
            await bridge.send_file(row.filename, row.mime_type, data, caption)
            caption = None

    async def on_message_edit(
        self, message: Message, session: Session, platform_message_id: str | int | None = None
    ) -> None:
        await self._each_posted(message, lambda bridge, posted: bridge.on_message_edit(message, session, posted))

    async def on_message_delete(
        self, message: Message, session: Session, platform_message_id: str | int | None = None
    ) -> None:
        await self._each_posted(message, lambda bridge, posted: bridge.on_message_delete(message, session, posted))

    async def _each_posted(self, message: Message, call: Callable[[PlatformBridge, str | int], Awaitable[Any]]) -> None:
        """Run ``call`` with each platform's id of the message (edits, deletes); the SDK passes none for us."""
        ids = await self._pocketping.storage.get_bridge_message_ids(message.id) if self._pocketping else None
        if ids is None:
            return
        posted = {"telegram": ids.telegram_message_id, "discord": ids.discord_message_id, "slack": ids.slack_message_ts}
        await self._post(
            message.session_id,
            lambda bridge: call(bridge, posted[bridge.name]) if posted.get(bridge.name) else _nothing(),
        )

    async def on_ai_takeover(self, session: Session, reason: str) -> None:
        await self._post(session.id, lambda bridge: bridge.on_ai_takeover(session, reason))

    async def notify_disconnect(self, session: Session, message: str) -> None:
        await self._post(session.id, lambda bridge: bridge.notify_disconnect(session, message))

    async def on_identity_update(self, session: Session) -> None:
        await self._post(session.id, lambda bridge: bridge.on_identity_update(session))

    async def on_custom_event(self, event: CustomEvent, session: Session) -> None:
        await self._post(session.id, lambda bridge: bridge.on_custom_event(event, session))

    # Threads ---------------------------------------------------------------------------------

    async def open_threads(self, conversation_id: str) -> list[str]:
        """Open the conversation's thread in each enabled chat of its current team that has none yet, and post
        the messages so far into it; returns the platforms opened. Safe to repeat and to run concurrently."""
        opened: list[str] = []
        async with self._engine.begin() as conn:
            await conn.execute(_LOCK, {"id": conversation_id})
            where = await self._where(conn, conversation_id)
            if where is None:
                return opened
            team, threads = where
            conversation = (
                await conn.execute(sa.text("SELECT * FROM conversation WHERE id = :id"), {"id": conversation_id})
            ).one()
            session = row_to_session(conversation)
            for platform, bridge in team.bridges.items():
                if platform in threads:
                    continue
                try:
                    async with conn.begin_nested():
                        thread = await bridge.open_thread(thread_title(session), session)
                        await conn.execute(
                            insert(thread_t).values(
                                conversation_id=conversation_id,
                                team_id=team.team_id,
                                platform=platform,
                                thread_ref=thread,
                            )
                        )
                        await self._catch_up(conn, platform, bridge, thread, session)
                except PlatformError:
                    # One chat refusing (a revoked token, a deleted chat) keeps none of the others waiting.
                    log.warning("bridge thread not opened", platform=platform, conversation_id=conversation_id)
                    continue
                opened.append(platform)
        if opened:
            log.info("bridge threads opened", conversation_id=conversation_id, platforms=opened)
        return opened

    async def _catch_up(
        self, conn: AsyncConnection, platform: str, bridge: PlatformBridge, thread: str, session: Session
    ) -> None:
        column = message_t.c[_ID_COLUMN[platform]]
        latest = (
            sa.select(*MESSAGE_COLUMNS, message_t.c.operator_id, operator_t.c.display_name.label("operator_name"))
            .select_from(message_t.outerjoin(operator_t, operator_t.c.id == message_t.c.operator_id))
            .where(
                message_t.c.conversation_id == session.id,
                message_t.c.sender != "system",
                message_t.c.deleted_at.is_(None),
                column.is_(None),
            )
            .order_by(message_t.c.seq.desc())
            .limit(CATCH_UP_MESSAGES)
        )
        for row in reversed((await conn.execute(latest)).all()):
            message = row_to_message(row)
            with destination(thread=thread) as sent:
                if row.sender == "visitor":
                    text = partial(bridge.on_visitor_message, message, session)
                    await self._with_files(bridge, message, visitor_name(session), text)
                else:
                    name = row.operator_name or ("AI" if row.sender == "ai" else None)
                    text = partial(bridge.on_operator_message, message, session, None, name)
                    await self._with_files(bridge, message, name or "Operator", text)
            if sent:
                value: Any = int(sent[0]) if platform == "telegram" else sent[0]
                await conn.execute(sa.update(message_t).where(message_t.c.id == row.id).values({column: value}))
