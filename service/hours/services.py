"""A team's business hours as stored on its row, and the ``hours_open`` timer that wakes its queue at each opening."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from service.db.tables import team_t
from service.hours import calendar, clock
from service.timers.services import HOURS_OPEN, cancel_timer, schedule_timer

# The routing audit's reason (routing_decision.reason) for what a closed team did with a conversation.
OUTSIDE_HOURS_REASON = "outside_hours"


@dataclass(frozen=True)
class TeamHours:
    """What a team does with its hours: when it is open, and what happens to new conversations when it is not."""

    schedule: calendar.Schedule
    outside_hours: str = "wait"
    overflow_team_id: uuid.UUID | None = None

    def is_open(self, at: datetime | None = None) -> bool:
        """Open at ``at`` (default: now, by the business-hours clock)."""
        return calendar.is_open(self.schedule, at or clock.now())


def schedule_of(document: dict[str, Any] | None) -> calendar.Schedule:
    """The stored ``business_hours`` JSON as a calendar (null: open 24/7)."""
    return calendar.ALWAYS_OPEN if document is None else calendar.parse_schedule(document)


_HOURS_COLUMNS = (team_t.c.business_hours, team_t.c.outside_hours, team_t.c.outside_hours_team_id)


async def team_hours(conn: AsyncConnection, team_id: uuid.UUID) -> TeamHours | None:
    """The team's hours and outside-hours behaviour; None for a team that does not exist."""
    row = (await conn.execute(sa.select(*_HOURS_COLUMNS).where(team_t.c.id == team_id))).first()
    if row is None:
        return None
    return TeamHours(schedule_of(row.business_hours), row.outside_hours, row.outside_hours_team_id)


async def team_schedule(conn: AsyncConnection, team_id: uuid.UUID) -> calendar.Schedule:
    """The team's calendar (24/7 for a team without hours, or no such team): what SLA clocks measure in."""
    hours = await team_hours(conn, team_id)
    return calendar.ALWAYS_OPEN if hours is None else hours.schedule


def next_opening_after(schedule: calendar.Schedule, at: datetime) -> datetime | None:
    """The next moment after ``at`` when a closed schedule opens (if open now: the opening after this span)."""
    if calendar.is_open(schedule, at):
        closing = calendar.next_closing(schedule, at)
        return None if closing is None else calendar.next_opening(schedule, closing)
    return calendar.next_opening(schedule, at)


async def arm_opening(conn: AsyncConnection, team_id: uuid.UUID, schedule: calendar.Schedule) -> datetime | None:
    """Set the team's ``hours_open`` timer to its next opening (cancelled when it never closes); returns when."""
    opening = next_opening_after(schedule, clock.now())
    if opening is None:
        await cancel_timer(conn, HOURS_OPEN, str(team_id))
        return None
    await schedule_timer(conn, HOURS_OPEN, str(team_id), clock.to_real(opening))
    return opening
