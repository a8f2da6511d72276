"""CSAT: a rating asked for when a conversation of a team with ``csat_enabled`` closes, and given once.

The rating lives in the conversation's ``csat`` column in the SDK's ``SessionCsat`` shape (``pending``,
``requested_at``, ``score``, ``comment``, ``responded_at``) and is written here only, never from a session
the SDK read earlier. ``csat_operator_id`` is who it counts for: the assignee when the conversation closed.
Asking is a ``csat_request`` timer due at once: its trigger is enqueued after the close commits, and the
worker that fires it pushes ``csat_request`` to the widget (``ask_owed``).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from service.events import record_event
from service.timers.services import CSAT_REQUEST, schedule_timer

RATED = "conversation.rated"

# A conversation already rated is never asked again; one asked before and not rated is asked again.
_ASK = sa.text(
    """
    UPDATE conversation c
    SET csat = jsonb_build_object('pending', true, 'requested_at', now()), csat_operator_id = :operator_id
    FROM team t
    WHERE c.id = :id AND t.id = c.team_id AND t.csat_enabled AND (c.csat ->> 'responded_at') IS NULL
    RETURNING c.id
    """
)
_PENDING = sa.text(
    """
    SELECT csat ->> 'requested_at' FROM conversation
    WHERE id = :id AND (csat ->> 'pending')::boolean AND (csat ->> 'responded_at') IS NULL
    """
)
_LOCK = sa.text(
    "SELECT team_id, csat_operator_id, csat ->> 'requested_at' AS requested_at, "
    "(csat ->> 'responded_at') IS NOT NULL AS rated FROM conversation WHERE id = :id FOR UPDATE"
)
# A session without a rating holds JSON null (how the SDK's None is stored), not an object to add to.
_RATE = sa.text(
    """
    UPDATE conversation
    SET csat = jsonb_strip_nulls(CASE jsonb_typeof(csat) WHEN 'object' THEN csat ELSE '{}' END || jsonb_build_object(
        'pending', false, 'score', CAST(:score AS int), 'comment', CAST(:comment AS text), 'responded_at', now()))
    WHERE id = :id
    RETURNING csat ->> 'responded_at'
    """
)


@dataclass(frozen=True)
class RatingAsk:
    """A ``csat_request`` the widget is owed, once the transaction that fired its timer has committed."""

    conversation_id: str
    requested_at: str


async def ask_on_close(conn: AsyncConnection, conversation_id: str, operator_id: uuid.UUID | None) -> None:
    """In the closing transaction: if the team asks for ratings and none was given, ask, for ``operator_id``."""
    asked = await conn.scalar(_ASK, {"id": conversation_id, "operator_id": operator_id})
    if asked is not None:
        await schedule_timer(conn, CSAT_REQUEST, conversation_id, datetime.now(UTC))


async def ask_owed(conn: AsyncConnection, conversation_id: str) -> RatingAsk | None:
    """When the timer fires: the ask still to push, unless the visitor has answered meanwhile."""
    requested_at = await conn.scalar(_PENDING, {"id": conversation_id})
    return None if requested_at is None else RatingAsk(conversation_id, requested_at)


async def rate(conn: AsyncConnection, conversation_id: str, score: int, comment: str | None) -> bool | None:
    """Store the visitor's rating once, with its ``conversation.rated`` event; False when already rated,
    None when there is no such conversation. A rating nobody asked for is kept too, and counts for nobody."""
    row = (await conn.execute(_LOCK, {"id": conversation_id})).first()
    if row is None:
        return None
    if row.rated:
        return False
    rated_at = await conn.scalar(_RATE, {"id": conversation_id, "score": score, "comment": comment})
    operator_id = row.csat_operator_id
    await record_event(
        conn,
        RATED,
        team_id=row.team_id,
        conversation_id=conversation_id,
        operator_ids=[operator_id] if operator_id else [],
        data={
            "conversationId": conversation_id,
            "score": score,
            "comment": comment,
            "operatorId": str(operator_id) if operator_id else None,
            "requestedAt": row.requested_at,
            "ratedAt": rated_at,
        },
    )
    return True
