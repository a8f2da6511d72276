"""Skill requirements that relax and exclusions that expire, end to end through a real worker process on a
controllable clock: each step happens at its second (not before), once."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import timedelta
from typing import Any

import httpx
from arq import create_pool
from arq.constants import in_progress_key_prefix
from redis.asyncio import Redis
from sqlalchemy.ext.asyncio import AsyncEngine

from service.queue import enqueue_route
from service.resources import redis_settings
from service.settings import Settings
from tests.factories import add_member, bearer, make_operator, make_team, personal_token
from tests.support.clock import advance, eventually
from tests.support.routing import make_conversation, rows, state
from tests.support.routing_worker import worker_processes

# Long enough that a loaded machine's own clock never reaches a step the test has not advanced to.
MARGIN = 5


class Deployment:
    """A worker process of the test deployment, its Redis, and its clock."""

    def __init__(self, settings: Settings, engine: AsyncEngine, redis: Redis) -> None:
        self.settings, self.engine, self.redis = settings, engine, redis

    async def route(self, conversation_id: str) -> None:
        arq = await create_pool(redis_settings(self.settings), default_queue_name=self.settings.queue_name)
        await enqueue_route(arq, conversation_id, 1, trigger="visitor_message")
        await arq.aclose()

    async def advance(self, seconds: float) -> None:
        await advance(self.engine, self.redis, self.settings.queue_name, seconds)

    async def status_is(self, conversation_id: str, status: str) -> dict[str, Any]:
        async def check() -> dict[str, Any] | None:
            row = await state(self.engine, conversation_id)
            return row if row["status"] == status else None

        return await eventually(check)


@asynccontextmanager
async def deployment(settings: Settings, engine: AsyncEngine) -> AsyncIterator[Deployment]:
    """Two worker processes (either may run any trigger); the block ends once neither is running a job."""
    redis = Redis.from_url(settings.redis_url)
    try:
        async with worker_processes(settings, 2):
            yield Deployment(settings, engine, redis)
            await eventually(lambda: _none_running(redis, settings.queue_name))
    finally:
        await redis.aclose()


async def _none_running(redis: Redis, queue: str) -> bool:
    # Deferred triggers may wait in the queue (a re-armed first-response timer); none may be half done.
    return not [key async for key in redis.scan_iter(match=f"{in_progress_key_prefix}{queue}:*")]


async def online(engine: AsyncEngine, team_id: uuid.UUID, name: str, **member: Any) -> uuid.UUID:
    operator_id = await make_operator(engine, name, status="online")
    await add_member(engine, team_id, operator_id, **member)
    return operator_id


async def timers(engine: AsyncEngine) -> list[dict[str, Any]]:
    return await rows(engine, "SELECT kind, subject, revision, state, due_at FROM timer ORDER BY id")


async def decisions(engine: AsyncEngine, conversation_id: str) -> list[tuple[Any, ...]]:
    found = await rows(
        engine,
        "SELECT trigger, outcome, skill_step, chosen_operator_id FROM routing_decision WHERE conversation_id = :id "
        "ORDER BY id",
        id=conversation_id,
    )
    return [tuple(row.values()) for row in found]


async def requirement(engine: AsyncEngine, conversation_id: str) -> tuple[list[str], str]:
    [row] = await rows(
        engine, "SELECT required_skills, skill_step FROM conversation WHERE id = :id", id=conversation_id
    )
    return row["required_skills"], row["skill_step"]


async def test_skills_relax_a_level_at_n_seconds_and_to_any_member_at_m(
    settings: Settings, clean_db: AsyncEngine, http: httpx.AsyncClient
) -> None:
    team_id = await make_team(
        clean_db, routing_policy="round_robin", skill_relax_after_seconds=60, skill_any_member_after_seconds=120
    )
    ada = await online(clean_db, team_id, "Ada", skills=["fr:2"])
    bob = await online(clean_db, team_id, "Bob", skills=[])
    # Asks for French at level 3: nobody has it. A level lower (fr:2): Ada. Any member: whoever is next.
    expert, _ = await make_conversation(clean_db, team_id, required_skills=["fr:3"])
    # Asks for German at level 2: nobody has German at all, so only "any member" lets it through.
    german, _ = await make_conversation(clean_db, team_id, required_skills=["de:2"])
    async with deployment(settings, clean_db) as sb:
        for conversation_id in (expert, german):
            await sb.route(conversation_id)
            await sb.status_is(conversation_id, "queued")
        waits = {
            r["id"]: r["waiting_since"] for r in await rows(clean_db, "SELECT id, waiting_since FROM conversation")
        }
        assert [(t["kind"], t["subject"], t["revision"], t["state"]) for t in await timers(clean_db)] == [
            ("skill_relax", expert, 1, "pending"),
            ("skill_relax", german, 1, "pending"),
        ]
        assert [t["due_at"] for t in await timers(clean_db)] == [
            waits[c] + timedelta(seconds=60) for c in (expert, german)
        ]

        await sb.advance(60 - MARGIN)  # just before N: as asked
        assert await requirement(clean_db, expert) == (["fr:3"], "exact")
        await sb.advance(MARGIN)  # N: one level lower; Ada now qualifies for the French one
        assigned = await sb.status_is(expert, "assigned")
        assert assigned["assignee_id"] == ada
        assert await decisions(clean_db, expert) == [
            ("visitor_message", "queued", "exact", None),
            ("skill_relax", "assigned", "relaxed", ada),
        ]
        # The conversation page's "why" panel says so.
        panel = await http.get(
            f"/app/conversations/{expert}/routing", headers=bearer(await personal_token(clean_db, ada))
        )
        assert panel.status_code == 200
        assert panel.text.count('<p class="hint skill-step">Matched at: skills a level lower.</p>') == 1
        assert "it waited long enough for its skills to relax" in panel.text
        assert await eventually(lambda: _step_is(clean_db, german, "relaxed")) == (["de"], "relaxed")
        assert (await state(clean_db, german))["status"] == "queued"  # nobody speaks German at any level

        await sb.advance(60 - MARGIN)  # just before M
        assert await requirement(clean_db, german) == (["de"], "relaxed")
        await sb.advance(MARGIN)  # M: any member; Bob has room and was never assigned
        assigned = await sb.status_is(german, "assigned")
        assert assigned["assignee_id"] == bob
        assert await decisions(clean_db, german) == [
            ("visitor_message", "queued", "exact", None),
            ("skill_relax", "assigned", "any", bob),
        ]
    # Each step fired once: the French one's timer once (assigned before anything was left to relax), the
    # German one's twice (relaxed, then any), and nothing is pending.
    assert [(t["subject"], t["revision"], t["state"]) for t in await timers(clean_db)] == [
        (expert, 1, "fired"),
        (german, 2, "fired"),
    ]
    assert await requirement(clean_db, german) == ([], "any")


async def excluded(engine: AsyncEngine, conversation_id: str) -> list[uuid.UUID]:
    [row] = await rows(engine, "SELECT excluded_operators FROM conversation WHERE id = :id", id=conversation_id)
    return list(row["excluded_operators"])


async def _step_is(engine: AsyncEngine, conversation_id: str, step: str) -> tuple[list[str], str] | None:
    found = await requirement(engine, conversation_id)
    return found if found[1] == step else None


async def test_an_excluded_operator_is_offered_it_again_after_the_set_time(
    settings: Settings, clean_db: AsyncEngine
) -> None:
    # A team of one: the first-response timeout takes the conversation from Ada, and nobody else can have it.
    team_id = await make_team(
        clean_db, routing_policy="round_robin", first_response_timeout_seconds=30, reoffer_after_seconds=300
    )
    ada = await online(clean_db, team_id, "Ada")
    conversation_id, _ = await make_conversation(clean_db, team_id)
    async with deployment(settings, clean_db) as sb:
        await sb.route(conversation_id)
        await sb.status_is(conversation_id, "assigned")
        await sb.advance(30)
        await sb.status_is(conversation_id, "queued")
        assert await excluded(clean_db, conversation_id) == [ada]
        [first_response, reoffer] = await timers(clean_db)
        assert (first_response["kind"], first_response["state"]) == ("first_response", "fired")
        assert (reoffer["kind"], reoffer["subject"], reoffer["state"]) == (
            "reoffer",
            f"{conversation_id}:{ada}",
            "pending",
        )
        # 300 s after the timeout's moment: the first-response deadline (moved by the clock like the reoffer).
        assert reoffer["due_at"] - first_response["due_at"] == timedelta(seconds=300)

        await sb.advance(300 - MARGIN)
        assert (await state(clean_db, conversation_id))["status"] == "queued"
        await sb.advance(MARGIN)
        again = await sb.status_is(conversation_id, "assigned")
        assert (again["assignee_id"], await excluded(clean_db, conversation_id)) == (ada, [])
    history = await rows(
        clean_db,
        "SELECT operator_id, reason, end_reason FROM assignment WHERE conversation_id = :id ORDER BY id",
        id=conversation_id,
    )
    assert history == [
        {"operator_id": ada, "reason": "routed", "end_reason": "first_response_timeout"},
        {"operator_id": ada, "reason": "routed", "end_reason": None},
    ]
    assert [(trigger, outcome) for trigger, outcome, _, _ in await decisions(clean_db, conversation_id)] == [
        ("visitor_message", "assigned"),
        ("first_response_timeout", "queued"),
        ("reoffer", "assigned"),
    ]
    assert [(t["kind"], t["revision"], t["state"]) for t in await timers(clean_db)][1] == ("reoffer", 1, "fired")


async def test_a_pooled_team_offers_it_again_when_the_skills_relax(
    settings: Settings, clean_db: AsyncEngine, http: httpx.AsyncClient
) -> None:
    team_id = await make_team(clean_db, routing_policy="pooled", skill_relax_after_seconds=60)
    ada = await online(clean_db, team_id, "Ada", skills=["fr:2"])
    await online(clean_db, team_id, "Bob", skills=["de"])
    conversation_id, _ = await make_conversation(clean_db, team_id, required_skills=["fr:3"])
    offers = "SELECT operator_ids FROM event WHERE kind = 'conversation.offered' ORDER BY id"
    async with deployment(settings, clean_db) as sb:
        await sb.route(conversation_id)
        await sb.status_is(conversation_id, "queued")
        assert await rows(clean_db, offers) == []  # nobody may take it as asked
        await sb.advance(60)
        assert await eventually(lambda: rows(clean_db, offers)) == [{"operator_ids": [ada]}]
    response = await http.post(
        f"/api/v1/conversations/{conversation_id}/claim", headers=bearer(await personal_token(clean_db, ada))
    )
    assert response.status_code == 200, response.text
    assert (await decisions(clean_db, conversation_id))[-1] == ("claim", "assigned", "relaxed", ada)
    assert await requirement(clean_db, conversation_id) == (["fr:2"], "relaxed")
