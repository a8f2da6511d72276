"""Two deployments (their own databases and REDIS_PREFIX) sharing one Redis database: the same conversation id
enqueued in both is routed by each, each by its own worker, and both periodic sweeps run."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta

from arq import create_pool
from redis.asyncio import Redis
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from service.db.migrate import upgrade
from service.queue import enqueue_route
from service.resources import redis_settings
from service.settings import Settings
from tests.conftest import scratch_database
from tests.factories import add_member, make_operator, make_team
from tests.support.redis_keys import delete_deployment_keys, deployment_keys
from tests.support.routing import make_conversation, rows
from tests.support.routing_worker import worker_processes


async def _deployment(engine: AsyncEngine, name: str) -> uuid.UUID:
    """A team whose one operator (``name``) is online, a conversation enqueued by id, and one whose job was lost."""
    team = await make_team(engine, routing_policy="round_robin", is_default=True)
    operator_id = await make_operator(engine, name, status="online")
    await add_member(engine, team, operator_id)
    await make_conversation(engine, team, id="c-shared")
    await make_conversation(engine, team, id="c-lost", waiting_since=datetime.now(UTC) - timedelta(minutes=1))
    return operator_id


async def _routed(engine: AsyncEngine) -> list[dict[str, object]]:
    return await rows(
        engine,
        "SELECT d.conversation_id, d.trigger, d.chosen_operator_id FROM routing_decision d "
        "WHERE d.outcome = 'assigned' ORDER BY d.conversation_id",
    )


async def test_two_prefixes_on_one_redis_route_their_own_and_both_sweep(
    settings: Settings, clean_db: AsyncEngine
) -> None:
    async with scratch_database("other") as other_url:
        await asyncio.to_thread(upgrade, other_url)
        other = settings.model_copy(update={"database_url": other_url, "redis_prefix": f"{settings.redis_prefix}-b"})
        other_db = create_async_engine(other_url.replace("postgresql://", "postgresql+asyncpg://"))
        redis = Redis.from_url(settings.redis_url)
        try:
            ada = await _deployment(clean_db, "Ada")
            bob = await _deployment(other_db, "Bob")
            for deployment in (settings, other):
                arq = await create_pool(redis_settings(deployment), default_queue_name=deployment.queue_name)
                await enqueue_route(arq, "c-shared", 1, trigger="visitor_message")
                await arq.aclose()
            # Each deployment's job is its own, under its own prefix.
            for deployment in (settings, other):
                keys = await deployment_keys(redis, deployment.redis_prefix)
                assert f"arq:job:{deployment.queue_name}:route:c-shared:1".encode() in keys
            async with worker_processes(settings, 1, sweep=True), worker_processes(other, 1, sweep=True):
                for _ in range(400):  # the sweeps come every 5 s
                    if len(await _routed(clean_db)) == 2 and len(await _routed(other_db)) == 2:
                        break
                    await asyncio.sleep(0.05)
            assert await _routed(clean_db) == [
                {"conversation_id": "c-lost", "trigger": "sweep", "chosen_operator_id": ada},
                {"conversation_id": "c-shared", "trigger": "visitor_message", "chosen_operator_id": ada},
            ]
            assert await _routed(other_db) == [
                {"conversation_id": "c-lost", "trigger": "sweep", "chosen_operator_id": bob},
                {"conversation_id": "c-shared", "trigger": "visitor_message", "chosen_operator_id": bob},
            ]
        finally:
            await delete_deployment_keys(redis, other.redis_prefix)
            await redis.aclose()
            await other_db.dispose()
