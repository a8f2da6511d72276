"""Queue order under races, for tests/integration/routing/test_queue_order.py and bench/queue_order.py.

Conversations of mixed priorities and skills are routed by ``ROUTERS`` concurrent routers while operators
flap online and offline (through the presence service, drains by real worker processes) and conversations
are closed. Then the assignment history is replayed: ``out_of_order`` lists every automatic assignment
made while a conversation of the same team that comes first in queue order (higher priority, or the
same and waiting longer), and that the operator could take (skills), was waiting in the queue.
"""

from __future__ import annotations

import asyncio
import random
import uuid
from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa
from arq import create_pool
from redis.asyncio import Redis
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from service.db.models import Conversation
from service.db.transactions import in_transaction
from service.errors import Conflict
from service.presence.services import ClientRef, choose
from service.queue import enqueue_drain
from service.resources import redis_settings
from service.routing import handoff, placement
from service.settings import Settings
from tests.factories import add_member, make_operator, make_team
from tests.support.routing import rows
from tests.support.routing_worker import wait_until_idle, worker_processes

ROUTERS = 4
WORKERS = 2
OPERATORS = 6

# A queued stretch of each conversation: from its ``queued`` decision (the statement's clock) until it
# was next assigned, queued again or closed.
_OUT_OF_ORDER = """
WITH waits AS (
    SELECT d.conversation_id AS q, d.team_id, d.created_at AS since, least(
        (SELECT min(a.started_at) FROM assignment a
         WHERE a.conversation_id = d.conversation_id AND a.started_at > d.created_at),
        (SELECT min(d2.created_at) FROM routing_decision d2
         WHERE d2.conversation_id = d.conversation_id AND d2.outcome = 'queued' AND d2.created_at > d.created_at),
        (SELECT c.closed_at FROM conversation c WHERE c.id = d.conversation_id AND c.closed_at > d.created_at)
    ) AS until
    FROM routing_decision d WHERE d.outcome = 'queued'
)
SELECT a.id AS assignment_id, a.conversation_id, w.q AS waiting
FROM assignment a
JOIN conversation n ON n.id = a.conversation_id
JOIN waits w ON w.team_id = a.team_id AND w.q <> a.conversation_id
    AND w.since < a.started_at AND (w.until IS NULL OR a.started_at < w.until)
JOIN conversation q ON q.id = w.q
JOIN team_member m ON m.team_id = a.team_id AND m.operator_id = a.operator_id
WHERE a.reason = 'routed'
  AND (q.priority > n.priority OR (q.priority = n.priority AND (q.waiting_since, q.id) < (n.waiting_since, n.id)))
  AND skill_ladder(m.skills) @> q.required_skills AND NOT (a.operator_id = ANY(q.excluded_operators))
ORDER BY a.id
"""


async def setup(
    engine: AsyncEngine, rng: random.Random, conversations: int
) -> tuple[uuid.UUID, list[uuid.UUID], list[str]]:
    """A least-busy team of operators (some speak French), half of them online, and the conversations, oldest
    first: priorities 0-2, one in five asking for French."""
    team = await make_team(engine, "Support", is_default=True, routing_policy="least_busy", default_capacity=2)
    ops = []
    for n in range(OPERATORS):
        operator_id = await make_operator(engine, f"Op{n}", status="online" if n % 2 else "offline")
        await add_member(engine, team, operator_id, skills=["fr"] if n % 3 == 0 else [])
        ops.append(operator_id)
    start = datetime.now(UTC) - timedelta(hours=1)
    values = [
        {
            "id": f"conv-{n:05d}",
            "visitor_id": f"visitor-{n}",
            "status": "new",
            "routing_revision": 1,
            "team_id": team,
            "waiting_since": start + timedelta(milliseconds=n),
            "created_at": start,
            "last_activity": start,
            "priority": rng.choice((0, 0, 1, 2)),
            "required_skills": ["fr"] if rng.random() < 0.2 else [],
        }
        for n in range(conversations)
    ]
    async with engine.begin() as conn:
        await conn.execute(sa.insert(Conversation.__table__), values)  # type: ignore[attr-defined]
    return team, ops, [v["id"] for v in values]


async def _router(database_url: str, conversation_ids: list[str], rng: random.Random) -> None:
    engine = create_async_engine(database_url.replace("postgresql://", "postgresql+asyncpg://"), pool_size=1)
    try:
        for conversation_id in conversation_ids:
            await in_transaction(engine, lambda c, cid=conversation_id: placement.route_conversation(c, cid, 1, "test"))
            # Paced so that arrivals keep coming while closes free slots: on a fast machine unpaced routers
            # finish before the first close, and no arrival ever meets a free slot with older ones waiting.
            await asyncio.sleep(rng.uniform(0, 0.02))
    finally:
        await engine.dispose()


# The operators' one client in the race: an api client, which lives until the operator goes offline.
FLAPPER = ClientRef("queue-order", "api")


async def race(settings: Settings, engine: AsyncEngine, *, seed: int, conversations: int) -> Counter[str]:
    """Route ``conversations`` with ``ROUTERS`` routers while operators flap and conversations close."""
    rng = random.Random(seed)
    _, ops, ids = await setup(engine, rng, conversations)
    counts: Counter[str] = Counter()
    stop = asyncio.Event()
    arq = await create_pool(redis_settings(settings), default_queue_name=settings.queue_name)

    async def flap() -> None:
        while not stop.is_set():
            operator_id, status = rng.choice(ops), rng.choice(("online", "online", "offline"))
            change = await in_transaction(
                engine, lambda c, o=operator_id, s=status: choose(c, o, s, client=FLAPPER, lease=60, reason="test")
            )
            for team_id in change.drain_teams:  # as the presence API does, after the commit
                await enqueue_drain(arq, team_id, "operator_online")
            counts["flap"] += 1
            await asyncio.sleep(rng.uniform(0.005, 0.03))

    async def close() -> None:
        while not stop.is_set():
            found = await rows(
                engine, "SELECT id FROM conversation WHERE status = 'assigned' ORDER BY random() LIMIT 1"
            )
            if found:
                try:
                    await in_transaction(
                        engine, lambda c, cid=found[0]["id"]: handoff.close_conversation(c, cid, actor_id=None)
                    )
                    counts["close"] += 1
                except Conflict:
                    pass
            await asyncio.sleep(rng.uniform(0.01, 0.04))

    async with worker_processes(settings, WORKERS):
        chaos = [asyncio.create_task(flap()), asyncio.create_task(close())]
        shares = [ids[n::ROUTERS] for n in range(ROUTERS)]
        for share in shares:
            rng.shuffle(share)  # events arrive in any order
        await asyncio.gather(
            *(_router(settings.database_url, share, random.Random(seed * 10 + n)) for n, share in enumerate(shares))
        )
        stop.set()
        await asyncio.gather(*chaos)
        redis = Redis.from_url(settings.redis_url)
        await wait_until_idle(redis, settings.queue_name)
        await redis.aclose()
    await arq.aclose()
    for row in await rows(engine, "SELECT outcome, count(*) AS n FROM routing_decision GROUP BY outcome"):
        counts[row["outcome"]] = row["n"]
    [ahead] = await rows(
        engine, 'SELECT count(*) AS n FROM routing_decision WHERE candidates @> \'[{"excluded": "queued_ahead"}]\''
    )
    counts["queued_ahead"] = ahead["n"]
    return counts


async def out_of_order(engine: AsyncEngine) -> list[dict[str, Any]]:
    """Automatic assignments made while a conversation that comes first, and the operator could take, waited."""
    return await rows(engine, _OUT_OF_ORDER)
