"""The replay engine and its figures on small hand-made scenarios, each outcome worked out in the comments."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest

from service.hours import calendar
from service.routing import policies
from service.simulator import engine
from service.simulator.engine import Arrival, OnlineSpan, Outcome, Scenario, Seat, Served, simulate
from service.simulator.figures import figures, jain_index, percentile

T0 = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)
A, B = uuid.UUID(int=1), uuid.UUID(int=2)


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def arrival(name: str, seconds: float, handle: float = 60, **values: object) -> Arrival:
    return Arrival(name, at(seconds), handle_seconds=handle, **values)  # type: ignore[arg-type]


def scenario(arrivals: list[Arrival], seats: list[Seat], spans: list[OnlineSpan], **values: object) -> Scenario:
    base: dict[str, object] = {"policy": "least_busy", "end": at(3600)}
    return Scenario(seats=seats, arrivals=arrivals, presence=spans, **(base | values))  # type: ignore[arg-type]


def waits(outcome: Outcome) -> dict[str, tuple[uuid.UUID, float]]:
    return {s.conversation_id: (s.operator_id, s.wait_seconds) for s in outcome.served}  # type: ignore[misc]


def test_one_slot_serves_in_queue_order() -> None:
    # One operator, capacity 1, online from 0: c1 at 0 (held 60 s), c2 at 10 waits until 60,
    # c3 at 20 with priority 1 jumps c2 and is served at 60; c2 then at 120.
    outcome = simulate(
        scenario(
            [arrival("c1", 0), arrival("c2", 10), arrival("c3", 20, priority=1)],
            [Seat(A, 1)],
            [OnlineSpan(A, at(0), at(3600))],
        )
    )
    assert waits(outcome) == {"c1": (A, 0.0), "c3": (A, 40.0), "c2": (A, 110.0)}
    assert outcome.abandoned == () and outcome.unanswered == ()


def test_presence_skills_patience_and_the_end() -> None:
    # B comes online at 30. c1 needs "fr", which only B has: it waits 30 s. c2 (no skill) goes to A at 5.
    # c3 at 100 leaves after 20 s while A and B are busy (A holds c2 until 305, B c1 until 330);
    # c4 at 3590 is not served by the end (3600): unanswered.
    outcome = simulate(
        scenario(
            [
                arrival("c1", 0, 300, required_skills=frozenset({"fr"})),
                arrival("c2", 5, 300),
                arrival("c3", 100, patience_seconds=20),
                arrival("c4", 3590),
            ],
            [Seat(A, 1), Seat(B, 1, frozenset({"fr"}))],
            [OnlineSpan(A, at(0), at(3000)), OnlineSpan(B, at(30), at(3000))],
        )
    )
    assert waits(outcome) == {"c2": (A, 0.0), "c1": (B, 30.0)}
    assert outcome.abandoned == ("c3",)
    assert outcome.unanswered == ("c4",)


def test_least_busy_and_round_robin_go_through_decide() -> None:
    # Capacity 2 each, nothing ends: least_busy gives c1 → A (tie, id), c2 → B (A at 1/2), c3 → A (tie at 1/2,
    # A assigned longer ago), c4 → B; round_robin alternates by last assignment to the same order.
    arrivals = [arrival(f"c{n}", n, 1000) for n in range(1, 5)]
    seats = [Seat(A, 2), Seat(B, 2)]
    spans = [OnlineSpan(A, at(0), at(3600)), OnlineSpan(B, at(0), at(3600))]
    least = simulate(scenario(arrivals, seats, spans))
    robin = simulate(scenario(arrivals, seats, spans, policy="round_robin"))
    assert [s.operator_id for s in least.served] == [A, B, A, B]
    assert [s.operator_id for s in robin.served] == [A, B, A, B]
    # Capacity 3 and 1: c1 → A (tie, id), c2 → B (0 < 1/3), then B is full and A takes c3 and c4.
    uneven = simulate(scenario(arrivals, [Seat(A, 3), Seat(B, 1)], spans))
    assert [s.operator_id for s in uneven.served] == [A, B, A, A]


def test_a_visitor_who_left_in_reality_is_served_with_the_default_handling_time() -> None:
    # c1 left after 50 s in reality (never assigned: no handling time). With A online it is served at once
    # and holds A for the default 200 s, so c2 at 10 waits until 200.
    outcome = simulate(
        scenario(
            [Arrival("c1", at(0), patience_seconds=50), arrival("c2", 10)],
            [Seat(A, 1)],
            [OnlineSpan(A, at(0), at(3600))],
            default_handle_seconds=200.0,
        )
    )
    assert waits(outcome) == {"c1": (A, 0.0), "c2": (A, 190.0)}


def test_the_same_scenario_gives_the_same_outcome() -> None:
    arrivals = [arrival(f"c{n:03d}", n * 7 % 600, 90 + n % 40, priority=n % 2) for n in range(200)]
    seats = [Seat(A, 2), Seat(B, 3)]
    spans = [OnlineSpan(A, at(0), at(1800)), OnlineSpan(B, at(300), at(3600))]
    assert simulate(scenario(arrivals, seats, spans)) == simulate(scenario(list(arrivals), seats, spans))


def test_percentiles_interpolate_like_percentile_cont() -> None:
    assert percentile([], 0.5) is None
    assert percentile([4.0], 0.9) == 4.0
    # position 0.9 * 3 = 2.7 → 30 + 0.7 * (40 - 30)
    assert percentile([10.0, 20.0, 30.0, 40.0], 0.9) == pytest.approx(37.0)
    assert percentile([10.0, 20.0, 30.0, 40.0], 0.5) == pytest.approx(25.0)


def test_jain_index() -> None:
    assert jain_index([]) is None
    assert jain_index([0.0, 0.0]) is None
    assert jain_index([3.0, 3.0, 3.0]) == 1.0
    assert jain_index([4.0, 0.0, 0.0, 0.0]) == 0.25  # one of four took everything: 1/n
    assert jain_index([1.0, 3.0]) == 0.8  # 16 / (2 * 10)


def test_figures() -> None:
    # 4 arrivals: waits 0, 30 and 90 (A twice, B once), one abandoned; target 60 s → 2 of 4 within.
    outcome = Outcome((Served("c1", A, 0.0), Served("c2", B, 30.0), Served("c3", A, 90.0)), ("c4",), ())
    result = figures(outcome, 4, 60, {A: 2, B: 1}, {A: "Ann", B: "Bob"})
    assert result.waits.answered == 3
    assert result.waits.average_seconds == 40.0
    assert result.waits.p50_seconds == 30.0
    assert result.waits.p90_seconds == 78.0  # 30 + 0.8 * 60
    assert result.sla_attainment == 0.5
    assert (result.abandoned, result.abandonment_rate, result.unanswered) == (1, 0.25, 0)
    assert [(o.display_name, o.assignments, o.assignments_per_slot) for o in result.operators] == [
        ("Ann", 2, 1.0),
        ("Bob", 1, 1.0),
    ]
    assert result.jain_index == 1.0  # per slot both are at 1.0


def test_queue_order_holds_across_skills_and_a_queue_nobody_can_serve_blocks_nobody() -> None:
    # Queued before anyone is online: c1 (no skill) at 0, c2 ("fr") at 1, c3 ("de", which nobody has) at 2,
    # c4 (no skill) at 3. A ("fr", capacity 1) comes online at 10 and takes the oldest it can, c1; at 70 it
    # is free and takes c2 (older than c4); c3 waits to the end without holding anyone back; c4 at 130.
    outcome = simulate(
        scenario(
            [
                arrival("c1", 0),
                arrival("c2", 1, required_skills=frozenset({"fr"})),
                arrival("c3", 2, required_skills=frozenset({"de"})),
                arrival("c4", 3),
            ],
            [Seat(A, 1, frozenset({"fr"}))],
            [OnlineSpan(A, at(10), at(3600))],
        )
    )
    assert waits(outcome) == {"c1": (A, 10.0), "c2": (A, 69.0), "c4": (A, 127.0)}
    assert outcome.unanswered == ("c3",)


def test_round_robin_starts_from_the_assignments_before_the_period() -> None:
    # B was assigned longer ago than A before the period: round robin gives B the first conversation.
    seats = [Seat(A, 2, last_assigned_at=at(-3600)), Seat(B, 2, last_assigned_at=at(-7200))]
    spans = [OnlineSpan(A, at(0), at(3600)), OnlineSpan(B, at(0), at(3600))]
    outcome = simulate(scenario([arrival("c1", 0), arrival("c2", 5)], seats, spans, policy="round_robin"))
    assert [s.operator_id for s in outcome.served] == [B, A]


def test_placements_are_the_routers_own_decide() -> None:
    # No policy logic of its own: the engine places through the function the router uses.
    assert engine.decide is policies.decide
    assert engine.Candidate is policies.Candidate


def test_outside_business_hours_the_queue_waits_for_the_opening() -> None:
    # T0 is Monday 09:00 UTC; the team opens 09:30-10:00 and 10:15-11:00 (UTC) on Mondays. A (capacity 2) is
    # online all along and each conversation holds 60 s. c1 at 0 waits for the opening at 1800; c2 at 1900 and
    # c3 at 2000 arrive while open and are served at once; c4 at 3700 comes in the 10:00-10:15 break and waits
    # until 4500.
    hours = calendar.parse_schedule({"timeZone": "UTC", "weekly": {"mon": ["09:30-10:00", "10:15-11:00"]}})
    outcome = simulate(
        scenario(
            [arrival("c1", 0), arrival("c2", 1900), arrival("c3", 2000), arrival("c4", 3700)],
            [Seat(A, 2)],
            [OnlineSpan(A, at(0), at(7200))],
            schedule=hours,
            end=at(7200),
        )
    )
    assert waits(outcome) == {"c1": (A, 1800.0), "c2": (A, 0.0), "c3": (A, 0.0), "c4": (A, 800.0)}
    # Without hours the same arrivals wait nothing.
    always = simulate(
        scenario(
            [arrival("c1", 0), arrival("c2", 1900), arrival("c3", 2000), arrival("c4", 3700)],
            [Seat(A, 2)],
            [OnlineSpan(A, at(0), at(7200))],
            end=at(7200),
        )
    )
    assert {name: wait for name, (_, wait) in waits(always).items()} == {"c1": 0.0, "c2": 0.0, "c3": 0.0, "c4": 0.0}
