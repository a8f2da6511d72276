"""Operator presence: each client (dashboard tab, mobile app, bridge account, script) is a presence session.

An operator is ``online`` while some live client of theirs is online, ``away`` while their live clients are
all away (idle past their teams' auto-away, or said so), and ``offline`` once the last client has been gone
for ``PRESENCE_OFFLINE_GRACE_SECONDS`` (the ``presence_lapse`` timer). Away or offline *chosen* by the
operator (``chosen_status``) holds whatever their clients do, until they choose online.

``away`` takes no new work (routing only picks ``online`` members) but keeps its conversations.
A team whose first member comes online, or whose last online member leaves, gets a
``team.availability`` event: the widgets of its visitors are told (``service/gateway/availability.py``).
Going offline starts the operator's ``offline_grace`` timer; when it fires, each team's offline
policy applies to the operator's conversations in that team (see ``service/flows/timeouts.py``).

Every change locks the operator's row first, then writes their clients, then reads them again in a new
statement: two clients of one operator changing at once (on two api instances) settle one after the other.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncConnection

from service.db.tables import client_t, member_t, operator_t
from service.errors import NotFound
from service.events import record_event
from service.hours.services import team_hours
from service.routing.sql import lock_teams
from service.timers.services import OFFLINE_GRACE, PRESENCE_LAPSE, cancel_timer, schedule_timer

# Clients renewed by heartbeats or an open event stream; the others live until ended.
LEASED_KINDS = ("web", "mobile")
# Clients whose user's activity they report, so they can be idle (auto-away).
ACTIVE_KINDS = LEASED_KINDS


@dataclass(frozen=True)
class ClientRef:
    """Which client of the operator: its id (chosen by the client), its kind, and the browser session of a web one."""

    client_id: str
    kind: str
    session_key: str | None = None


@dataclass(frozen=True)
class PresenceChange:
    """The operator's presence after the call; ``drain_teams`` need a queue drain once the change commits."""

    status: str
    previous: str
    status_changed_at: datetime | None
    last_heartbeat_at: datetime | None
    drain_teams: list[uuid.UUID] = field(default_factory=list)
    chosen_status: str | None = None
    clients: list[dict[str, Any]] = field(default_factory=list)

    @property
    def changed(self) -> bool:
        return self.status != self.previous


_SET_STATUS = sa.text(
    """
    WITH old AS (SELECT id, status FROM operator WHERE id = :id AND deactivated_at IS NULL FOR UPDATE)
    UPDATE operator o SET
        status = CAST(:status AS text),
        status_changed_at = CASE WHEN old.status <> CAST(:status AS text) THEN clock_timestamp()
                                 ELSE o.status_changed_at END
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


async def _apply(conn: AsyncConnection, operator_id: uuid.UUID, status: str, *, reason: str) -> PresenceChange:
    """Set the operator's status in the caller's transaction, with its event, grace timer and drains.

    Going online makes room in the operator's teams: their queue locks are held (exclusive; usually taken
    by ``_lock`` before the operator's row, routing's lock order), so a conversation being queued or routed
    there sees the operator as they were or as they are, never both (docs/routing.md, "Queue order").
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
    """``team.availability`` for each of the operator's teams that now has its first member online, or none left.

    A first member online while the team is outside its business hours is not announced: its visitors' widgets
    keep showing nobody until the opening announces the members then online (``announce_opening``).
    """
    await _lock_availability(conn, teams)
    others = set((await conn.execute(_OTHERS_ONLINE, {"teams": teams, "id": operator_id})).scalars())
    for team_id in teams:
        if team_id in others:
            continue
        if online and not await _open_now(conn, team_id):
            continue
        data = {"teamId": str(team_id), "online": online}
        await record_event(conn, "team.availability", team_id=team_id, data=data)


async def _open_now(conn: AsyncConnection, team_id: uuid.UUID) -> bool:
    hours = await team_hours(conn, team_id)
    return hours is None or hours.is_open()


async def announce_opening(conn: AsyncConnection, team_id: uuid.UUID) -> bool:
    """The team has just opened: ``team.availability`` (online) if a member is online, for its visitors' widgets."""
    await _lock_availability(conn, [team_id])
    online = await conn.scalar(
        sa.select(sa.func.count())
        .select_from(member_t.join(operator_t, operator_t.c.id == member_t.c.operator_id))
        .where(member_t.c.team_id == team_id, operator_t.c.status == "online", operator_t.c.deactivated_at.is_(None))
    )
    if online:
        await record_event(conn, "team.availability", team_id=team_id, data={"teamId": str(team_id), "online": True})
    return bool(online)


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


# The status the operator's live clients give: online if one is online, away if all are away, NULL if none is left.
_SETTLE = sa.text(
    """
    SELECT o.status, o.chosen_status, o.status_changed_at, o.last_heartbeat_at, clock_timestamp() AS now,
           (SELECT CASE WHEN bool_or(c.status = 'online') THEN 'online' WHEN count(*) > 0 THEN 'away' END
            FROM presence_client c
            WHERE c.operator_id = o.id AND (c.expires_at IS NULL OR c.expires_at > clock_timestamp())) AS clients
    FROM operator o WHERE o.id = :id
    """
)


async def _lock(conn: AsyncConnection, operator_id: uuid.UUID) -> None:
    """The operator's row, locked until commit: every presence change of one operator goes one at a time.

    An operator not online may be about to go online: their teams' queue locks come first then, in
    routing's order (a late change of mind is still covered by ``_apply``, at the cost of a retry).
    """
    status = await conn.scalar(sa.select(operator_t.c.status).where(operator_t.c.id == operator_id))
    if status is not None and status != "online":
        await lock_teams(conn, *await _teams_of(conn, operator_id))
    found = await conn.scalar(
        sa.select(operator_t.c.id)
        .where(operator_t.c.id == operator_id, operator_t.c.deactivated_at.is_(None))
        .with_for_update()
    )
    if found is None:
        raise NotFound("Operator not found")


async def _settle(conn: AsyncConnection, operator_id: uuid.UUID, *, reason: str, grace: float | None) -> PresenceChange:
    """After the operator's clients changed (row locked): the status their choice and live clients give.

    With no live client left, they go offline after ``grace`` seconds (the ``presence_lapse`` timer), or
    at once when ``grace`` is None; a client coming back meanwhile cancels it.
    """
    row = (await conn.execute(_SETTLE, {"id": operator_id})).one()
    target = row.chosen_status or row.clients
    if target is None and grace is not None:
        if row.status != "offline":
            await schedule_timer(conn, PRESENCE_LAPSE, str(operator_id), row.now + timedelta(seconds=grace))
        return PresenceChange(row.status, row.status, row.status_changed_at, row.last_heartbeat_at)
    await cancel_timer(conn, PRESENCE_LAPSE, str(operator_id))
    return await _apply(conn, operator_id, target or "offline", reason=reason)


async def _upsert_client(
    conn: AsyncConnection,
    operator_id: uuid.UUID,
    client: ClientRef,
    *,
    lease: float,
    active: bool,
    connection_id: str | None = None,
) -> None:
    """Create or renew the client: a leased kind lives ``lease`` more seconds; activity makes it online."""
    now = sa.func.clock_timestamp()
    expires = now + timedelta(seconds=lease) if client.kind in LEASED_KINDS else None
    values: dict[str, Any] = {"kind": client.kind, "last_seen_at": now, "expires_at": expires}
    if client.session_key is not None:
        values["session_key"] = client.session_key
    if connection_id is not None:
        values["connection_id"] = connection_id
    if active:
        values |= {"status": "online", "last_active_at": now}
    statement = insert(client_t).values(
        {"status": "online", **values, "operator_id": operator_id, "client_id": client.client_id}
    )
    await conn.execute(
        statement.on_conflict_do_update(index_elements=[client_t.c.operator_id, client_t.c.client_id], set_=values)
    )


async def choose(
    conn: AsyncConnection,
    operator_id: uuid.UUID,
    status: str,
    *,
    client: ClientRef,
    lease: float,
    reason: str,
) -> PresenceChange:
    """The operator's own choice. ``away``/``offline`` hold until they choose ``online`` (``offline`` also ends
    their bridge and api clients, which nothing else would end); ``online`` clears the choice and makes ``client``
    an online client, so their presence follows their clients again."""
    await _lock(conn, operator_id)
    chosen = None if status == "online" else status
    await conn.execute(sa.update(operator_t).where(operator_t.c.id == operator_id).values(chosen_status=chosen))
    if status == "offline":
        await conn.execute(
            sa.delete(client_t).where(client_t.c.operator_id == operator_id, client_t.c.expires_at.is_(None))
        )
    elif status == "online":
        await _upsert_client(conn, operator_id, client, lease=lease, active=True)
    return await _as_now(conn, operator_id, await _settle(conn, operator_id, reason=reason, grace=None))


async def heartbeat(
    conn: AsyncConnection, operator_id: uuid.UUID, client: ClientRef, *, active: bool, lease: float
) -> PresenceChange:
    """The client is alive for ``lease`` more seconds (``active``: its user did something, so it is online)."""
    await _lock(conn, operator_id)
    await _upsert_client(conn, operator_id, client, lease=lease, active=active)
    await conn.execute(
        sa.update(operator_t).where(operator_t.c.id == operator_id).values(last_heartbeat_at=sa.func.clock_timestamp())
    )
    change = await _settle(conn, operator_id, reason="active" if active else "heartbeat", grace=None)
    return await _as_now(conn, operator_id, change)


async def open_stream(
    conn: AsyncConnection, operator_id: uuid.UUID, client: ClientRef, connection_id: str, *, lease: float
) -> PresenceChange:
    """An event stream now holds the client (a dashboard tab): alive while it is open and renewed."""
    await _lock(conn, operator_id)
    await _upsert_client(conn, operator_id, client, lease=lease, active=True, connection_id=connection_id)
    return await _settle(conn, operator_id, reason="connected", grace=None)


async def renew_stream(
    conn: AsyncConnection, operator_id: uuid.UUID, client_id: str, connection_id: str, *, lease: float
) -> bool:
    """The open stream renews its client's lease; False when the client is gone (signed out, ended)."""
    renewed = await conn.execute(
        sa.update(client_t)
        .where(
            client_t.c.operator_id == operator_id,
            client_t.c.client_id == client_id,
            client_t.c.connection_id == connection_id,
        )
        .values(
            last_seen_at=sa.func.clock_timestamp(),
            expires_at=sa.func.clock_timestamp() + timedelta(seconds=lease),
        )
    )
    return bool(renewed.rowcount)


async def close_stream(
    conn: AsyncConnection, operator_id: uuid.UUID, client_id: str, connection_id: str, *, grace: float
) -> PresenceChange | None:
    """The stream closed: its client is gone (unless a newer stream holds it by now); None when nothing ended."""
    await _lock(conn, operator_id)
    ended = await conn.execute(
        sa.delete(client_t).where(
            client_t.c.operator_id == operator_id,
            client_t.c.client_id == client_id,
            client_t.c.connection_id == connection_id,
        )
    )
    if not ended.rowcount:
        return None
    return await _settle(conn, operator_id, reason="client_closed", grace=grace)


async def end_session_clients(conn: AsyncConnection, session_key: str, *, grace: float) -> list[PresenceChange]:
    """Sign-out: the browser session's clients are gone; offline after ``grace`` when no other client is left."""
    owners = await conn.scalars(
        sa.select(client_t.c.operator_id).where(client_t.c.session_key == session_key).distinct()
    )
    changes = []
    for operator_id in list(owners):
        await _lock(conn, operator_id)
        await conn.execute(
            sa.delete(client_t).where(client_t.c.operator_id == operator_id, client_t.c.session_key == session_key)
        )
        changes.append(await _settle(conn, operator_id, reason="signed_out", grace=grace))
    return changes


async def lapse(conn: AsyncConnection, operator_id: uuid.UUID) -> str:
    """The ``presence_lapse`` timer fired: offline now, unless a client came back or the operator chose meanwhile."""
    await _lock(conn, operator_id)
    row = (await conn.execute(_SETTLE, {"id": operator_id})).one()
    if row.chosen_status or row.clients:
        return "client_back"
    await _apply(conn, operator_id, "offline", reason="clients_gone")
    return "offline"


# The members' shortest auto-away, over their teams that have one.
_AUTO_AWAY = (
    "(SELECT min(t.auto_away_minutes) FROM team_member m JOIN team t ON t.id = m.team_id "
    "WHERE m.operator_id = c.operator_id)"
)
_IDLE = (
    f"c.status = 'online' AND c.kind IN ('web', 'mobile') "
    f"AND c.last_active_at < now() - make_interval(mins => {_AUTO_AWAY})"
)
_DUE = sa.text(
    f"SELECT DISTINCT c.operator_id FROM presence_client c WHERE c.expires_at <= now() OR ({_IDLE}) "
    "ORDER BY c.operator_id LIMIT 1000"
)


async def due_for_sweep(conn: AsyncConnection) -> list[uuid.UUID]:
    """Operators with a client whose lease ran out, or idle past their teams' auto-away."""
    return list((await conn.execute(_DUE)).scalars())


async def sweep_operator(conn: AsyncConnection, operator_id: uuid.UUID) -> PresenceChange:
    """Their silent clients are gone (offline at once when none is left: the lease was the wait), idle ones away."""
    await _lock(conn, operator_id)
    expired = await conn.execute(
        sa.delete(client_t).where(client_t.c.operator_id == operator_id, client_t.c.expires_at <= sa.func.now())
    )
    await conn.execute(
        sa.text(f"UPDATE presence_client c SET status = 'away' WHERE c.operator_id = :id AND {_IDLE}"),
        {"id": operator_id},
    )
    reason = "heartbeat_expired" if expired.rowcount else "auto_away"
    return await _settle(conn, operator_id, reason=reason, grace=None)


async def _as_now(conn: AsyncConnection, operator_id: uuid.UUID, change: PresenceChange) -> PresenceChange:
    """The presence as it is after ``change`` (with the choice and clients), keeping its previous status and drains."""
    now = await current(conn, operator_id)
    return replace(now, previous=change.previous, drain_teams=change.drain_teams)


async def current(conn: AsyncConnection, operator_id: uuid.UUID) -> PresenceChange:
    """The operator's presence as it is, with their live clients."""
    row = (
        await conn.execute(
            sa.select(
                operator_t.c.status,
                operator_t.c.status_changed_at,
                operator_t.c.last_heartbeat_at,
                operator_t.c.chosen_status,
            ).where(operator_t.c.id == operator_id)
        )
    ).first()
    if row is None:
        raise NotFound("Operator not found")
    clients = await conn.execute(
        sa.select(
            client_t.c.client_id, client_t.c.kind, client_t.c.status, client_t.c.last_seen_at, client_t.c.expires_at
        )
        .where(
            client_t.c.operator_id == operator_id,
            sa.or_(client_t.c.expires_at.is_(None), client_t.c.expires_at > sa.func.now()),
        )
        .order_by(client_t.c.created_at, client_t.c.client_id)
    )
    return PresenceChange(
        row.status,
        row.status,
        row.status_changed_at,
        row.last_heartbeat_at,
        chosen_status=row.chosen_status,
        clients=[dict(c._mapping) for c in clients],
    )


async def in_foreground(conn: AsyncConnection, operator_id: uuid.UUID) -> bool:
    """Whether a client the operator is looking at is connected: a dashboard tab or a foreground app, still renewed."""
    return bool(
        await conn.scalar(
            sa.select(
                sa.exists().where(
                    client_t.c.operator_id == operator_id,
                    client_t.c.kind.in_(LEASED_KINDS),
                    client_t.c.expires_at > sa.func.now(),
                )
            )
        )
    )
