"""The job queue's names are the worker's functions, and its job ids are the versioned schemes the jobs rely on."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

from service import queue
from workers import jobs


class FakeArq:
    """Records what would have been enqueued."""

    default_queue_name = "sb:queue"

    def __init__(self) -> None:
        self.jobs: list[tuple[str, dict[str, object]]] = []

    async def enqueue_job(self, name: str, **kwargs: object) -> None:
        self.jobs.append((name, kwargs))


def test_job_names_are_the_worker_functions() -> None:
    assert queue.ROUTE_JOB == jobs.route_conversation.__name__
    assert queue.DRAIN_JOB == jobs.drain_team_queue.__name__
    assert queue.FIRE_TIMER_JOB == jobs.fire_timer.__name__


def test_job_ids_are_versioned_and_start_with_the_queue_name() -> None:
    team = uuid.UUID(int=7)
    assert queue.route_job_id("sb:queue", "c-1", 3) == "sb:queue:route:c-1:3"
    assert queue.route_job_id("sb:queue", "c-1", 3, "sweep9") == "sb:queue:route:c-1:3:sweep9"
    assert queue.timer_job_id("sb:queue", 12, 4) == "sb:queue:timer:12:4"
    assert queue.timer_job_id("sb:queue", 12, 4, "sweep9") == "sb:queue:timer:12:4:sweep9"
    assert queue.drain_job_id("sb:queue", team, 99) == f"sb:queue:drain:{team}:99"
    assert queue.outbox_job_id("sb:queue", 5) == "sb:queue:outbox:5"
    assert queue.outbox_job_id("sb:queue", 5, 2, "sweep9") == "sb:queue:outbox:5:2:sweep9"


async def test_enqueues_carry_the_job_ids() -> None:
    arq = FakeArq()
    due = datetime(2026, 11, 1, 9, 0, tzinfo=UTC)
    await queue.enqueue_route(arq, "c-1", 3, trigger="visitor_message")  # type: ignore[arg-type]
    await queue.enqueue_trigger(arq, queue.Trigger(12, 4, due))  # type: ignore[arg-type]
    assert arq.jobs == [
        (
            "route_conversation",
            {"conversation_id": "c-1", "revision": 3, "trigger": "visitor_message", "_job_id": "sb:queue:route:c-1:3"},
        ),
        ("fire_timer", {"timer_id": 12, "revision": 4, "_job_id": "sb:queue:timer:12:4", "_defer_until": due}),
    ]
