"""Group commit: concurrent callers share one round trip to PostgreSQL or Redis."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import Generic, TypeVar

Item = TypeVar("Item")
Result = TypeVar("Result")


class Batcher(Generic[Item, Result]):
    """Coalesce concurrent ``submit`` calls into calls of ``flush(items) -> results``.

    Nothing waits for a batch to fill: the first item is flushed at once, and whatever
    arrives while a flush is in flight goes into the next one. Under light load that is
    one item per round trip, as without batching; under heavy load the round trips stay
    few while the batches grow. ``flush`` returns one result per item, in order; a result
    that is an exception is raised to that item's caller only. If ``flush`` itself fails,
    every caller in the batch gets the error.
    """

    def __init__(self, flush: Callable[[list[Item]], Awaitable[Sequence[Result | BaseException]]], max_size: int):
        self._flush = flush
        self._max_size = max_size
        self._pending: list[tuple[Item, asyncio.Future[Result] | None]] = []
        self._draining: asyncio.Task[None] | None = None

    async def submit(self, item: Item) -> Result:
        future: asyncio.Future[Result] = asyncio.get_running_loop().create_future()
        self._pending.append((item, future))
        self._start()
        return await future

    def post(self, item: Item) -> None:
        """Fire and forget: ``item`` rides the next flush, and nobody waits for its result."""
        self._pending.append((item, None))
        self._start()

    def _start(self) -> None:
        if self._draining is None:
            self._draining = asyncio.get_running_loop().create_task(self._drain())

    async def join(self) -> None:
        """Wait until everything submitted or posted so far has been flushed."""
        while self._draining is not None:
            await asyncio.shield(self._draining)

    async def _drain(self) -> None:
        try:
            while self._pending:
                batch = self._pending[: self._max_size]
                del self._pending[: self._max_size]
                try:
                    results = await self._flush([item for item, _ in batch])
                except asyncio.CancelledError:
                    for _, future in batch + self._pending:
                        if future is not None:
                            future.cancel()
                    self._pending.clear()
                    raise
                except Exception as exc:
                    for _, future in batch:
                        if future is not None and not future.done():
                            future.set_exception(exc)
                    continue
                for (_, future), result in zip(batch, results, strict=True):
                    if future is None or future.done():  # posted, or the caller went away: the work is done anyway
                        continue
                    if isinstance(result, BaseException):
                        future.set_exception(result)
                    else:
                        future.set_result(result)
        finally:
            self._draining = None
