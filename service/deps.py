"""What request handlers share across domains: the engine, a read or a write, paging parameters."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Annotated, Any, TypeVar

from litestar import Request
from litestar.params import QueryParameter
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from service.db.transactions import in_transaction
from service.files.services import Files

T = TypeVar("T")
Limit = Annotated[int, QueryParameter(ge=1, le=200, description="Page size")]
Cursor = Annotated[str | None, QueryParameter(description="nextCursor of the previous page")]


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
