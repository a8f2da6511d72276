"""What request handlers share across domains: the engine, a read or a write, paging and idempotency headers."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Annotated, Any, TypeVar

from litestar import Request
from litestar.datastructures import ResponseHeader
from litestar.params import HeaderParameter, QueryParameter
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from service.db.transactions import in_transaction
from service.files.services import Files

T = TypeVar("T")
Limit = Annotated[int, QueryParameter(ge=1, le=200, description="Page size")]
Cursor = Annotated[str | None, QueryParameter(description="nextCursor of the previous page")]
# Retry-safe writes (replies, notes, claims, transfers, closes): a repeat answers what the first request did.
IdempotencyKey = Annotated[
    str | None,
    HeaderParameter(
        name="Idempotency-Key",
        description="Retry-safe: the same key from the same operator acts once and answers the first result again",
        min_length=1,
        max_length=255,
    ),
]
REPLAYED = "Idempotent-Replayed"
REPLAYED_HEADERS = [
    ResponseHeader(
        name=REPLAYED,
        documentation_only=True,
        required=False,
        description="true when this answers a repeated Idempotency-Key: nothing was done again",
    )
]


def replay_headers(replayed: bool) -> dict[str, str]:
    """The response headers telling a client its repeated key was answered from the first request."""
    return {REPLAYED: "true"} if replayed else {}


def engine(request: Request[Any, Any, Any]) -> AsyncEngine:
    """The app's database engine (one per process, created at startup)."""
    return request.app.state.engine  # type: ignore[no-any-return]


def files(request: Request[Any, Any, Any]) -> Files:
    """The app's file store and URL signer (one per process)."""
    return request.app.state.files  # type: ignore[no-any-return]


async def write(request: Request[Any, Any, Any], work: Callable[[AsyncConnection], Awaitable[T]]) -> T:
    """``work`` in one transaction (run again if PostgreSQL broke a deadlock): all of it happens or none."""
    return await in_transaction(engine(request), work)


async def read(request: Request[Any, Any, Any], work: Callable[[AsyncConnection], Awaitable[T]]) -> T:
    """``work`` on a connection of its own (reads only)."""
    async with engine(request).connect() as conn:
        return await work(conn)
