"""A month of a team's history written straight into the real tables, for the policy simulator's tests.

The history is made by a small router of its own (not the simulator's engine): visitors arrive by a seeded
random day-and-night rhythm, operators work shifts with a lunch break, and each waiting conversation goes,
in queue order (priority, then waiting time), to the online member with room and the skills who has the
lowest open ÷ capacity, then was assigned longest ago (the documented ``least_busy``). A visitor whose wait
passes their patience leaves; an assignment starts a fraction of a second after the decision, as a routing
job does. What is written is what the service records: conversations, first visitor messages, assignments
and ``presence.changed`` events.
"""

from __future__ import annotations

import heapq
import itertools
import random
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from service.db.tables import assignment_t, conversation_t, event_t, message_t
from tests.factories import add_member, make_operator, make_team

START = datetime(2026, 11, 1, tzinfo=UTC)  # a Sunday
END = START + timedelta(days=30)


@dataclass
class Month:
    """The team, its lead and members (name → id), and how many conversations the month holds."""

    team_id: uuid.UUID
    lead_id: uuid.UUID | None
    operators: dict[str, uuid.UUID]
    conversations: int


@dataclass
class _Op:
    id: uuid.UUID
    capacity: int
    skills: frozenset[str]
    online: bool = False
    open: int = 0
    last: datetime | None = None


@dataclass(order=True)
class _Visitor:
    key: tuple[int, datetime, str]
    id: str = field(compare=False)
    at: datetime = field(compare=False)
    priority: int = field(compare=False)
    skills: frozenset[str] = field(compare=False)
    handle: float = field(compare=False)
    patience: float = field(compare=False)


# name, capacity (None: the team default of 2), skills, shifts as (first hour, last hour) per weekday 0-6
SHIFTS: dict[str, tuple[int | None, tuple[str, ...], dict[int, tuple[int, int]]]] = {
    "Ada": (None, ("fr",), {d: (8, 16) for d in range(5)}),
    "Ben": (3, (), {d: (9, 17) for d in range(5)}),
    "Cy": (None, (), {d: (10, 18) for d in range(5)} | {5: (9, 15)}),
    "Dee": (None, ("fr",), {d: (12, 20) for d in (2, 3, 4, 5, 6)}),
    "Nia": (None, (), {d: (22, 30) for d in range(7)}),  # nights, past midnight
}


def _rate_per_hour(moment: datetime) -> float:
    weekend = moment.weekday() >= 5
    if 9 <= moment.hour < 18:
        return 5.0 if weekend else 15.0
    return 1.0


def _shifts(ops: dict[str, _Op], rng: random.Random) -> list[tuple[datetime, str, bool]]:
    """(when, who, online) changes from the day before START to END, with lunch breaks on day shifts."""
    changes = []
    for name, (_, _, week) in SHIFTS.items():
        for day in range(-1, 31):
            date = START + timedelta(days=day)
            if date.weekday() not in week:
                continue
            first, last = week[date.weekday()]
            on = date + timedelta(hours=first, minutes=rng.randint(0, 10))
            off = date + timedelta(hours=last, minutes=rng.randint(0, 10))
            if last - first >= 8 and first < 22:
                lunch = date + timedelta(hours=12, minutes=rng.randint(0, 30))
                changes += [(on, name, True), (lunch, name, False), (lunch + timedelta(minutes=30), name, True)]
            else:
                changes.append((on, name, True))
            changes.append((off, name, False))
    return sorted(changes)


async def build_month(engine: AsyncEngine, seed: int = 15, team_id: uuid.UUID | None = None) -> Month:
    """Write the month (``START`` to ``END``) and return its team; the same seed writes the same history.

    Without ``team_id`` a team "Support" is made with a lead, Lena (capacity 0); with it, that team is set up
    (least busy, capacity 2) and its leads are whoever the caller makes them.
    """
    rng = random.Random(seed)
    lead_id = None
    if team_id is None:
        team_id = await make_team(engine, "Support", routing_policy="least_busy", default_capacity=2)
        lead_id = await make_operator(engine, "Lena")
        await add_member(engine, team_id, lead_id, "lead", capacity=0)
    else:
        async with engine.begin() as conn:
            await conn.execute(
                sa.text("UPDATE team SET routing_policy = 'least_busy', default_capacity = 2 WHERE id = :id"),
                {"id": team_id},
            )
    ops: dict[str, _Op] = {}
    for name, (capacity, skills, _) in SHIFTS.items():
        operator_id = await make_operator(engine, name, id=uuid.UUID(int=len(ops) + 1))
        await add_member(engine, team_id, operator_id, capacity=capacity, skills=list(skills))
        ops[name] = _Op(operator_id, 2 if capacity is None else capacity, frozenset(skills))

    events: list[tuple[datetime, int, int, Any]] = []
    order = itertools.count()
    for when, name, online in _shifts(ops, rng):
        heapq.heappush(events, (when, 1, next(order), (name, online)))
    moment = START
    number = 0
    while moment < END:
        moment += timedelta(hours=rng.expovariate(_rate_per_hour(moment)))
        if moment >= END:
            break
        number += 1
        visitor = _Visitor(
            key=(0, moment, ""),
            id=f"m{number:05d}",
            at=moment,
            priority=1 if rng.random() < 0.1 else 0,
            skills=frozenset({"fr"}) if rng.random() < 0.15 else frozenset(),
            handle=min(max(rng.expovariate(1 / 1500), 60.0), 7200.0),
            patience=min(max(rng.expovariate(1 / 1800), 30.0), 7200.0),
        )
        visitor.key = (-visitor.priority, moment, visitor.id)
        heapq.heappush(events, (moment, 2, next(order), visitor))
        heapq.heappush(events, (moment + timedelta(seconds=visitor.patience), 3, next(order), visitor))

    conversations: list[dict[str, Any]] = []
    messages: list[dict[str, Any]] = []
    assignments: list[dict[str, Any]] = []
    presence: list[dict[str, Any]] = []
    queue: list[_Visitor] = []
    done: set[str] = set()

    def serve(now: datetime) -> None:
        for visitor in sorted(queue):
            free = [op for op in ops.values() if op.online and op.open < op.capacity and visitor.skills <= op.skills]
            if not free:
                continue
            op = min(free, key=lambda o: (o.open / o.capacity, o.last is not None, o.last or now, o.id))
            op.open += 1
            op.last = now
            started = now + timedelta(seconds=rng.uniform(0.05, 0.4))
            ended = started + timedelta(seconds=visitor.handle)
            queue.remove(visitor)
            done.add(visitor.id)
            assignments.append(
                {
                    "conversation_id": visitor.id,
                    "operator_id": op.id,
                    "team_id": team_id,
                    "reason": "routed",
                    "started_at": started,
                    "ended_at": ended,
                    "end_reason": "closed",
                }
            )
            conversations.append(_conversation(visitor, team_id, closed=ended))
            heapq.heappush(events, (ended, 0, next(order), op))

    while events:
        now, kind, _, subject = heapq.heappop(events)
        if now >= END + timedelta(days=1):
            break
        if kind == 0:
            subject.open -= 1
        elif kind == 1:
            name, online = subject
            op = ops[name]
            op.online = online
            status, previous = ("online", "offline") if online else ("offline", "online")
            data = {"operatorId": str(op.id), "status": status, "previous": previous, "reason": "test"}
            presence.append({"kind": "presence.changed", "team_id": team_id, "data": data, "created_at": now})
        elif kind == 2:
            if now < END:
                queue.append(subject)
                messages.append(_message(subject))
        elif subject.id not in done and subject in queue:
            queue.remove(subject)
            done.add(subject.id)
            left = subject.at + timedelta(seconds=subject.patience)
            conversations.append(_conversation(subject, team_id, closed=left, left=left))
        if kind != 3:
            serve(now)
    conversations += [_conversation(v, team_id) for v in queue]
    async with engine.begin() as conn:
        await conn.execute(sa.insert(conversation_t), conversations)
        await conn.execute(sa.insert(message_t), messages)
        await conn.execute(sa.insert(assignment_t), assignments)
        await conn.execute(sa.insert(event_t), presence)
    return Month(team_id, lead_id, {name: op.id for name, op in ops.items()}, len(conversations))


def _conversation(
    visitor: _Visitor,
    team_id: uuid.UUID,
    *,
    closed: datetime | None = None,
    left: datetime | None = None,
) -> dict[str, Any]:
    # The widget connects a few seconds before the visitor writes.
    created = visitor.at - timedelta(seconds=5)
    return {
        "id": visitor.id,
        "visitor_id": f"v-{visitor.id}",
        "team_id": team_id,
        "status": "closed" if closed else "queued",
        "priority": visitor.priority,
        "required_skills": sorted(visitor.skills),
        "waiting_since": None if closed else visitor.at,
        "assigned_at": None,
        "closed_at": closed,
        "visitor_left_at": left,
        "created_at": created,
        "last_activity": closed or visitor.at,
    }


def _message(visitor: _Visitor) -> dict[str, Any]:
    return {
        "id": f"msg-{visitor.id}",
        "conversation_id": visitor.id,
        "sender": "visitor",
        "content": "Hello?",
        "created_at": visitor.at,
    }
