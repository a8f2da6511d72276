"""Run a simulation: check the request, read the period, replay it under the draft, and compare with reality."""

from __future__ import annotations

import statistics
import uuid
from datetime import UTC, datetime, timedelta

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from service.analytics.services import snapshot
from service.db.tables import team_t
from service.errors import NotFound, field_invalid, field_malformed
from service.hours.services import schedule_of
from service.simulator import history
from service.simulator.engine import Scenario, Seat, simulate
from service.simulator.figures import figures
from service.simulator.schemas import DraftResolved, MemberDraft, MemberSettings, SimulationCreate, SimulationPublic
from service.teams.services import list_members

# Work bounds: a replay runs inside one request.
MAX_SPAN = timedelta(days=31)
MAX_ARRIVALS = 20_000
MAX_PRESENCE_CHANGES = 100_000
# Each placement weighs the members with room: conversations times members bounds the replay's time (about a
# second per 250,000 on this machine's cores when idle).
MAX_CONVERSATION_MEMBERS = 250_000


def _utc(value: datetime, field: str) -> datetime:
    try:
        return (value if value.tzinfo is not None else value.replace(tzinfo=UTC)).astimezone(UTC)
    except OverflowError:  # year 1 or 9999 moved past the calendar's end by its offset
        raise field_malformed(field, "must be a time between the years 1 and 9999 in UTC") from None


def check_period(start: datetime, end: datetime) -> tuple[datetime, datetime]:
    """Offset-aware bounds (no offset: UTC), ``from`` before ``to``, at most ``MAX_SPAN`` apart."""
    start, end = _utc(start, "from"), _utc(end, "to")
    if start >= end:
        raise field_malformed("to", "must be after from")
    if end - start > MAX_SPAN:
        raise field_malformed("to", f"a simulation may span at most {MAX_SPAN.days} days")
    return start, end


async def _draft(conn: AsyncConnection, team_id: uuid.UUID, data: SimulationCreate) -> DraftResolved:
    """The draft over the team's current settings; a member the draft names must be one of the team's."""
    draft = data.draft
    if draft.sla is not None:
        raise field_invalid("draft.sla", "is not simulated yet: leave it out (docs/routing.md)")
    team = (
        await conn.execute(
            sa.select(team_t.c.routing_policy, team_t.c.default_capacity, team_t.c.business_hours).where(
                team_t.c.id == team_id
            )
        )
    ).first()
    if team is None:
        raise NotFound("Team not found")
    policy = draft.routing_policy or team.routing_policy
    if policy not in ("round_robin", "least_busy"):
        raise field_invalid("draft.routingPolicy", "the team routes manually: give round_robin or least_busy")
    default_capacity = team.default_capacity if draft.default_capacity is None else draft.default_capacity
    members = {member.operator_id: member for member in await list_members(conn, team_id)}
    overrides: dict[uuid.UUID, MemberDraft] = {}
    for index, override in enumerate(draft.members):
        field = f"draft.members[{index}].operatorId"
        if override.operator_id not in members:
            raise field_invalid(field, "is not a member of this team")
        if override.operator_id in overrides:
            raise field_invalid(field, "is named twice")
        overrides[override.operator_id] = override
    settings = []
    for operator_id, member in members.items():
        change = overrides.get(operator_id)
        capacity = member.capacity
        if change is not None and "capacity" in change.model_fields_set:
            capacity = change.capacity
        skills = change.skills if change is not None and change.skills is not None else member.skills
        settings.append(
            MemberSettings(
                operator_id=operator_id,
                display_name=member.display_name,
                capacity=default_capacity if capacity is None else capacity,
                skills=sorted(skills),
            )
        )
    return DraftResolved(
        routing_policy=policy,
        default_capacity=default_capacity,
        first_response_target_seconds=draft.first_response_target_seconds,
        business_hours=team.business_hours if draft.business_hours is None else draft.business_hours.document(),
        members=settings,
    )


async def _check_work(conn: AsyncConnection, team_id: uuid.UUID, start: datetime, end: datetime, members: int) -> None:
    arrivals = await history.population_size(conn, team_id, start, end)
    if arrivals > MAX_ARRIVALS:
        raise field_malformed("to", f"the period holds {arrivals} conversations, at most {MAX_ARRIVALS}: shorten it")
    if arrivals * members > MAX_CONVERSATION_MEMBERS:
        raise field_malformed(
            "to",
            f"the period holds {arrivals} conversations for {members} members; conversations times members may be at "
            f"most {MAX_CONVERSATION_MEMBERS}: shorten it",
        )
    changes = await history.presence_changes(conn, team_id, start, end)
    if changes > MAX_PRESENCE_CHANGES:
        raise field_malformed(
            "to", f"the period holds {changes} presence changes, at most {MAX_PRESENCE_CHANGES}: shorten it"
        )


async def _names(conn: AsyncConnection, operator_ids: set[uuid.UUID]) -> dict[uuid.UUID, str]:
    rows = await conn.execute(
        sa.text("SELECT id, display_name FROM operator WHERE id = ANY(:ids)"), {"ids": sorted(operator_ids)}
    )
    return {row.id: row.display_name for row in rows}


async def run_simulation(conn: AsyncConnection, team_id: uuid.UUID, data: SimulationCreate) -> SimulationPublic:
    """Replay ``[from, to)`` of the team under the draft, beside what happened; read in the caller's snapshot."""
    start, end = check_period(data.start, data.end)
    draft = await _draft(conn, team_id, data)
    await _check_work(conn, team_id, start, end, len(draft.members))
    period = await history.load_period(conn, team_id, start, end)
    presence = await history.online_spans(conn, team_id, start, end)
    handles = [a.handle_seconds for a in period.arrivals if a.handle_seconds is not None]
    before = await history.last_assigned(conn, team_id, start)
    scenario = Scenario(
        policy=draft.routing_policy,
        seats=tuple(
            Seat(m.operator_id, m.capacity, frozenset(m.skills), before.get(m.operator_id)) for m in draft.members
        ),
        arrivals=period.arrivals,
        presence=presence,
        end=end,
        # A visitor who left unassigned in reality but is served in the replay holds an operator this long.
        default_handle_seconds=statistics.median(handles) if handles else 0.0,
        schedule=schedule_of(draft.business_hours),
    )
    replayed = simulate(scenario)
    current = {m.operator_id: m for m in await list_members(conn, team_id)}
    names = {m.operator_id: m.display_name for m in draft.members}
    former = {s.operator_id for s in period.real.served} - set(current)
    names |= await _names(conn, former)
    order = sorted(set(current) | former, key=lambda op: (names.get(op, ""), str(op)))
    target = draft.first_response_target_seconds
    real_capacity = {op: current[op].effective_capacity if op in current else None for op in order}
    draft_capacity = {m.operator_id: m.capacity for m in draft.members}
    arrivals = len(period.arrivals)
    return SimulationPublic(
        team_id=team_id,
        start=start,
        end=end,
        draft=draft,
        real=figures(period.real, arrivals, target, real_capacity, names),
        simulated=figures(
            replayed, arrivals, target, {op: draft_capacity[op] for op in order if op in draft_capacity}, names
        ),
    )


async def simulate_period(engine: AsyncEngine, team_id: uuid.UUID, data: SimulationCreate) -> SimulationPublic:
    """``run_simulation`` in one read-only snapshot, so the history it replays is one moment's."""
    async with snapshot(engine) as conn:
        return await run_simulation(conn, team_id, data)
