"""What a visitor's widget learns of the team it deals with: welcome message, assignee, availability and AI, and
outside business hours the team's offline message and when it answers."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from service.gateway.hooks import Availability, Greeting
from service.hours import calendar, clock
from service.hours.services import schedule_of

# Said while the team is closed when it has no offline message of its own; ``{opensAt}`` is replaced in both.
DEFAULT_OFFLINE_MESSAGE = "We are away right now. We will answer from {opensAt}."

# The team a visitor deals with: the conversation's, else the one the routing rules chose at connect,
# else the default team (``c`` may be no row at all: then the default team).
_VISITOR_TEAM = "coalesce(c.team_id, c.selected_team_id, (SELECT d.id FROM team d WHERE d.is_default))"

# One round trip: the team's welcome and AI, whether a member is online as routing sees it (online, not
# deactivated; away takes no new work), and the assignee while assigned; ``found``: the session exists.
_VISITOR_VIEW = sa.text(
    f"""
    SELECT t.welcome_message AS welcome, coalesce(t.ai_enabled, false) AS ai_enabled,
           t.ai_takeover_delay_seconds AS ai_delay, t.business_hours, t.offline_message,
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


def _closed(row: Any) -> tuple[bool, datetime | None]:
    """Whether the visitor's team is outside its hours now, and when it opens (None: open, or never again)."""
    schedule = schedule_of(row.business_hours)
    now = clock.now()
    if calendar.is_open(schedule, now):
        return False, None
    return True, calendar.next_opening(schedule, now)


def _availability(row: Any, closed: bool) -> Availability:
    return Availability(
        online=row.online and not closed,
        ai_enabled=row.ai_enabled,
        ai_active_after=row.ai_delay if row.ai_enabled else None,
    )


def local_time_text(at: datetime | None, time_zone: str) -> str:
    """An instant as a person of the team's time zone reads it: "Monday 7 December, 09:00 (Europe/Paris)"."""
    if at is None:
        return "later"
    local = at.astimezone(ZoneInfo(time_zone))
    return f"{local:%A} {local.day} {local:%B}, {local:%H:%M} ({time_zone})"


async def greeting(conn: AsyncConnection, conversation_id: str) -> Greeting:
    """What the widget shows a visitor on connect: the team's welcome (outside its hours: its offline message, saying
    when it answers), the assignee's name, who can answer."""
    row = await _view(conn, conversation_id)
    closed, opens_at = _closed(row)
    welcome = row.welcome
    if closed:
        text = local_time_text(opens_at, row.business_hours["timeZone"])
        welcome = (row.offline_message or DEFAULT_OFFLINE_MESSAGE).replace("{opensAt}", text)
    return Greeting(
        welcome=welcome,
        operator_name=row.operator_name,
        availability=_availability(row, closed),
        outside_hours=closed,
        opens_at=opens_at,
    )


async def availability(conn: AsyncConnection, conversation_id: str | None) -> Availability | None:
    """The visitor's team's availability (nobody online while it is closed); without a session the default team's;
    None for an unknown session."""
    row = await _view(conn, conversation_id)
    if conversation_id is not None and not row.found:
        return None
    return _availability(row, _closed(row)[0])


async def team_sessions(conn: AsyncConnection, team_id: uuid.UUID, conversation_ids: Sequence[str]) -> list[str]:
    """Which of these conversations' visitors deal with the team."""
    if not conversation_ids:
        return []
    result = await conn.execute(_TEAM_SESSIONS, {"ids": list(conversation_ids), "team_id": team_id})
    return list(result.scalars())
