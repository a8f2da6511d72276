"""The seam between the widget and routing: a PocketPing bridge that turns visitor activity into routing work."""

from __future__ import annotations

import sqlalchemy as sa
import structlog
from arq.connections import ArqRedis
from pocketping.bridges import Bridge
from pocketping.models import BridgeMessageResult, Message, Session
from sqlalchemy.ext.asyncio import AsyncEngine

from service.routing.services import enqueue_route

log = structlog.get_logger(__name__)

# One statement: note the message and, when nobody is on the conversation yet (or it was
# closed), start its wait and bump the routing revision so exactly one routing job is current.
# The sub-select locks the row and keeps the *old* state for the decision.
_NOTE_VISITOR_MESSAGE = sa.text(
    """
    UPDATE conversation AS c SET
        last_visitor_message_at = :at,
        status = CASE WHEN old.needs_routing THEN 'new' ELSE c.status END,
        closed_at = CASE WHEN old.needs_routing THEN NULL ELSE c.closed_at END,
        waiting_since = CASE WHEN old.needs_routing THEN :at ELSE c.waiting_since END,
        routing_revision = c.routing_revision + CASE WHEN old.needs_routing THEN 1 ELSE 0 END
    FROM (
        SELECT id, (status = 'closed' OR (status = 'new' AND waiting_since IS NULL)) AS needs_routing
        FROM conversation WHERE id = :id FOR UPDATE
    ) AS old
    WHERE c.id = old.id
    RETURNING c.routing_revision, old.needs_routing
    """
)


class RoutingBridge(Bridge):
    """Asks for routing when a visitor first needs help, or comes back to a closed conversation.

    The SDK has already stored the session and the message when these hooks run. A session by
    itself (a page view) is not routed: it would take an operator's capacity for nobody.
    """

    def __init__(self, engine: AsyncEngine, arq: ArqRedis) -> None:
        # A single statement: autocommit saves the BEGIN/COMMIT round trips.
        self._engine = engine.execution_options(isolation_level="AUTOCOMMIT")
        self._arq = arq

    @property
    def name(self) -> str:
        return "switchboard-routing"

    async def on_new_session(self, session: Session) -> None:
        log.info("session started", conversation_id=session.id, visitor_id=session.visitor_id)

    async def on_visitor_message(self, message: Message, session: Session) -> BridgeMessageResult | None:
        async with self._engine.connect() as conn:
            row = (await conn.execute(_NOTE_VISITOR_MESSAGE, {"id": session.id, "at": message.timestamp})).first()
        if row is not None and row.needs_routing:
            try:
                await enqueue_route(self._arq, session.id, row.routing_revision, trigger="visitor_message")
            except Exception:
                # The periodic sweep re-enqueues conversations whose job never reached Redis.
                log.warning(
                    "routing job not enqueued; the sweep will retry",
                    conversation_id=session.id,
                    exc_info=True,
                )
        return None
