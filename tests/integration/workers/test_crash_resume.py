"""A worker process killed (SIGKILL) mid-job: another worker's sweep finishes its routing job, timer firing and
webhook delivery, each exactly once in effect."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncEngine

from service.settings import Settings
from tests.support.crash import crash_mid_work
from tests.support.routing import rows, state

# A killed worker's work resumes at the next sweep (every 5 s) once it is found undone (a lease lapses
# within 6 s); 15 s leaves room for a loaded machine. bench/crash_resume.py measures it.
RESUME_LIMIT_SECONDS = 15


async def test_a_killed_worker_s_jobs_are_finished_by_another_once(settings: Settings, clean_db: AsyncEngine) -> None:
    crash = await crash_mid_work(settings, clean_db, limit=RESUME_LIMIT_SECONDS)

    assert sorted(crash.done_after) == ["outbox", "routing", "timer"], crash.done_after
    print("done after the kill (s):", crash.done_after)
    # Routing: assigned once, one decision.
    second = ({*crash.operators} - {crash.first}).pop()
    assignments = await rows(
        clean_db, "SELECT operator_id, reason FROM assignment WHERE conversation_id = :id", id=crash.routed
    )
    assert len(assignments) == 1 and assignments[0]["reason"] == "routed"
    decisions = await rows(
        clean_db, "SELECT outcome FROM routing_decision WHERE conversation_id = :id", id=crash.routed
    )
    assert decisions == [{"outcome": "assigned"}]
    # The timer fired once: its conversation went from the first operator to the other, once.
    history = await rows(
        clean_db,
        "SELECT operator_id, reason, end_reason FROM assignment WHERE conversation_id = :id ORDER BY id",
        id=crash.timed,
    )
    assert history == [
        {"operator_id": crash.first, "reason": "routed", "end_reason": "first_response_timeout"},
        {"operator_id": second, "reason": "first_response_timeout", "end_reason": None},
    ]
    # Fired, then armed again for the new assignee.
    assert await rows(clean_db, "SELECT revision, state FROM timer WHERE id = :id", id=crash.timer_id) == [
        {"revision": 2, "state": "pending"}
    ]
    # The delivery: the killed worker's request never got its answer; the second one did, and it is final.
    # (The endpoint also gets the routing's events, other deliveries.)
    ours = str(crash.outbox_id)
    assert crash.receiver.deliveries[0] == ours
    assert ([d for d in crash.receiver.deliveries if d == ours], [d for d in crash.receiver.answered if d == ours]) == (
        [ours, ours],
        [ours],
    )
    assert await rows(clean_db, "SELECT attempts, status_code FROM outbox WHERE id = :id", id=crash.outbox_id) == [
        {"attempts": 1, "status_code": 200}
    ]
    assert (await state(clean_db, crash.routed))["status"] == "assigned"
