"""One transaction per unit of work, run again when PostgreSQL aborted it (deadlock) or the work asked to restart."""

from __future__ import annotations

import asyncio
import contextvars
from collections.abc import Awaitable, Callable
from typing import TypeVar

import structlog
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

log = structlog.get_logger(__name__)

# Deadlock and serialization failure: the transaction did nothing and may simply run again.
RETRYABLE_SQLSTATES = frozenset({"40P01", "40001"})
T = TypeVar("T")


class RestartTransaction(Exception):
    """Routing's fast path lost every race and may hold operator rows: run the transaction again, carefully."""


# True while ``in_transaction`` runs work again after a ``RestartTransaction``: routing then takes the
# team lock before it ranks, instead of trying the fast path first.
_careful: contextvars.ContextVar[bool] = contextvars.ContextVar("routing_careful", default=False)


def careful() -> bool:
    """Whether this is the run after a ``RestartTransaction``, which must take no fast path."""
    return _careful.get()


def is_retryable(exc: BaseException) -> bool:
    """A deadlock or serialization failure, which PostgreSQL resolved by rolling this transaction back."""
    return isinstance(exc, DBAPIError) and getattr(exc.orig, "sqlstate", None) in RETRYABLE_SQLSTATES


async def in_transaction(engine: AsyncEngine, work: Callable[[AsyncConnection], Awaitable[T]], attempts: int = 5) -> T:
    """Run ``work`` in one transaction, again from the start when PostgreSQL broke a deadlock by aborting it.

    Routing that assigns or queues (``route_conversation``, ``reopen_conversation``) must run in here:
    on its rare ``RestartTransaction`` the work runs once more, on the careful path.
    """
    for attempt in range(1, attempts + 1):
        try:
            try:
                return await _run(engine, work)
            except RestartTransaction:
                log.info("transaction restarted on the careful path")
                token = _careful.set(True)
                try:
                    return await _run(engine, work)
                finally:
                    _careful.reset(token)
        except DBAPIError as exc:
            if not is_retryable(exc) or attempt == attempts:
                raise
            log.info("transaction retried", attempt=attempt, sqlstate=getattr(exc.orig, "sqlstate", None))
            await asyncio.sleep(0.005 * attempt)
    raise AssertionError("unreachable")


async def _run(engine: AsyncEngine, work: Callable[[AsyncConnection], Awaitable[T]]) -> T:
    async with engine.begin() as conn:
        return await work(conn)
