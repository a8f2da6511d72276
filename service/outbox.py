"""The outbox: work a transaction leaves for later (widget messages, webhooks, bridge notices), done at least once.

A row is added in the transaction that causes it; a ``deliver_outbox`` job leases it (a duplicate
job skips it), has its kind's sender do the work outside any transaction, then marks it delivered,
or failed with the next attempt time, or dead when its kind gives up on it (too many tries, too old,
or a refusal no retry can change); a sender may also hold a row until its cause releases it. The
lease is short and renewed while the send runs (for at most the kind's longest send), so a killed
worker's row comes due again within ``HELD_LEASE_SECONDS`` and the sweep sends it again.
Every kind is retried by one rule, ``retry_delay``, and a lost retry is found by the sweep (``due``).
A row is pending while it is neither delivered, dead nor held; only pending rows are leased.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
import structlog
from arq.connections import ArqRedis
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from service import queue
from service.db.tables import outbox_t
from service.settings import Settings

log = structlog.get_logger(__name__)

# Retries wait base * 2**(attempts - 1), at most 2**MAX_BACKOFF_EXPONENT times the base.
MAX_BACKOFF_EXPONENT = 10
# A send is leased this long unless its kind says otherwise: the platforms' 30 s timeout plus a
# margin. A send outliving it may be started again, which every kind tolerates (at least once).
LEASE_SECONDS = 60.0
# While a send runs, its row is leased this long at a time, renewed every RENEW_SECONDS: a worker
# killed mid-send leaves a row that comes due again this soon (no database connection is held meanwhile).
HELD_LEASE_SECONDS = 6.0
RENEW_SECONDS = 2.0


@dataclass(frozen=True)
class Delivery:
    """One leased row, as its kind's sender reads it; ``attempts`` counts the tries before this one."""

    id: int
    kind: str
    payload: dict[str, Any]
    attempts: int


@dataclass(frozen=True)
class Done:
    """What a sender did: the job's result, and the receiver's HTTP status when there is one."""

    outcome: str = "delivered"
    status_code: int | None = None


@dataclass(frozen=True)
class Kind:
    """How one kind is delivered: its sender (raises to have the row retried), the longest a send takes, and when
    it gives up: a row that failed ``max_attempts`` times, or fails when older than ``max_age_seconds``, is dead."""

    send: Callable[[Delivery], Awaitable[Done]]
    lease_seconds: float = LEASE_SECONDS
    max_attempts: int | None = None
    max_age_seconds: float | None = None


class DeliveryFailed(Exception):
    """A refusal recorded as its message says (``status_code``: the receiver's answer, None if it gave none).

    ``final``: no retry can change it, the row is dead now; ``hold``: the row waits, unleased, until ``release``
    (e.g. a disabled webhook endpoint, enabled again); ``tried``: the work was attempted (counted in ``attempts``).
    """

    def __init__(
        self,
        message: str,
        status_code: int | None = None,
        *,
        final: bool = False,
        hold: bool = False,
        tried: bool = True,
    ) -> None:
        super().__init__(message)
        self.status_code = status_code
        self.final = final
        self.hold = hold
        self.tried = tried


# Neither delivered, dead nor held: the rows the outbox leases, retries and sweeps.
PENDING = sa.and_(outbox_t.c.delivered_at.is_(None), outbox_t.c.dead_at.is_(None), outbox_t.c.held_at.is_(None))


async def add(conn: AsyncConnection, kind: str, payload: dict[str, Any], **columns: Any) -> int:
    """Record, in the caller's transaction, one piece of work to do; returns its outbox id."""
    statement = sa.insert(outbox_t).values(kind=kind, payload=payload, **columns).returning(outbox_t.c.id)
    return int(await conn.scalar(statement))


def retry_delay(settings: Settings, attempts: int) -> float:
    """Seconds before the next try, after ``attempts`` failed ones (the first retry waits the base)."""
    return settings.outbox_retry_base_seconds * 2 ** min(max(attempts - 1, 0), MAX_BACKOFF_EXPONENT)


def _in(seconds: float) -> Any:
    return sa.func.now() + sa.func.make_interval(0, 0, 0, 0, 0, 0, seconds)


async def lease(engine: AsyncEngine, outbox_id: int, kinds: Mapping[str, Kind]) -> Delivery | None:
    """Take the row for its kind's lease if it is due; None when delivered, leased, waiting for a retry or locked."""
    async with engine.begin() as conn:
        row = (
            await conn.execute(
                sa.select(outbox_t.c.kind, outbox_t.c.payload, outbox_t.c.attempts)
                .where(
                    outbox_t.c.id == outbox_id,
                    PENDING,
                    # A duplicate job (the sweep's, a second relay's) must not cut a retry's backoff short.
                    outbox_t.c.available_at <= sa.func.now(),
                )
                .with_for_update(skip_locked=True)
            )
        ).first()
        if row is None:
            return None
        seconds = min(HELD_LEASE_SECONDS, _lease_seconds(kinds, row.kind))
        await conn.execute(sa.update(outbox_t).where(outbox_t.c.id == outbox_id).values(available_at=_in(seconds)))
    return Delivery(outbox_id, row.kind, row.payload, row.attempts)


def _lease_seconds(kinds: Mapping[str, Kind], kind: str) -> float:
    found = kinds.get(kind)
    return found.lease_seconds if found is not None else LEASE_SECONDS


@contextlib.asynccontextmanager
async def _leased(engine: AsyncEngine, delivery: Delivery, lease_seconds: float) -> AsyncIterator[None]:
    """Keep the row leased while the block runs; the renewal has stopped when it ends (before the row is marked)."""
    renewal = asyncio.create_task(_keep_leased(engine, delivery, lease_seconds))
    try:
        yield
    finally:
        renewal.cancel()
        await asyncio.gather(renewal, return_exceptions=True)


async def _keep_leased(engine: AsyncEngine, delivery: Delivery, lease_seconds: float) -> None:
    """Renew the lease while the send runs, until the kind's longest send has passed (then it may be sent again)."""
    until = time.monotonic() + lease_seconds - HELD_LEASE_SECONDS
    while time.monotonic() < until:
        await asyncio.sleep(RENEW_SECONDS)
        try:
            async with engine.begin() as conn:
                await conn.execute(
                    sa.update(outbox_t)
                    .where(
                        outbox_t.c.id == delivery.id,
                        outbox_t.c.delivered_at.is_(None),
                        outbox_t.c.attempts == delivery.attempts,
                    )
                    .values(available_at=_in(min(HELD_LEASE_SECONDS, until - time.monotonic() + RENEW_SECONDS)))
                )
        except Exception:
            # The lease may lapse and the row be sent again: at least once, never lost.
            log.warning("outbox lease not renewed", outbox_id=delivery.id, exc_info=True)


async def mark_delivered(conn: AsyncConnection, outbox_id: int, status_code: int | None) -> None:
    """The work is done: never tried again, and no longer leased."""
    await conn.execute(
        sa.update(outbox_t)
        .where(outbox_t.c.id == outbox_id)
        .values(
            delivered_at=sa.func.now(),
            available_at=sa.func.now(),
            attempts=outbox_t.c.attempts + 1,
            status_code=status_code,
        )
    )


def _error_text(error: Exception) -> str:
    return str(error)[:500] if isinstance(error, DeliveryFailed) else repr(error)[:500]


async def mark_failed(
    conn: AsyncConnection, outbox_id: int, error: Exception, retry_in: float, kind: Kind | None
) -> bool:
    """Record the failed try and its error; the row comes due again in ``retry_in`` seconds, unless its kind gives
    up on it now (returns True: the row is dead, never tried again)."""
    gives_up: list[sa.ColumnElement[bool]] = [sa.literal(isinstance(error, DeliveryFailed) and error.final)]
    if kind is not None and kind.max_attempts is not None:
        gives_up.append(outbox_t.c.attempts + 1 >= kind.max_attempts)
    if kind is not None and kind.max_age_seconds is not None:
        # The database's clock, the one that stamped created_at.
        gives_up.append(
            outbox_t.c.created_at <= sa.func.now() - sa.func.make_interval(0, 0, 0, 0, 0, 0, kind.max_age_seconds)
        )
    dead = sa.or_(*gives_up)
    dead_at = await conn.scalar(
        sa.update(outbox_t)
        .where(outbox_t.c.id == outbox_id)
        .values(
            attempts=outbox_t.c.attempts + 1,
            last_error=_error_text(error),
            status_code=getattr(error, "status_code", None),
            available_at=_in(retry_in),
            dead_at=sa.case((dead, sa.func.now()), else_=None),
        )
        .returning(outbox_t.c.dead_at)
    )
    log.warning("outbox delivery failed", outbox_id=outbox_id, error=str(error)[:200], dead=dead_at is not None)
    return dead_at is not None


async def mark_held(conn: AsyncConnection, outbox_id: int, error: DeliveryFailed) -> None:
    """Park the row until ``release``; its error says why it waits (a try that was not made is not counted)."""
    tried = {"attempts": outbox_t.c.attempts + 1, "status_code": error.status_code} if error.tried else {}
    await conn.execute(
        sa.update(outbox_t)
        .where(outbox_t.c.id == outbox_id)
        .values(held_at=sa.func.now(), available_at=sa.func.now(), last_error=_error_text(error), **tried)
    )


async def release(conn: AsyncConnection, *where: sa.ColumnElement[bool]) -> list[int]:
    """Make the held rows matching ``where`` pending and due now; returns their ids, to enqueue after commit."""
    statement = (
        sa.update(outbox_t)
        .where(outbox_t.c.held_at.is_not(None), outbox_t.c.delivered_at.is_(None), outbox_t.c.dead_at.is_(None), *where)
        .values(held_at=None, available_at=sa.func.now())
        .returning(outbox_t.c.id)
    )
    return sorted((await conn.execute(statement)).scalars())


async def deliver(
    engine: AsyncEngine, arq: ArqRedis, settings: Settings, outbox_id: int, kinds: Mapping[str, Kind]
) -> str:
    """Deliver one row once, by its kind's sender; a failure is retried after ``retry_delay``. Returns the outcome."""
    delivery = await lease(engine, outbox_id, kinds)
    if delivery is None:
        return "skipped"
    if conversation_id := delivery.payload.get("conversationId"):
        structlog.contextvars.bind_contextvars(conversation_id=conversation_id)
    # Outside any transaction: a slow receiver holds no database connection.
    try:
        kind = kinds.get(delivery.kind)
        if kind is None:
            raise ValueError(f"unknown outbox kind {delivery.kind!r}")
        async with _leased(engine, delivery, kind.lease_seconds):
            done = await kind.send(delivery)
    except Exception as exc:
        if isinstance(exc, DeliveryFailed) and exc.hold:
            async with engine.begin() as conn:
                await mark_held(conn, outbox_id, exc)
            return "held"
        retry_in = retry_delay(settings, delivery.attempts + 1)
        async with engine.begin() as conn:
            dead = await mark_failed(conn, outbox_id, exc, retry_in, kinds.get(delivery.kind))
        if dead:
            return "dead"
        # After the commit, so the retry finds the row updated; if this is lost, the sweep retries.
        await queue.enqueue_delivery(arq, outbox_id, tries=delivery.attempts + 1, defer_by=retry_in)
        return "failed"
    async with engine.begin() as conn:
        await mark_delivered(conn, outbox_id, done.status_code)
    return done.outcome


async def due(conn: AsyncConnection, limit: int = 1000) -> list[tuple[int, int]]:
    """Undelivered rows whose time has come (a lost trigger, an ended lease or backoff), with their failed tries,
    for the sweep."""
    statement = (
        sa.select(outbox_t.c.id, outbox_t.c.attempts)
        .where(PENDING, outbox_t.c.available_at <= sa.func.now())
        .limit(limit)
    )
    return [(row.id, row.attempts) for row in await conn.execute(statement)]
