"""SIGTERM while a job runs: the worker takes nothing new, lets the job finish, and exits cleanly."""

from __future__ import annotations

import asyncio
import signal

import sqlalchemy as sa
from arq import create_pool
from arq.constants import in_progress_key_prefix
from sqlalchemy.ext.asyncio import AsyncEngine

from service import queue
from service.resources import redis_settings
from service.settings import Settings
from tests.factories import add_member, make_operator, make_team
from tests.support.routing import make_conversation, rows
from tests.support.routing_worker import start_worker


async def test_a_running_job_finishes_before_the_worker_exits(settings: Settings, clean_db: AsyncEngine) -> None:
    team = await make_team(clean_db, routing_policy="round_robin")
    await add_member(clean_db, team, await make_operator(clean_db, "Ada", status="online"))
    conversation_id, _ = await make_conversation(clean_db, team)
    arq = await create_pool(redis_settings(settings), default_queue_name=settings.queue_name)
    async with clean_db.connect() as holder:
        # The routing job will wait for this row, inside the job, until the test lets go.
        await holder.execute(sa.text("SELECT 1 FROM conversation WHERE id = :id FOR UPDATE"), {"id": conversation_id})
        worker = await start_worker(settings)
        await queue.enqueue_route(arq, conversation_id, 1, "test")
        job = in_progress_key_prefix + queue.route_job_id(settings.queue_name, conversation_id, 1)
        waiting = (
            "SELECT count(*) AS n FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'"
        )
        while not (await arq.exists(job) and (await rows(clean_db, waiting))[0]["n"] == 1):  # noqa: ASYNC110
            await asyncio.sleep(0.05)
        worker.send_signal(signal.SIGTERM)
        await asyncio.sleep(1.0)  # the worker is stopping, its job still waiting
        assert worker.returncode is None
        await holder.rollback()
    assert await asyncio.wait_for(worker.wait(), timeout=settings.worker_shutdown_grace_seconds + 5) == 0
    await arq.aclose()
    assert await rows(clean_db, "SELECT status FROM conversation WHERE id = :id", id=conversation_id) == [
        {"status": "assigned"}
    ]
