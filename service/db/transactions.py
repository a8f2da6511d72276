"""One transaction per unit of work, run again when PostgreSQL aborted it (deadlock, serialization failure)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TypeVar

import structlog
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

log = structlog.get_logger(__name__)

# Deadlock and serialization failure: the transaction did nothing and may simply run again.
RETRYABLE_SQLSTATES = frozenset({"40P01", "40001"})
T = TypeVar("T")


def is_retryable(exc: BaseException) -> bool:
    """A deadlock or serialization failure, which PostgreSQL resolved by rolling this transaction back."""
    return isinstance(exc, DBAPIError) and getattr(exc.orig, "sqlstate", None) in RETRYABLE_SQLSTATES


async def in_transaction(engine: AsyncEngine, work: Callable[[AsyncConnection], Awaitable[T]], attempts: int = 5) -> T:
    """Run ``work`` in one transaction, again from the start when PostgreSQL broke a deadlock by aborting it."""
    for attempt in range(1, attempts + 1):
        try:
            return await _run(engine, work)
        except DBAPIError as exc:
            if not is_retryable(exc) or attempt == attempts:
                raise
            log.info("transaction retried", attempt=attempt, sqlstate=getattr(exc.orig, "sqlstate", None))
            await asyncio.sleep(0.005 * attempt)
    raise AssertionError("unreachable")


async def _run(engine: AsyncEngine, work: Callable[[AsyncConnection], Awaitable[T]]) -> T:
    async with engine.begin() as conn:
        return await work(conn)
