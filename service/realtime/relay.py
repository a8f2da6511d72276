"""The worker's reader of the event table: webhook deliveries for new events, then a Redis notification.

Any number of workers may run it: the ``event_cursor`` row only moves forward, and the outbox
dedupe key makes a second pass over the same events (another worker, a restart) add nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any, ClassVar

import sqlalchemy as sa
import structlog
from arq.connections import ArqRedis
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from service.db.tables import cursor_t
from service.queue import enqueue_delivery
from service.realtime.hub import events_channel
from service.realtime.tail import EventTail
from service.settings import Settings
from service.webhooks.delivery import fan_out

log = structlog.get_logger(__name__)
RELAY_CURSOR = "relay"


class EventRelay:
    """Turns new events into webhook outbox rows and tells every api instance that events up to N exist.

    Other consumers of the event table subclass it with a cursor of their own (``cursor``) and
    their own outbox rows (``fan_out``).
    """

    cursor = RELAY_CURSOR

    def __init__(self, engine: AsyncEngine, arq: ArqRedis, settings: Settings) -> None:
        self._engine = engine
        self._arq = arq
        self._settings = settings
        self._tail = EventTail(0, settings.events_settle_seconds)
        self._stopping = asyncio.Event()

    def stop(self) -> None:
        """Let ``run`` return after its current step, so the outbox rows a step commits are also enqueued."""
        self._stopping.set()

    async def run(self) -> None:
        """Until stopped: read, fan out, notify; pause when caught up."""
        while not self._stopping.is_set():
            try:
                more = await self.step()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.warning("event relay failed; retrying", exc_info=True)
                # The failed batch was rolled back: read again from the stored cursor, not from
                # where this reader had got to in memory.
                self._tail = EventTail(0, self._settings.events_settle_seconds)
                more = False
            if not more:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stopping.wait(), self._settings.event_relay_poll_seconds)

    async def step(self) -> bool:
        """One batch; returns whether more events may be waiting right now."""
        async with self._engine.begin() as conn:
            stored = await conn.scalar(sa.select(cursor_t.c.last_id).where(cursor_t.c.name == self.cursor))
            self._tail.advance_to(stored or 0)
            rows, more = await self._tail.read(conn)
            outbox_ids = await self.fan_out(conn, [row.id for row in rows]) if rows else []
            if self._tail.watermark != stored:
                statement = insert(cursor_t).values(name=self.cursor, last_id=self._tail.watermark)
                await conn.execute(
                    statement.on_conflict_do_update(
                        index_elements=[cursor_t.c.name],
                        set_={"last_id": sa.func.greatest(cursor_t.c.last_id, statement.excluded.last_id)},
                    )
                )
        for outbox_id in outbox_ids:
            await enqueue_delivery(self._arq, outbox_id)
        if rows:
            await self.announce()
        return more

    async def fan_out(self, conn: AsyncConnection, event_ids: list[int]) -> list[int]:
        """Outbox rows for these events (webhook deliveries); returns their ids."""
        return await fan_out(conn, event_ids)

    async def announce(self) -> None:
        """Tell the api instances that events up to the watermark exist."""
        await self._arq.publish(events_channel(self._settings), str(self._tail.watermark))


class OutboxRelay(EventRelay):
    """A consumer whose outbox rows come from one statement over the new event ids (``:ids``, plus ``params``).

    It announces nothing: the api instances hear of events from the main relay.
    """

    statement: ClassVar[sa.TextClause]
    params: ClassVar[dict[str, Any]] = {}

    async def fan_out(self, conn: AsyncConnection, event_ids: list[int]) -> list[int]:
        result = await conn.execute(self.statement, {"ids": event_ids, **self.params})
        return [row.id for row in result]

    async def announce(self) -> None:
        pass
