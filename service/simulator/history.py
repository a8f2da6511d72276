"""What a team's period really held, read from PostgreSQL: arrivals, handling times, first assignments, presence."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from service.simulator.engine import Arrival, OnlineSpan, Outcome, Served

# The population: conversations of the team created in [start, end), as in analytics. A visitor arrives
# with their first message (routing starts on it), or at creation for a conversation without one.
_ARRIVALS = sa.text(
    """
    SELECT c.id, c.priority, c.required_skills, least(c.closed_at, c.visitor_left_at) AS left_at,
           coalesce(v.first_at, c.created_at) AS arrived_at, h.first_at, h.first_operator, h.handle
    FROM conversation c
    -- Per conversation through its indexes (message, assignment), whatever the planner's estimates.
    LEFT JOIN LATERAL (
        SELECT min(m.created_at) AS first_at FROM message m WHERE m.conversation_id = c.id AND m.sender = 'visitor'
    ) v ON true
    LEFT JOIN LATERAL (
        SELECT min(a.started_at) AS first_at,
               (array_agg(a.operator_id ORDER BY a.started_at, a.id))[1] AS first_operator,
               sum(extract(epoch FROM coalesce(a.ended_at, greatest(a.started_at, :end)) - a.started_at)) AS handle
        FROM assignment a WHERE a.conversation_id = c.id AND a.team_id = :team_id
    ) h ON true
    WHERE c.team_id = :team_id AND c.created_at >= :start AND c.created_at < :end
    ORDER BY arrived_at, c.id
    """
)

_POPULATION_SIZE = sa.text(
    "SELECT count(*) FROM conversation WHERE team_id = :team_id AND created_at >= :start AND created_at < :end"
)

# Presence as routing saw it: the team's presence.changed events (written in the transaction that changed it).
_PRESENCE_FILTER = "kind = 'presence.changed' AND team_id = :team_id"
_PRESENCE_BEFORE = sa.text(
    f"""
    SELECT DISTINCT ON (data ->> 'operatorId') data ->> 'operatorId' AS operator_id, data ->> 'status' AS status
    FROM event WHERE {_PRESENCE_FILTER} AND created_at < :start
    ORDER BY data ->> 'operatorId', created_at DESC, id DESC
    """
)
_PRESENCE_DURING = sa.text(
    f"""
    SELECT data ->> 'operatorId' AS operator_id, data ->> 'status' AS status, created_at
    FROM event WHERE {_PRESENCE_FILTER} AND created_at >= :start AND created_at < :end
    ORDER BY created_at, id
    """
)
_PRESENCE_COUNT = sa.text(
    f"SELECT count(*) FROM event WHERE {_PRESENCE_FILTER} AND created_at >= :start AND created_at < :end"
)


_LAST_ASSIGNED = sa.text(
    """
    SELECT operator_id, max(started_at) AS at FROM assignment
    WHERE team_id = :team_id AND started_at < :start GROUP BY operator_id
    """
)


@dataclass(frozen=True)
class Period:
    """The history of one team's period: the arrivals (to replay) and what really became of them."""

    arrivals: tuple[Arrival, ...]
    real: Outcome


async def population_size(conn: AsyncConnection, team_id: uuid.UUID, start: datetime, end: datetime) -> int:
    """How many conversations the period holds (the replay's work bound)."""
    return int(await conn.scalar(_POPULATION_SIZE, {"team_id": team_id, "start": start, "end": end}) or 0)


async def presence_changes(conn: AsyncConnection, team_id: uuid.UUID, start: datetime, end: datetime) -> int:
    """How many presence changes of the team's members the period holds."""
    return int(await conn.scalar(_PRESENCE_COUNT, {"team_id": team_id, "start": start, "end": end}) or 0)


def _seconds(later: datetime, earlier: datetime) -> float:
    return max((later - earlier).total_seconds(), 0.0)


def _arrival(row: Any, end: datetime) -> Arrival:
    assigned = row.first_at is not None and row.first_at < end
    left = not assigned and row.left_at is not None
    return Arrival(
        conversation_id=row.id,
        at=row.arrived_at,
        priority=row.priority,
        required_skills=frozenset(row.required_skills or ()),
        handle_seconds=float(row.handle) if row.handle is not None else None,
        patience_seconds=_seconds(row.left_at, row.arrived_at) if left else None,
    )


async def load_period(conn: AsyncConnection, team_id: uuid.UUID, start: datetime, end: datetime) -> Period:
    """The arrivals of ``[start, end)`` and their real outcome, judged at ``end`` like the replay's."""
    rows = (await conn.execute(_ARRIVALS, {"team_id": team_id, "start": start, "end": end})).all()
    served, abandoned, unanswered = [], [], []
    for row in rows:
        if row.first_at is not None and row.first_at < end:
            served.append(Served(row.id, row.first_operator, _seconds(row.first_at, row.arrived_at)))
        elif row.left_at is not None and row.left_at < end:
            abandoned.append(row.id)
        else:
            unanswered.append(row.id)
    real = Outcome(tuple(served), tuple(abandoned), tuple(unanswered))
    return Period(tuple(_arrival(row, end) for row in rows), real)


async def online_spans(
    conn: AsyncConnection, team_id: uuid.UUID, start: datetime, end: datetime
) -> tuple[OnlineSpan, ...]:
    """Each member's online stretches within ``[start, end)``, from their status before ``start`` and its changes."""
    params = {"team_id": team_id, "start": start, "end": end}
    since: dict[uuid.UUID, datetime] = {}
    for row in await conn.execute(_PRESENCE_BEFORE, params):
        if row.status == "online":
            since[uuid.UUID(row.operator_id)] = start
    spans: list[OnlineSpan] = []
    for row in await conn.execute(_PRESENCE_DURING, params):
        operator_id = uuid.UUID(row.operator_id)
        if row.status == "online":
            since.setdefault(operator_id, row.created_at)
        elif operator_id in since:
            spans.append(OnlineSpan(operator_id, since.pop(operator_id), row.created_at))
    spans.extend(OnlineSpan(operator_id, at, end) for operator_id, at in sorted(since.items(), key=lambda kv: kv[0]))
    return tuple(spans)


async def last_assigned(conn: AsyncConnection, team_id: uuid.UUID, start: datetime) -> dict[uuid.UUID, datetime]:
    """Each operator's latest assignment in the team before ``start``: where round robin's clock stood."""
    rows = await conn.execute(_LAST_ASSIGNED, {"team_id": team_id, "start": start})
    return {row.operator_id: row.at for row in rows}
