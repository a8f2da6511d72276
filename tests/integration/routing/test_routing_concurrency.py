"""Property test: 600 conversations routed by 4 routers and 2 worker processes while operators flap online and
offline, capacities change, and conversations are closed, transferred and reassigned. Afterwards the history
must show no double assignee, no operator ever over capacity, and no conversation waiting beside free room.

The long run (2,000 conversations or more) is the same test with ``ROUTING_RACE_CONVERSATIONS`` set
(bench/README.md).
"""

from __future__ import annotations

import asyncio
import os
import random
import uuid
from collections import defaultdict
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from arq import create_pool
from arq.connections import ArqRedis
from redis.asyncio import Redis
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from service.db.models import Conversation
from service.db.transactions import in_transaction
from service.errors import Conflict
from service.queue import enqueue_drain, enqueue_route
from service.resources import redis_settings
from service.routing import handoff, placement
from service.settings import Settings
from tests.factories import add_member, make_operator, make_team
from tests.support.routing import rows
from tests.support.routing_worker import wait_until_idle, worker_processes

# The suite's bounded run; ROUTING_RACE_CONVERSATIONS=2000 (or more) is the long one.
CONVERSATIONS = int(os.environ.get("ROUTING_RACE_CONVERSATIONS", "600"))
ROUTERS = 4
WORKERS = 2
OPERATORS = 10
SUPPORT_MEMBERS = range(0, 7)  # operators 5 and 6 are in both teams
BILLING_MEMBERS = range(5, 10)
CAPACITY_CHOICES = (None, 0, 1, 2, 3, 4)


class Chaos:
    """Presence flaps, capacity changes, closes, transfers and reassignments until told to stop."""

    def __init__(self, engine: AsyncEngine, arq: ArqRedis, teams: dict[str, uuid.UUID], ops: list[uuid.UUID]) -> None:
        self.engine, self.arq, self.teams, self.ops = engine, arq, teams, ops
        self.stop = asyncio.Event()
        self.rng = random.Random(7)
        self.capacities: dict[tuple[uuid.UUID, uuid.UUID], set[int | None]] = defaultdict(lambda: {None})
        self.counts: dict[str, int] = defaultdict(int)
        self.closed: set[str] = set()

    def memberships(self, operator_id: uuid.UUID) -> list[uuid.UUID]:
        n = self.ops.index(operator_id)
        return [t for name, t in self.teams.items() if n in (SUPPORT_MEMBERS if name == "support" else BILLING_MEMBERS)]

    async def loop(self, pause: float, step: Callable[[], Awaitable[None]]) -> None:
        while not self.stop.is_set():
            try:
                await step()
            except Conflict:
                self.counts["conflict"] += 1
            await asyncio.sleep(pause)

    async def flap(self) -> None:
        operator_id = self.rng.choice(self.ops)
        status = self.rng.choice(("online", "online", "offline", "away"))
        await in_transaction(
            self.engine,
            lambda c: c.execute(
                sa.text("UPDATE operator SET status = :s WHERE id = :id"), {"s": status, "id": operator_id}
            ),
        )
        # As presence will: after the change commits, ask a worker to drain the operator's teams.
        for team_id in self.memberships(operator_id):
            await enqueue_drain(self.arq, team_id, "presence")
        self.counts["flap"] += 1

    async def change_capacity(self) -> None:
        operator_id = self.rng.choice(self.ops)
        team_id = self.rng.choice(self.memberships(operator_id))
        capacity = self.rng.choice(CAPACITY_CHOICES)
        self.capacities[(team_id, operator_id)].add(capacity)
        await in_transaction(
            self.engine,
            lambda c: c.execute(
                sa.text("UPDATE team_member SET capacity = :c WHERE team_id = :t AND operator_id = :o"),
                {"c": capacity, "t": team_id, "o": operator_id},
            ),
        )
        await in_transaction(self.engine, lambda c: placement.drain_team_queue(c, team_id, "capacity"))
        self.counts["capacity"] += 1

    async def assigned_conversation(self) -> Any:
        found = await rows(
            self.engine,
            "SELECT id, team_id, assignee_id FROM conversation WHERE status = 'assigned' ORDER BY random() LIMIT 1",
        )
        return found[0] if found else None

    async def close(self) -> None:
        if conv := await self.assigned_conversation():
            await in_transaction(self.engine, lambda c: handoff.close_conversation(c, conv["id"], actor_id=None))
            self.closed.add(conv["id"])
            self.counts["close"] += 1

    async def transfer(self) -> None:
        if not (conv := await self.assigned_conversation()):
            return
        actor = conv["assignee_id"]
        if self.rng.random() < 0.5:
            other = next(t for t in self.teams.values() if t != conv["team_id"])
            await in_transaction(
                self.engine, lambda c: handoff.transfer_to_team(c, conv["id"], other, actor_id=actor, note="chaos")
            )
            self.counts["transfer_team"] += 1
        else:
            members = [o for o in self.ops if conv["team_id"] in self.memberships(o) and o != actor]
            target = self.rng.choice(members)
            await in_transaction(
                self.engine, lambda c: handoff.transfer_to_operator(c, conv["id"], target, actor_id=actor)
            )
            self.counts["transfer_operator"] += 1

    async def reassign(self) -> None:
        if conv := await self.assigned_conversation():
            await in_transaction(
                self.engine,
                lambda c: handoff.reassign(
                    c, conv["id"], reason="timeout_reassigned", exclude_operator_id=conv["assignee_id"]
                ),
            )
            self.counts["reassign"] += 1

    def tasks(self) -> list[asyncio.Task[None]]:
        steps = [
            (0.03, self.flap),
            (0.08, self.change_capacity),
            (0.03, self.close),
            (0.06, self.transfer),
            (0.1, self.reassign),
        ]
        return [asyncio.create_task(self.loop(pause, step)) for pause, step in steps]


async def setup(engine: AsyncEngine) -> tuple[dict[str, uuid.UUID], list[uuid.UUID], list[str]]:
    support = await make_team(engine, "Support", is_default=True, routing_policy="least_busy", default_capacity=3)
    billing = await make_team(engine, "Billing", routing_policy="round_robin", default_capacity=2)
    ops = []
    for n in range(OPERATORS):
        operator_id = await make_operator(engine, f"Op{n}", status="online")
        ops.append(operator_id)
        skills = ["fr"] if n % 3 == 0 else []
        if n in SUPPORT_MEMBERS:
            await add_member(engine, support, operator_id, skills=skills)
        if n in BILLING_MEMBERS:
            await add_member(engine, billing, operator_id, skills=skills)
    rng = random.Random(3)
    now = datetime.now(UTC)
    conversations = [
        {
            "id": f"conv-{n:05d}",
            "visitor_id": f"visitor-{n}",
            "status": "new",
            "routing_revision": 1,
            "waiting_since": now,
            "created_at": now,
            "last_activity": now,
            "priority": rng.choice((0, 0, 1, 2)),
            "required_skills": ["fr"] if n % 10 == 0 else [],
            "session_metadata": {"url": "https://shop.test/billing/1" if n % 3 == 0 else "https://shop.test/"},
        }
        for n in range(CONVERSATIONS)
    ]
    async with engine.begin() as conn:
        await conn.execute(sa.insert(Conversation.__table__), conversations)  # type: ignore[attr-defined]
        await conn.execute(
            sa.text(
                "INSERT INTO routing_rule (id, team_id, position, name, conditions) "
                """VALUES (gen_random_uuid(), :billing, 1, 'billing pages', '{"url": "*/billing/*"}')"""
            ),
            {"billing": billing},
        )
    return {"support": support, "billing": billing}, ops, [c["id"] for c in conversations]


async def router(database_url: str, conversation_ids: list[str]) -> None:
    """One router with its own connection, routing its share in order."""
    engine = create_async_engine(database_url.replace("postgresql://", "postgresql+asyncpg://"), pool_size=1)
    try:
        for conversation_id in conversation_ids:
            await in_transaction(
                engine, lambda c, cid=conversation_id: placement.route_conversation(c, cid, 1, "router")
            )
    finally:
        await engine.dispose()


async def test_no_double_assignment_no_overload_no_stranded_queue(
    settings: Settings, clean_db: AsyncEngine, database_url: str, redis: Redis
) -> None:
    teams, ops, ids = await setup(clean_db)
    arq = await create_pool(redis_settings(settings), default_queue_name=settings.queue_name)
    chaos = Chaos(clean_db, arq, teams, ops)
    async with worker_processes(settings, WORKERS):
        # Every fourth conversation is also routed by a worker job, racing its router for it.
        for conversation_id in ids[::4]:
            await enqueue_route(arq, conversation_id, 1, "worker")
        chaos_tasks = chaos.tasks()
        await asyncio.gather(*(router(database_url, ids[n::ROUTERS]) for n in range(ROUTERS)))
        chaos.stop.set()
        await asyncio.gather(*chaos_tasks)
        await wait_until_idle(redis, settings.queue_name)
    await arq.aclose()

    assert min(chaos.counts[k] for k in ("flap", "capacity", "close", "transfer_team", "reassign")) > 5, chaos.counts

    # 1. Never two assignees: open assignments are unique (index) and no two intervals overlap.
    overlapping = await rows(
        clean_db,
        "SELECT a.id FROM assignment a JOIN assignment b ON a.conversation_id = b.conversation_id AND a.id < b.id "
        "WHERE tstzrange(a.started_at, coalesce(a.ended_at, 'infinity'), '[)') "
        "&& tstzrange(b.started_at, coalesce(b.ended_at, 'infinity'), '[)')",
    )
    assert overlapping == []

    # 2. Never over capacity, replayed from the history: at each assignment's start, the operator's
    #    open assignments (this one included) equal the counter it saw and are within the capacity
    #    it was checked against, which is one the membership really had.
    history = await rows(
        clean_db,
        "SELECT a.id, a.team_id, a.operator_id, a.capacity, a.open_after, "
        "(SELECT count(*) FROM assignment b WHERE b.operator_id = a.operator_id AND b.started_at <= a.started_at "
        " AND (b.ended_at IS NULL OR b.ended_at > a.started_at)) AS held "
        "FROM assignment a",
    )
    assert len(history) >= chaos.counts["close"] + chaos.counts["transfer_operator"]
    assert [a["id"] for a in history if a["held"] != a["open_after"]] == []
    assert [a["id"] for a in history if a["capacity"] is None or a["held"] > a["capacity"]] == []
    defaults = {teams["support"]: 3, teams["billing"]: 2}
    had = {key: {defaults[key[0]] if c is None else c for c in caps} for key, caps in chaos.capacities.items()}
    assert [
        a["id"]
        for a in history
        if a["capacity"] not in had.get((a["team_id"], a["operator_id"]), {defaults[a["team_id"]]})
    ] == []

    # 3. Counters, conversation rows and open assignments agree.
    mismatched = await rows(
        clean_db,
        "SELECT o.id FROM operator o WHERE o.open_conversations <> "
        "(SELECT count(*) FROM assignment a WHERE a.operator_id = o.id AND a.ended_at IS NULL)",
    )
    assert mismatched == []
    inconsistent = await rows(
        clean_db,
        "SELECT c.id FROM conversation c LEFT JOIN assignment a ON a.conversation_id = c.id AND a.ended_at IS NULL "
        "WHERE (c.status = 'assigned') <> (a.id IS NOT NULL) OR (a.id IS NOT NULL AND a.operator_id <> c.assignee_id)",
    )
    assert inconsistent == []

    # 4. Every conversation is assigned or queued, unless the test closed it.
    statuses = await rows(clean_db, "SELECT id, status FROM conversation")
    assert {s["status"] for s in statuses} <= {"assigned", "queued", "closed"}
    assert {s["id"] for s in statuses if s["status"] == "closed"} == chaos.closed
    assert len([s for s in statuses if s["status"] == "queued"]) > 0

    # 5. Nothing waits while an eligible member of its team has room.
    stranded = await rows(
        clean_db,
        "SELECT c.id, o.id AS operator_id FROM conversation c JOIN team t ON t.id = c.team_id "
        "JOIN team_member m ON m.team_id = t.id JOIN operator o ON o.id = m.operator_id "
        "WHERE c.status = 'queued' AND t.routing_policy <> 'manual' AND o.status = 'online' "
        "AND o.open_conversations < coalesce(m.capacity, t.default_capacity) "
        "AND m.skills @> c.required_skills AND NOT (o.id = ANY(c.excluded_operators))",
    )
    assert stranded == []

    # 6. Every assignment has its stored decision.
    decided = await rows(clean_db, "SELECT count(*) AS n FROM routing_decision WHERE outcome = 'assigned'")
    assert decided == [{"n": len(history)}]
