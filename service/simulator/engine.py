"""A pure, deterministic discrete-event replay of a team's period through routing's own ``decide()``.

Nothing here reads a clock, a database or a random source: the same scenario always gives the same outcome.
Events are ordered by time, then by kind (a freed slot before a presence change before the team's opening
before an arrival before a visitor leaving), then by the order they were given in, which the caller makes
stable (sorted by id). Outside the scenario's business hours the queue waits (the ``wait`` choice of
docs/routing.md, "Outside business hours") and is drained at each opening.
"""

from __future__ import annotations

import heapq
import itertools
import uuid
from bisect import bisect_left, insort
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from service.hours import calendar
from service.routing.policies import Candidate, decide

# Event kinds, in the order they apply at one instant: room first, so a conversation arriving at the
# moment a slot frees finds it, as the router would (the freed slot's drain has committed).
_FREED, _OFFLINE, _ONLINE, _OPENS, _ARRIVES, _LEAVES = range(6)


@dataclass(frozen=True)
class Arrival:
    """One conversation of the period as it happened: when the visitor asked, and what it needed."""

    conversation_id: str
    at: datetime
    priority: int = 0
    required_skills: frozenset[str] = frozenset()
    # How long it held operators in reality (its assignments' durations together); None: never assigned.
    handle_seconds: float | None = None
    # Seconds after arriving at which the visitor left unassigned in reality; None: they stayed to be answered.
    patience_seconds: float | None = None


@dataclass(frozen=True)
class OnlineSpan:
    """An operator online (as routing sees presence) from ``start`` to ``end``."""

    operator_id: uuid.UUID
    start: datetime
    end: datetime


@dataclass(frozen=True)
class Seat:
    """A team member as the draft configures them: capacity and skills."""

    operator_id: uuid.UUID
    capacity: int
    skills: frozenset[str] = frozenset()
    # Their latest assignment in the team before the period (round robin's clock at the start).
    last_assigned_at: datetime | None = None


@dataclass(frozen=True)
class Scenario:
    """Everything one replay needs; ``default_handle_seconds`` serves visitors who left unassigned in reality."""

    policy: str
    seats: Sequence[Seat]
    arrivals: Sequence[Arrival]
    presence: Sequence[OnlineSpan]
    end: datetime
    default_handle_seconds: float = 0.0
    # When the team serves its queue; closed, conversations wait for the next opening.
    schedule: calendar.Schedule = calendar.ALWAYS_OPEN


@dataclass(frozen=True)
class Served:
    """A conversation assigned in the replay (or in reality): to whom, after how long."""

    conversation_id: str
    operator_id: uuid.UUID
    wait_seconds: float


@dataclass(frozen=True)
class Outcome:
    """What became of every arrival before ``end``: served, abandoned (left unassigned) or still waiting."""

    served: tuple[Served, ...]
    abandoned: tuple[str, ...]
    unanswered: tuple[str, ...]


@dataclass
class _Operator:
    seat: Seat
    online: int = 0  # overlapping spans count, so two touching spans never flicker offline
    open: int = 0
    last_assigned_at: datetime | None = None

    def candidate(self, queued_ahead: bool) -> Candidate:
        return Candidate(
            operator_id=self.seat.operator_id,
            status="online" if self.online else "offline",
            open_conversations=self.open,
            capacity=self.seat.capacity,
            skills=self.seat.skills,
            last_assigned_at=self.last_assigned_at,
            queued_ahead=queued_ahead,
        )


def _queue_key(arrival: Arrival) -> tuple[int, datetime, str]:
    # The team queue's order: priority (higher first), then waiting time, then id.
    return (-arrival.priority, arrival.at, arrival.conversation_id)


def simulate(scenario: Scenario) -> Outcome:
    """Replay the arrivals against the seats and their presence; each placement is ``decide(policy, ...)``."""
    operators = {seat.operator_id: _Operator(seat, last_assigned_at=seat.last_assigned_at) for seat in scenario.seats}
    events: list[tuple[datetime, int, int, Arrival | uuid.UUID]] = []

    order = itertools.count()

    def push(at: datetime, kind: int, subject: Arrival | uuid.UUID) -> None:
        # The running number breaks ties in the order events were made, and keeps subjects uncompared.
        heapq.heappush(events, (at, kind, next(order), subject))

    for span in scenario.presence:
        if span.operator_id in operators and span.start < span.end:
            push(span.start, _ONLINE, span.operator_id)
            push(span.end, _OFFLINE, span.operator_id)
    has_hours = scenario.schedule != calendar.ALWAYS_OPEN
    if has_hours and scenario.arrivals:
        start = min(arrival.at for arrival in scenario.arrivals)
        for opens, _ in calendar.spans(scenario.schedule, start):
            if opens >= scenario.end:
                break
            if opens > start:
                push(opens, _OPENS, uuid.UUID(int=0))
    for arrival in scenario.arrivals:
        push(arrival.at, _ARRIVES, arrival)
        if arrival.patience_seconds is not None:
            push(arrival.at + timedelta(seconds=arrival.patience_seconds), _LEAVES, arrival)

    # The queue, kept per set of required skills (each part in queue order): a drain then looks only at the
    # parts someone with room could take, so a long queue nobody can serve costs nothing per event.
    queue: dict[frozenset[str], list[tuple[tuple[int, datetime, str], Arrival]]] = {}
    waiting: set[str] = set()
    served: list[Served] = []
    abandoned: list[str] = []

    def drain(now: datetime) -> None:
        """Serve the queue in order while someone has room, as ``drain_team_queue`` does.

        The first waiting conversation some member with room has the skills for goes through ``decide()``.
        Conversations before it that nobody with room could take cannot change the result: a member who could
        take one of them is not eligible (offline, full or without its skills). A part whose first
        conversation ``decide()`` refuses is passed over, and holds the members who could take it (as
        ``queued_ahead`` does in the router).
        """
        if has_hours and not calendar.is_open(scenario.schedule, now):
            return  # closed: the queue waits for the opening
        passed: list[frozenset[str]] = []
        while True:
            room = [op for op in operators.values() if op.online and op.open < op.seat.capacity]
            heads = [
                (part[0], needs)
                for needs, part in queue.items()
                if part and needs not in passed and any(needs <= op.seat.skills for op in room)
            ]
            if not heads:
                return
            (_, arrival), needs = min(heads, key=lambda head: head[0][0])
            # Only members with room are offered: ``decide()`` would exclude the others (offline or at capacity)
            # whatever else they are, so its ranking is the same, and a large team costs less per decision.
            candidates = [op.candidate(any(other <= op.seat.skills for other in passed)) for op in room]
            decision = decide(scenario.policy, candidates, required_skills=arrival.required_skills)
            if not decision.ranked:
                passed.append(needs)
                continue
            chosen = operators[decision.ranked[0]]
            chosen.open += 1
            chosen.last_assigned_at = now
            handle = arrival.handle_seconds
            held = scenario.default_handle_seconds if handle is None else handle
            push(now + timedelta(seconds=held), _FREED, chosen.seat.operator_id)
            served.append(Served(arrival.conversation_id, chosen.seat.operator_id, (now - arrival.at).total_seconds()))
            waiting.discard(arrival.conversation_id)
            del queue[needs][0]

    while events and events[0][0] < scenario.end:
        now, kind, _, subject = heapq.heappop(events)
        if kind == _OPENS:
            pass  # only the drain below
        elif isinstance(subject, uuid.UUID):
            operator = operators[subject]
            if kind == _FREED:
                operator.open -= 1
            else:
                operator.online += 1 if kind == _ONLINE else -1
        elif kind == _ARRIVES:
            insort(queue.setdefault(subject.required_skills, []), (_queue_key(subject), subject), key=lambda i: i[0])
            waiting.add(subject.conversation_id)
        else:
            if subject.conversation_id in waiting:
                waiting.discard(subject.conversation_id)
                part = queue[subject.required_skills]
                del part[bisect_left(part, _queue_key(subject), key=lambda item: item[0])]
                abandoned.append(subject.conversation_id)
            continue
        if kind != _OFFLINE:
            drain(now)
    left = sorted(item for part in queue.values() for item in part)
    return Outcome(tuple(served), tuple(abandoned), tuple(arrival.conversation_id for _, arrival in left))
