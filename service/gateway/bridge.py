"""The seam between the widget and routing: a PocketPing bridge that turns visitor activity into routing work."""

from __future__ import annotations

import asyncio
from typing import Any

import asyncpg.exceptions
import sqlalchemy as sa
import structlog
from arq.connections import ArqRedis
from pocketping.bridges import Bridge
from pocketping.models import Message, Session
from sqlalchemy.dialects.postgresql import asyncpg as asyncpg_dialect
from sqlalchemy.ext.asyncio import AsyncEngine

from service import metrics
from service.batching import Batcher
from service.db.tables import message_t
from service.gateway.storage import CREATED_COLUMNS, message_created
from service.queue import Trigger, enqueue_delivery, enqueue_route, enqueue_trigger
from service.sla.clocks import NEXT_RESPONSE_CTES
from service.timers.services import upsert_timers

log = structlog.get_logger(__name__)

# The outbox kind of a post to the conversation's team chats, delivered by service/bridges/posts.py; visitor
# messages get theirs from the statement that stores them, so the widget's answer waits for no chat platform.
BRIDGE_POST = "bridge_post"
# Whether conversation ``{conversation}``'s team has a chat bridge enabled.
TEAM_BRIDGED = """EXISTS (SELECT 1 FROM conversation bc JOIN team bt ON bt.id = bc.team_id
                          CROSS JOIN LATERAL jsonb_each(bt.bridge_settings) AS b
                          WHERE bc.id = {conversation} AND (b.value ->> 'enabled')::boolean)"""


async def enqueue_post(arq: ArqRedis, outbox_id: int) -> None:
    """Trigger a committed ``bridge_post`` row's delivery; a lost trigger is the sweep's."""
    try:
        await enqueue_delivery(arq, outbox_id)
    except Exception:
        log.warning("bridge post not enqueued; the sweep will", outbox_id=outbox_id, exc_info=True)


# Visitor messages in one statement per batch: lock the batch's conversations (in id order,
# so concurrent batches cannot deadlock), keep their *old* routing state for the decision,
# touch activity and, where nobody is on the conversation yet (or it was closed), start the
# wait at its first message in the batch and bump the routing revision; then insert the
# messages of the conversations found, in arrival order (WITH ORDINALITY), so ``seq`` follows it,
# with their ``message.created`` events (to the team and assignee as they were before this batch).
# Routed conversations of a team with AI on (and not paused) get their AI-takeover timer (re)armed
# from the latest message: the team's delay, or none when the AI already answers (AI mode); new
# ones are armed by the routing job once they have a team. A next-response SLA clock waiting for the
# visitor starts, and the conversation's ``sla`` timer is moved to now for the worker to compute it.
# The timer and event parts come from the builders every other writer of those rows uses, rendered
# into this statement once, at import.
_ARM_AI = upsert_timers(
    "SELECT 'ai_takeover', t.id, "
    "t.at + make_interval(secs => CASE WHEN t.ai_active THEN 0 ELSE team.ai_takeover_delay_seconds END) "
    "FROM touched t JOIN team ON team.id = t.team_id "
    "WHERE team.ai_enabled AND NOT t.ai_paused AND t.status <> 'new'"
)
_ANNOUNCE = message_created(sa.table("stored", *(sa.column(c.name) for c in CREATED_COLUMNS))).compile(
    dialect=asyncpg_dialect.dialect(), compile_kwargs={"literal_binds": True}
)
_INGEST_VISITOR_MESSAGES = f"""
WITH incoming AS (
    SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::timestamptz[], $5::text[])
        WITH ORDINALITY AS m(id, conversation_id, content, created_at, reply_to, ord)
), latest AS (
    SELECT conversation_id, min(created_at) AS first_at, max(created_at) AS at FROM incoming GROUP BY conversation_id
), old AS (
    SELECT c.id, (c.status = 'closed' OR (c.status = 'new' AND c.waiting_since IS NULL)) AS needs_routing
    FROM conversation c JOIN latest ON latest.conversation_id = c.id
    ORDER BY c.id FOR UPDATE OF c
), touched AS (
    UPDATE conversation AS c SET
        last_activity = greatest(c.last_activity, latest.at),
        last_visitor_message_at = latest.at,
        status = CASE WHEN old.needs_routing THEN 'new' ELSE c.status END,
        closed_at = CASE WHEN old.needs_routing THEN NULL ELSE c.closed_at END,
        waiting_since = CASE WHEN old.needs_routing THEN latest.first_at ELSE c.waiting_since END,
        routing_revision = c.routing_revision + CASE WHEN old.needs_routing THEN 1 ELSE 0 END
    FROM old JOIN latest ON latest.conversation_id = old.id
    WHERE c.id = old.id
    RETURNING c.id, c.routing_revision, old.needs_routing, c.team_id, c.status, c.ai_active, c.ai_paused, latest.at
), ai AS ({_ARM_AI}), {NEXT_RESPONSE_CTES}, stored AS (
    INSERT INTO message (id, conversation_id, sender, content, created_at, reply_to)
    SELECT m.id, m.conversation_id, 'visitor', m.content, m.created_at, m.reply_to
    FROM incoming m WHERE m.conversation_id IN (SELECT id FROM touched)
    ORDER BY m.ord
    RETURNING {", ".join(c.name for c in CREATED_COLUMNS)}
), announced AS ({_ANNOUNCE}), posts AS (
    INSERT INTO outbox (kind, payload)
    SELECT '{BRIDGE_POST}',
           jsonb_build_object('conversationId', s.conversation_id, 'hook', 'visitor_message', 'messageId', s.id)
    FROM stored s WHERE {TEAM_BRIDGED.format(conversation="s.conversation_id")}
    ORDER BY s.seq
    RETURNING id, payload ->> 'conversationId' AS conversation_id
)
SELECT touched.id, touched.routing_revision, touched.needs_routing,
       ai.id AS timer_id, ai.revision AS timer_revision, ai.due_at AS timer_due_at,
       sla_timer.id AS sla_timer_id, sla_timer.revision AS sla_timer_revision, sla_timer.due_at AS sla_timer_due_at,
       ARRAY(SELECT p.id FROM posts p WHERE p.conversation_id = touched.id ORDER BY p.id) AS posts
FROM touched LEFT JOIN ai ON ai.subject = touched.id LEFT JOIN sla_timer ON sla_timer.subject = touched.id
"""


# A connection that died under a statement already sent (reset, closed by the server, cut by the network).
_CONNECTION_LOST = (OSError, asyncpg.exceptions.ConnectionDoesNotExistError)


class SessionNotFound(ValueError):
    """The message names a session that does not exist (the SDK's wording, so it maps to 404)."""

    def __init__(self) -> None:
        super().__init__("Session not found")


class RoutingBridge(Bridge):
    """Stores visitor messages and asks for routing when a visitor first needs help.

    It is the first stop of every visitor message: ``ingest`` writes the message row, the
    session's activity and the routing mark together, group-committed with the messages
    that arrive meanwhile (one statement per batch, not three per message), and enqueues
    ``route_conversation`` for the conversations it marked. A session by itself (a page
    view) is not routed: it would take an operator's capacity for nobody. The other
    bridges hear about the message afterwards, through the SDK's usual hook.
    """

    def __init__(self, engine: AsyncEngine, arq: ArqRedis, max_batch: int = 256) -> None:
        # A single statement: autocommit saves the BEGIN/COMMIT round trips.
        self._engine = engine.execution_options(isolation_level="AUTOCOMMIT")
        self._arq = arq
        self._batcher: Batcher[Message, None] = Batcher(self._write, max_size=max_batch)

    @property
    def name(self) -> str:
        return "switchboard-routing"

    async def on_new_session(self, session: Session) -> None:
        log.info("session started", conversation_id=session.id, visitor_id=session.visitor_id)

    async def ingest(self, message: Message) -> None:
        """Store one visitor message and mark its conversation for routing; ``SessionNotFound`` if none.

        Where the conversation's team has a chat bridge enabled, its post is queued with the message.
        """
        return await self._batcher.submit(message)

    async def _insert(self, messages: list[Message]) -> list[Any]:
        """The one statement of a batch (autocommit: it commits as a whole, or not at all)."""
        async with self._engine.connect() as conn:
            raw = await conn.get_raw_connection()
            return await raw.driver_connection.fetch(  # type: ignore[no-any-return, union-attr]
                _INGEST_VISITOR_MESSAGES,
                [m.id for m in messages],
                [m.session_id for m in messages],
                [m.content for m in messages],
                [m.timestamp for m in messages],
                [m.reply_to for m in messages],
            )

    async def _stored(self, message_id: str) -> bool:
        async with self._engine.connect() as conn:
            return bool(await conn.scalar(sa.select(sa.exists().where(message_t.c.id == message_id))))

    async def _write(self, messages: list[Message]) -> list[BaseException | None]:
        metrics.observe_ingest_batch(len(messages))
        try:
            rows = await self._insert(messages)
        except _CONNECTION_LOST:
            # Lost with the statement sent: it may have committed. Our ids say which (one statement: all or none);
            # when it did, the answer is 200 and the sweep routes them (no retry stores a second copy). When
            # this check fails too, the error stands: 503, and a retry may store the message again.
            if not await self._stored(messages[0].id):
                raise
            log.warning("ingest answer lost after its commit; the sweep routes", messages=len(messages))
            return [None] * len(messages)
        await asyncio.gather(
            *(self._enqueue(row["id"], row["routing_revision"]) for row in rows if row["needs_routing"]),
            *(
                self._arm(Trigger(row["timer_id"], row["timer_revision"], row["timer_due_at"]))
                for row in rows
                if row["timer_id"] is not None
            ),
            *(
                self._arm(Trigger(row["sla_timer_id"], row["sla_timer_revision"], row["sla_timer_due_at"]))
                for row in rows
                if row["sla_timer_id"] is not None
            ),
            *(enqueue_post(self._arq, outbox_id) for row in rows for outbox_id in row["posts"]),
        )
        found = {row["id"] for row in rows}
        return [None if m.session_id in found else SessionNotFound() for m in messages]

    async def _arm(self, trigger: Trigger) -> None:
        try:
            await enqueue_trigger(self._arq, trigger)
        except Exception:
            # The row is committed: the sweep fires it once it is overdue.
            log.warning("timer trigger not enqueued; sweep will", timer_id=trigger.timer_id, exc_info=True)

    async def _enqueue(self, conversation_id: str, revision: int) -> None:
        try:
            await enqueue_route(self._arq, conversation_id, revision, trigger="visitor_message")
        except Exception:
            # The periodic sweep re-enqueues conversations whose job never reached Redis.
            log.warning("routing job not enqueued; sweep will retry", conversation_id=conversation_id, exc_info=True)
