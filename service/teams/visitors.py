"""What a visitor's widget learns of the team it deals with: welcome message, assignee, availability and AI."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from service.gateway.hooks import Availability, Greeting

# The team a visitor deals with: the conversation's, else the one the routing rules chose at connect,
# else the default team (``c`` may be no row at all: then the default team).
_VISITOR_TEAM = "coalesce(c.team_id, c.selected_team_id, (SELECT d.id FROM team d WHERE d.is_default))"

# One round trip: the team's welcome and AI, whether a member is online as routing sees it (online, not
# deactivated; away takes no new work), and the assignee while assigned; ``found``: the session exists.
_VISITOR_VIEW = sa.text(
    f"""
    SELECT t.welcome_message AS welcome, coalesce(t.ai_enabled, false) AS ai_enabled,
           t.ai_takeover_delay_seconds AS ai_delay,
           EXISTS (SELECT 1 FROM team_member m JOIN operator o ON o.id = m.operator_id
                   WHERE m.team_id = t.id AND o.status = 'online' AND o.deactivated_at IS NULL) AS online,
           (SELECT o.display_name FROM operator o
            WHERE o.id = c.assignee_id AND c.status = 'assigned') AS operator_name,
           c.id IS NOT NULL AS found
    FROM (SELECT 1) AS one
    LEFT JOIN conversation c ON c.id = :id
    LEFT JOIN team t ON t.id = {_VISITOR_TEAM}
    """
)

_TEAM_SESSIONS = sa.text(
    f"SELECT c.id FROM conversation c WHERE c.id = ANY(CAST(:ids AS text[])) AND {_VISITOR_TEAM} = :team_id"
)


async def _view(conn: AsyncConnection, conversation_id: str | None) -> Any:
    return (await conn.execute(_VISITOR_VIEW, {"id": conversation_id})).one()


def _availability(row: Any) -> Availability:
    return Availability(
        online=row.online, ai_enabled=row.ai_enabled, ai_active_after=row.ai_delay if row.ai_enabled else None
    )


async def greeting(conn: AsyncConnection, conversation_id: str) -> Greeting:
    """What the widget shows a visitor on connect: the team's welcome, the assignee's name, who can answer."""
    row = await _view(conn, conversation_id)
    return Greeting(welcome=row.welcome, operator_name=row.operator_name, availability=_availability(row))


async def availability(conn: AsyncConnection, conversation_id: str | None) -> Availability | None:
    """The visitor's team's availability; without a session the default team's; None for an unknown session."""
    row = await _view(conn, conversation_id)
    if conversation_id is not None and not row.found:
        return None
    return _availability(row)


async def team_sessions(conn: AsyncConnection, team_id: uuid.UUID, conversation_ids: Sequence[str]) -> list[str]:
    """Which of these conversations' visitors deal with the team."""
    if not conversation_ids:
        return []
    result = await conn.execute(_TEAM_SESSIONS, {"ids": list(conversation_ids), "team_id": team_id})
    return list(result.scalars())
