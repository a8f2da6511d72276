"""A controllable clock for tests of durable timers through real workers: ``advance`` makes time pass for the
deployment without sleeping (pending timers and waiting conversations get older, queued jobs come due sooner)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TypeVar

import sqlalchemy as sa
from redis.asyncio import Redis
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from service.db.transactions import in_transaction

T = TypeVar("T")


async def advance(engine: AsyncEngine, redis: Redis, queue: str, seconds: float) -> None:
    """``seconds`` pass: every pending timer is due that much sooner, every open conversation has waited that much
    longer, and every job in the arq queue (a timer's deferred trigger) runs that much sooner."""
    shift = {"s": seconds}

    async def older(conn: AsyncConnection) -> None:
        # Conversations before timers: the order a firing timer locks them in, so the two never deadlock.
        await conn.execute(
            sa.text(
                "UPDATE conversation SET waiting_since = waiting_since - make_interval(secs => :s) "
                "WHERE status <> 'closed' AND waiting_since IS NOT NULL"
            ),
            shift,
        )
        await conn.execute(
            sa.text("UPDATE timer SET due_at = due_at - make_interval(secs => :s) WHERE state = 'pending'"), shift
        )

    await in_transaction(engine, older)
    # arq's queue is a sorted set scored by the time (ms) each job may start; xx: never re-add a job taken meanwhile.
    for job_id, score in await redis.zrange(queue, 0, -1, withscores=True):
        await redis.zadd(queue, {job_id: score - seconds * 1000}, xx=True)


async def eventually(check: Callable[[], Awaitable[T]], seconds: float = 15) -> T:
    """``check()``'s first truthy answer, asked every 50 ms, within ``seconds``."""
    deadline = asyncio.get_running_loop().time() + seconds
    while not (answer := await check()):
        assert asyncio.get_running_loop().time() < deadline, f"not within {seconds} s"
        await asyncio.sleep(0.05)
    return answer
