"""Operator presence: online, away or offline, set explicitly or by heartbeat expiry, and what follows from it.

``away`` takes no new work (routing only picks ``online`` members) but keeps its conversations.
A team whose first member comes online, or whose last online member leaves, gets a
``team.availability`` event: the widgets of its visitors are told (``service/gateway/availability.py``).
Going offline starts the operator's ``offline_grace`` timer; when it fires, each team's offline
policy applies to the operator's conversations in that team (see ``service/flows/timeouts.py``).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from service.db.tables import member_t, operator_t
from service.errors import NotFound
from service.events import record_event
from service.routing.sql import lock_teams
from service.timers.services import OFFLINE_GRACE, cancel_timer, schedule_timer


@dataclass(frozen=True)
class PresenceChange:
    """The operator's presence after the call; ``drain_teams`` need a queue drain once the change commits."""

    status: str
    previous: str
    status_changed_at: datetime | None
    last_heartbeat_at: datetime | None
    drain_teams: list[uuid.UUID] = field(default_factory=list)

    @property
    def changed(self) -> bool:
        return self.status != self.previous


_SET_STATUS = sa.text(
    """
    WITH old AS (SELECT id, status FROM operator WHERE id = :id AND deactivated_at IS NULL FOR UPDATE)
    UPDATE operator o SET
        status = CAST(:status AS text),
        status_changed_at = CASE WHEN old.status <> CAST(:status AS text) THEN clock_timestamp()
                                 ELSE o.status_changed_at END,
        -- A client that heartbeats has its clock restarted by an explicit change.
        last_heartbeat_at = CASE WHEN o.last_heartbeat_at IS NOT NULL THEN clock_timestamp() END
    FROM old WHERE o.id = old.id
    RETURNING old.status AS previous, o.status, o.status_changed_at, o.last_heartbeat_at
    """
)


_NEXT_GRACE = sa.text(
    """
    SELECT min(t.offline_grace_seconds) FROM team_member m JOIN team t ON t.id = m.team_id
    WHERE m.operator_id = :operator_id AND t.offline_policy <> 'keep'
      AND CAST(:since AS timestamptz) + make_interval(secs => t.offline_grace_seconds) > now()
    """
)


# A team's availability (a member online, as routing sees it) changes one decision at a time: a
# transaction-scoped lock per team, taken in key order after the operator's row, so two members going
# offline at once cannot each see the other still online. Not the routing queue locks (those come
# before operator rows).
_LOCK_AVAILABILITY = sa.text(
    "SELECT pg_advisory_xact_lock(k) FROM (SELECT DISTINCT hashtextextended('availability:' || t, 0) AS k "
    "FROM unnest(CAST(:ids AS text[])) AS t ORDER BY k) AS keys"
)

_OTHERS_ONLINE = sa.text(
    """
    SELECT DISTINCT m.team_id FROM team_member m JOIN operator o ON o.id = m.operator_id
    WHERE m.team_id = ANY(CAST(:teams AS uuid[])) AND o.id <> :id AND o.status = 'online' AND o.deactivated_at IS NULL
    """
)


async def _teams_of(conn: AsyncConnection, operator_id: uuid.UUID) -> list[uuid.UUID]:
    result = await conn.execute(
        sa.select(member_t.c.team_id).where(member_t.c.operator_id == operator_id).order_by(member_t.c.team_id)
    )
    return list(result.scalars())


async def set_presence(conn: AsyncConnection, operator_id: uuid.UUID, status: str, *, reason: str) -> PresenceChange:
    """Set the operator's status in the caller's transaction, with its event, grace timer and drains.

    Going online makes room in the operator's teams: their queue locks are taken first (exclusive, before
    the operator's row, routing's lock order), so a conversation being queued or routed there sees the
    operator as they were or as they are, never both (docs/routing.md, "Queue order").
    """
    if status == "online":
        await lock_teams(conn, *await _teams_of(conn, operator_id))
    row = (await conn.execute(_SET_STATUS, {"id": operator_id, "status": status})).first()
    if row is None:
        raise NotFound("Operator not found")
    change = PresenceChange(row.status, row.previous, row.status_changed_at, row.last_heartbeat_at)
    if not change.changed:
        return change
    teams = await _teams_of(conn, operator_id)
    for team_id in teams:
        await record_event(
            conn,
            "presence.changed",
            team_id=team_id,
            operator_ids=[operator_id],
            data={"operatorId": str(operator_id), "status": status, "previous": change.previous, "reason": reason},
        )
    if (status == "online") != (change.previous == "online"):
        await _record_availability(conn, operator_id, teams, online=status == "online")
    if status == "offline":
        await schedule_grace(conn, operator_id, row.status_changed_at)
    elif change.previous == "offline":
        await cancel_timer(conn, OFFLINE_GRACE, str(operator_id))
    if status == "online":
        return PresenceChange(**{**change.__dict__, "drain_teams": teams})
    return change


async def _lock_availability(conn: AsyncConnection, team_ids: list[uuid.UUID]) -> None:
    """Hold the teams' availability locks until commit (all of them at once, in key order)."""
    if team_ids:
        await conn.execute(_LOCK_AVAILABILITY, {"ids": [str(t) for t in team_ids]})


async def _record_availability(
    conn: AsyncConnection, operator_id: uuid.UUID, teams: list[uuid.UUID], *, online: bool
) -> None:
    """``team.availability`` for each of the operator's teams that now has its first member online, or none left."""
    await _lock_availability(conn, teams)
    others = set((await conn.execute(_OTHERS_ONLINE, {"teams": teams, "id": operator_id})).scalars())
    for team_id in teams:
        if team_id not in others:
            data = {"teamId": str(team_id), "online": online}
            await record_event(conn, "team.availability", team_id=team_id, data=data)


async def schedule_grace(conn: AsyncConnection, operator_id: uuid.UUID, offline_since: datetime | None) -> bool:
    """Schedule the operator's grace timer for the next team whose grace ends and whose policy is not ``keep``.

    Teams' grace periods differ, so one timer per operator walks through them: each firing applies
    the teams whose grace has ended and schedules the next. False when no team is left.
    """
    if offline_since is None:
        return False
    soonest = await conn.scalar(_NEXT_GRACE, {"operator_id": operator_id, "since": offline_since})
    if soonest is None:
        return False
    await schedule_timer(conn, OFFLINE_GRACE, str(operator_id), offline_since + timedelta(seconds=soonest))
    return True


async def heartbeat(conn: AsyncConnection, operator_id: uuid.UUID) -> PresenceChange:
    """Record that the operator's client is alive; the status itself changes only explicitly or by expiry."""
    row = (
        await conn.execute(
            sa.update(operator_t)
            .where(operator_t.c.id == operator_id, operator_t.c.deactivated_at.is_(None))
            .values(last_heartbeat_at=sa.func.clock_timestamp())
            .returning(operator_t.c.status, operator_t.c.status_changed_at, operator_t.c.last_heartbeat_at)
        )
    ).first()
    if row is None:
        raise NotFound("Operator not found")
    return PresenceChange(row.status, row.status, row.status_changed_at, row.last_heartbeat_at)


async def expire_heartbeats(conn: AsyncConnection, timeout_seconds: float) -> list[uuid.UUID]:
    """Set offline every online or away operator whose client heartbeats but fell silent; returns who."""
    silent = (
        await conn.execute(
            sa.select(operator_t.c.id)
            .where(
                operator_t.c.status != "offline",
                operator_t.c.last_heartbeat_at
                < sa.func.now() - sa.func.make_interval(0, 0, 0, 0, 0, 0, timeout_seconds),
            )
            .order_by(operator_t.c.id)
            .with_for_update(skip_locked=True)
        )
    ).scalars()
    expired = list(silent)
    if expired:
        # Their teams' availability locks at once, in key order, as a single operator's change takes them.
        teams = await conn.scalars(sa.select(member_t.c.team_id).where(member_t.c.operator_id.in_(expired)))
        await _lock_availability(conn, sorted(set(teams)))
    for operator_id in expired:
        await set_presence(conn, operator_id, "offline", reason="heartbeat_expired")
    return expired


async def current(conn: AsyncConnection, operator_id: uuid.UUID) -> PresenceChange:
    """The operator's presence as it is."""
    row = (
        await conn.execute(
            sa.select(operator_t.c.status, operator_t.c.status_changed_at, operator_t.c.last_heartbeat_at).where(
                operator_t.c.id == operator_id
            )
        )
    ).first()
    if row is None:
        raise NotFound("Operator not found")
    return PresenceChange(row.status, row.status, row.status_changed_at, row.last_heartbeat_at)
