"""A worker killed (SIGKILL) while it holds a routing job, a timer trigger and an outbox delivery, and how long
the other workers take to finish each piece of work: for tests/integration/workers/test_crash_resume.py and
bench/crash_resume.py.

The worker is caught mid-job deterministically: the routing job and the timer's firing wait for conversation
rows this module holds locked, and the webhook receiver does not answer the first request it gets.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from ipaddress import IPv4Network
from typing import Any

import sqlalchemy as sa
import uvicorn
from arq import create_pool
from arq.constants import in_progress_key_prefix
from redis.asyncio import Redis
from sqlalchemy.ext.asyncio import AsyncEngine

from service import queue
from service.db.transactions import in_transaction
from service.resources import redis_settings
from service.routing import placement
from service.settings import Settings
from service.timers.services import FIRST_RESPONSE
from service.webhooks import services as webhooks
from service.webhooks.schemas import WebhookEndpointCreate
from tests.factories import add_member, make_operator, make_team
from tests.support.routing import make_conversation, rows
from tests.support.routing_worker import start_worker, stop_worker


@asynccontextmanager
async def serve_hook(app: Any) -> AsyncIterator[str]:
    """Serve an ASGI receiver on a free loopback port for the block; yields its ``/hook`` URL."""
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_config=None, lifespan="off"))
    task = asyncio.create_task(server.serve())
    while not server.started:  # noqa: ASYNC110  (uvicorn offers no event to wait on)
        await asyncio.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{server.servers[0].sockets[0].getsockname()[1]}/hook"
    finally:
        server.should_exit = True
        await task


class StallingReceiver:
    """A webhook receiver on loopback that never answers its first request, and answers 200 to the others."""

    def __init__(self) -> None:
        self.deliveries: list[str] = []  # the Switchboard-Delivery header of each request, as it arrives
        self.answered: list[str] = []
        self._release = asyncio.Event()

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        more = True
        while more:
            more = (await receive()).get("more_body", False)
        delivery = dict(scope["headers"]).get(b"switchboard-delivery", b"").decode()
        self.deliveries.append(delivery)
        if len(self.deliveries) == 1:
            await self._release.wait()  # the sender is killed meanwhile
            return
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]})
        await send({"type": "http.response.body", "body": b"ok"})
        self.answered.append(delivery)

    @asynccontextmanager
    async def serving(self) -> AsyncIterator[str]:
        async with serve_hook(self) as url:
            try:
                yield url
            finally:
                self._release.set()  # before the server stops: it waits for the stalled request


@dataclass
class Crash:
    """What was left with the killed worker, and when (seconds after the kill) each piece was done."""

    routed: str  # the conversation whose routing job was running
    timed: str  # the conversation whose first-response timer was firing
    timer_id: int
    outbox_id: int
    first: uuid.UUID  # who held ``timed`` before its timer fired
    operators: tuple[uuid.UUID, uuid.UUID]
    receiver: StallingReceiver
    done_after: dict[str, float] = field(default_factory=dict)


async def _held_jobs(redis: Redis, job_ids: list[str]) -> bool:
    return all([await redis.exists(in_progress_key_prefix + job_id) for job_id in job_ids])


async def _waiting_on_locks(engine: AsyncEngine) -> int:
    [row] = await rows(
        engine,
        "SELECT count(*) AS n FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'",
    )
    return int(row["n"])


async def _done(engine: AsyncEngine, crash: Crash) -> set[str]:
    [row] = await rows(
        engine,
        "SELECT (SELECT status FROM conversation WHERE id = :routed) = 'assigned' AS routing, "
        "(SELECT revision > 1 FROM timer WHERE id = :timer) AS timer, "
        "(SELECT delivered_at IS NOT NULL FROM outbox WHERE id = :outbox) AS outbox",
        routed=crash.routed,
        timer=crash.timer_id,
        outbox=crash.outbox_id,
    )
    return {name for name, done in row.items() if done}


async def crash_mid_work(settings: Settings, engine: AsyncEngine, *, limit: float) -> Crash:
    """Kill a worker holding the three jobs while another runs; wait (at most ``limit`` s) for the work to be done.

    A round-robin team of two online operators with a 1 s first-response timeout: ``timed`` is assigned (its
    timer due in a second), ``routed`` is new. The worker left standing runs the periodic sweep (started, and
    up, before the kill; its sweep comes on the schedule, not at its start-up).
    """
    # The stalled send must outlast the wait for the kill; its lease still lapses within seconds of it.
    # The receiver listens on loopback, which webhooks may reach only when allowed.
    settings = settings.model_copy(
        update={"webhook_timeout_seconds": 120.0, "webhook_allowed_cidrs": [IPv4Network("127.0.0.1/32")]}
    )
    team = await make_team(engine, routing_policy="round_robin", first_response_timeout_seconds=1)
    operators = (
        await make_operator(engine, "Ada", status="online"),
        await make_operator(engine, "Bob", status="online"),
    )
    for operator_id in operators:
        await add_member(engine, team, operator_id)
    timed, _ = await make_conversation(engine, team)
    outcome = await in_transaction(engine, lambda conn: placement.route_conversation(conn, timed, 1, "test"))
    assert outcome.outcome == "assigned" and outcome.operator_id is not None
    [timer] = await rows(engine, "SELECT id, revision, due_at FROM timer WHERE kind = :k", k=FIRST_RESPONSE)
    # Later timers (the next operator's) wait an hour: only this one fires here.
    async with engine.begin() as conn:
        await conn.execute(
            sa.text("UPDATE team SET first_response_timeout_seconds = 3600 WHERE id = :id"), {"id": team}
        )
    routed, _ = await make_conversation(engine, team)
    receiver = StallingReceiver()
    arq = await create_pool(redis_settings(settings), default_queue_name=settings.queue_name)
    async with receiver.serving() as url, engine.connect() as holder:
        async with engine.begin() as conn:
            endpoint = await webhooks.create_endpoint(conn, team, WebhookEndpointCreate(url=url), settings)
            outbox_id = (await webhooks.add_test(conn, team, endpoint.id)).id
        crash = Crash(routed, timed, timer["id"], outbox_id, outcome.operator_id, operators, receiver)
        # Hold both conversations: the routing job and the firing wait for them, inside their jobs.
        await holder.execute(
            sa.text("SELECT id FROM conversation WHERE id IN (:a, :b) FOR UPDATE"), {"a": routed, "b": timed}
        )
        doomed = await start_worker(settings)
        await queue.enqueue_route(arq, routed, 1, "test")
        await queue.enqueue_trigger(arq, queue.Trigger(timer["id"], timer["revision"], timer["due_at"]))
        await queue.enqueue_delivery(arq, outbox_id)
        name = settings.queue_name
        jobs = [
            queue.route_job_id(name, routed, 1),
            queue.timer_job_id(name, timer["id"], timer["revision"]),
            queue.outbox_job_id(name, outbox_id),
        ]
        while not (await _held_jobs(arq, jobs) and receiver.deliveries and await _waiting_on_locks(engine) == 2):  # noqa: ASYNC110
            await asyncio.sleep(0.05)
        # The other worker is up (it wrote arq's health-check key, which the doomed one rewrites only
        # once a minute) before the kill, as in a running deployment.
        await arq.delete(f"{settings.queue_name}:health-check")
        survivor = await start_worker(settings, sweep=True)
        while not await arq.exists(f"{settings.queue_name}:health-check"):  # noqa: ASYNC110
            await asyncio.sleep(0.05)
        try:
            doomed.kill()
            assert await doomed.wait() == -9
            killed_at = time.monotonic()
            await holder.rollback()
            while len(crash.done_after) < 3 and time.monotonic() - killed_at < limit:
                for name in await _done(engine, crash) - set(crash.done_after):
                    crash.done_after[name] = round(time.monotonic() - killed_at, 2)
                await asyncio.sleep(0.05)
        finally:
            assert await stop_worker(survivor) == 0
            await arq.aclose()
    return crash
