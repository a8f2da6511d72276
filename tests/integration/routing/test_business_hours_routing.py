"""Routing outside business hours through real workers, on a shifted clock: wait, overflow, AI, and the opening."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from arq import create_pool
from redis.asyncio import Redis
from sqlalchemy.ext.asyncio import AsyncEngine

from service.hours import calendar, clock
from service.hours.services import arm_opening
from service.queue import DRAIN_WINDOW_SECONDS, enqueue_drain, enqueue_route
from service.resources import redis_settings
from service.settings import Settings
from service.timers.services import triggers
from tests.factories import add_member, make_operator, make_team
from tests.integration.timers.test_timers import team_with
from tests.integration.workers.test_worker import run_burst
from tests.support.redis_keys import delete_deployment_keys
from tests.support.routing import make_conversation, rows, state
from tests.support.routing_worker import worker_processes

PARIS_OFFICE = {
    "timeZone": "Europe/Paris",
    "weekly": {day: ["09:00-17:30"] for day in ("mon", "tue", "wed", "thu", "fri")},
    "holidays": ["2026-12-25"],
}
SCHEDULE = calendar.parse_schedule(PARIS_OFFICE)
MONDAY_OPENING = datetime(2026, 12, 7, 8, 0, tzinfo=UTC)  # 09:00 in Paris
TUESDAY_OPENING = datetime(2026, 12, 8, 8, 0, tzinfo=UTC)
SATURDAY_NOON = datetime(2026, 12, 5, 11, 0, tzinfo=UTC)


def shifted(settings: Settings, business_now: datetime) -> Settings:
    """These settings with a clock that reads ``business_now`` at this moment; this process uses it too."""
    moved = settings.model_copy(update={"clock_offset_seconds": (business_now - datetime.now(UTC)).total_seconds()})
    clock.configure(moved)
    return moved


@pytest.fixture(autouse=True)
def real_clock(settings: Settings) -> Any:
    yield
    clock.configure(settings)


async def until(check: Callable[[], Awaitable[bool]], seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while not await check():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.1)


async def office(engine: AsyncEngine, *members: str, **team: Any) -> tuple[uuid.UUID, list[uuid.UUID]]:
    """A round-robin team with Paris office hours and these members online."""
    return await team_with(engine, *members, business_hours=PARIS_OFFICE, **team)


async def route_in_burst(
    moved: Settings, engine: AsyncEngine, team_id: uuid.UUID, *, drain: bool = False, **values: Any
) -> str:
    """A new conversation of the team, routed by an in-process burst worker (and the team drained, if asked):
    only those jobs run, no sweep, so the timers they set are left for the test to read."""
    conversation_id, revision = await make_conversation(engine, team_id, **values)
    arq = await create_pool(redis_settings(moved), default_queue_name=moved.queue_name)
    await enqueue_route(arq, conversation_id, revision, trigger="visitor_message")
    if drain:
        await enqueue_drain(arq, team_id, trigger="operator_online")
        # The drain waits for its window's end. Both jobs must be due at the worker's first poll: a burst
        # worker counts a job that finished between polls twice, so with max_burst_jobs=2 it could stop
        # after the routing job alone.
        await asyncio.sleep(DRAIN_WINDOW_SECONDS)
    await arq.aclose()
    jobs = 2 if drain else 1
    worker = await run_burst(moved, cron_jobs=[], max_burst_jobs=jobs)
    assert (worker.jobs_complete, worker.jobs_failed) == (jobs, 0)
    return conversation_id


async def decisions(engine: AsyncEngine, conversation_id: str) -> list[dict[str, Any]]:
    return await rows(
        engine,
        "SELECT team_id, trigger, outcome, reason, chosen_operator_id FROM routing_decision "
        "WHERE conversation_id = :id ORDER BY id",
        id=conversation_id,
    )


async def test_closed_team_queues_until_its_opening_timer_drains_it(settings: Settings, clean_db: AsyncEngine) -> None:
    # Monday 08:59:35 in Paris: 25 seconds before the team opens (worker processes start slowly on a busy machine).
    moved = shifted(settings, MONDAY_OPENING - timedelta(seconds=25))
    team_id, [ada] = await office(clean_db, "Ada")
    arq = await create_pool(redis_settings(moved), default_queue_name=moved.queue_name)
    async with triggers(arq), clean_db.begin() as conn:
        assert await arm_opening(conn, team_id, SCHEDULE) == MONDAY_OPENING
    conversation_id, revision = await make_conversation(clean_db, team_id)
    await enqueue_route(arq, conversation_id, revision, trigger="visitor_message")
    await arq.aclose()

    # No sweep: the opening's own trigger does it.
    async with worker_processes(moved, 2):

        async def queued() -> bool:
            return (await state(clean_db, conversation_id))["status"] == "queued"

        await until(queued, 20)
        assert clock.now() < MONDAY_OPENING
        assert await decisions(clean_db, conversation_id) == [
            {
                "team_id": team_id,
                "trigger": "visitor_message",
                "outcome": "queued",
                "reason": "outside_hours",
                "chosen_operator_id": None,
            }
        ]

        async def assigned() -> bool:
            return (await state(clean_db, conversation_id))["status"] == "assigned"

        await until(assigned, 45)
        assert clock.now() >= MONDAY_OPENING

    assert await state(clean_db, conversation_id) == {"status": "assigned", "team_id": team_id, "assignee_id": ada}
    assert (await decisions(clean_db, conversation_id))[1:] == [
        {"team_id": team_id, "trigger": "hours_open", "outcome": "assigned", "reason": None, "chosen_operator_id": ada}
    ]
    # The widgets of the team's visitors are told someone is online now.
    availability = await rows(clean_db, "SELECT team_id, data FROM event WHERE kind = 'team.availability'")
    assert availability == [{"team_id": team_id, "data": {"teamId": str(team_id), "online": True}}]
    # Fired once (revision 1), and set again for Tuesday's opening (revision 2).
    assert await opening_timer(clean_db) == {
        "subject": str(team_id),
        "revision": 2,
        "state": "pending",
        "due_at": clock.to_real(TUESDAY_OPENING),
    }


async def opening_timer(engine: AsyncEngine) -> dict[str, Any]:
    [timer] = await rows(engine, "SELECT subject, revision, state, due_at FROM timer WHERE kind = 'hours_open'")
    return timer


async def test_an_opening_redis_forgot_is_fired_once_by_the_sweep(
    settings: Settings, clean_db: AsyncEngine, redis: Redis
) -> None:
    moved = shifted(settings, MONDAY_OPENING - timedelta(seconds=2))
    team_id, [ada] = await office(clean_db, "Ada")
    arq = await create_pool(redis_settings(moved), default_queue_name=moved.queue_name)
    async with triggers(arq), clean_db.begin() as conn:
        await arm_opening(conn, team_id, SCHEDULE)
    await arq.aclose()
    conversation_id, _ = await make_conversation(clean_db, team_id, status="queued")
    await delete_deployment_keys(redis, moved.redis_prefix)

    async with worker_processes(moved, 2, sweep=True):

        async def rearmed() -> bool:
            return (await opening_timer(clean_db))["revision"] == 2

        await until(rearmed, 30)
        assert await until_assigned(clean_db, conversation_id) == ada
    assert await opening_timer(clean_db) == {
        "subject": str(team_id),
        "revision": 2,
        "state": "pending",
        "due_at": clock.to_real(TUESDAY_OPENING),
    }


async def until_assigned(engine: AsyncEngine, conversation_id: str) -> uuid.UUID:
    async def assigned() -> bool:
        return (await state(engine, conversation_id))["status"] == "assigned"

    await until(assigned, 30)
    return (await state(engine, conversation_id))["assignee_id"]  # type: ignore[no-any-return]


async def test_a_closed_team_overflows_to_an_open_one(settings: Settings, clean_db: AsyncEngine) -> None:
    moved = shifted(settings, SATURDAY_NOON)
    night_id = await make_team(clean_db, "Night shift", routing_policy="round_robin")
    bob = await make_operator(clean_db, "Bob", status="online")
    await add_member(clean_db, night_id, bob)
    team_id, [_ada] = await office(clean_db, "Ada", outside_hours="overflow", outside_hours_team_id=night_id)
    conversation_id = await route_in_burst(moved, clean_db, team_id)

    assert await state(clean_db, conversation_id) == {"status": "assigned", "team_id": night_id, "assignee_id": bob}
    assert await decisions(clean_db, conversation_id) == [
        {
            "team_id": night_id,
            "trigger": "visitor_message",
            "outcome": "assigned",
            "reason": "outside_hours",
            "chosen_operator_id": bob,
        }
    ]


async def test_overflow_to_a_team_that_is_closed_too_waits_at_home(settings: Settings, clean_db: AsyncEngine) -> None:
    moved = shifted(settings, SATURDAY_NOON)
    other_id, _ = await office(clean_db, "Bob")
    team_id, _ = await office(clean_db, "Ada", outside_hours="overflow", outside_hours_team_id=other_id)
    # An operator coming online outside hours does not empty the queue either.
    conversation_id = await route_in_burst(moved, clean_db, team_id, drain=True)
    assert await state(clean_db, conversation_id) == {"status": "queued", "team_id": team_id, "assignee_id": None}
    [decision] = await decisions(clean_db, conversation_id)
    assert (decision["team_id"], decision["reason"]) == (team_id, "outside_hours")


async def test_outside_hours_the_ai_answers_at_once_and_the_conversation_waits_for_people(
    settings: Settings, clean_db: AsyncEngine
) -> None:
    moved = shifted(settings, SATURDAY_NOON)
    team_id, _ = await office(clean_db, "Ada", outside_hours="ai", ai_enabled=True, ai_takeover_delay_seconds=3600)
    sent = datetime.now(UTC)
    conversation_id = await route_in_burst(moved, clean_db, team_id, last_visitor_message_at=sent)
    assert await state(clean_db, conversation_id) == {"status": "queued", "team_id": team_id, "assignee_id": None}
    [decision] = await decisions(clean_db, conversation_id)
    assert decision["reason"] == "outside_hours"
    [timer] = await rows(clean_db, "SELECT kind, due_at FROM timer WHERE subject = :id", id=conversation_id)
    # Due now, not after the team's hour-long delay.
    assert timer["kind"] == "ai_takeover"
    assert sent <= timer["due_at"] <= datetime.now(UTC)


async def test_open_team_routes_as_always(settings: Settings, clean_db: AsyncEngine) -> None:
    moved = shifted(settings, MONDAY_OPENING + timedelta(hours=2))
    team_id, [ada] = await office(clean_db, "Ada", outside_hours="ai", ai_enabled=True)
    conversation_id = await route_in_burst(moved, clean_db, team_id)
    assert await state(clean_db, conversation_id) == {"status": "assigned", "team_id": team_id, "assignee_id": ada}
    [decision] = await decisions(clean_db, conversation_id)
    assert decision["reason"] is None
