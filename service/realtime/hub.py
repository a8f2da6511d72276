"""The operator event stream inside one api process: one reader of the event table, many listeners.

Each api instance reads new event rows from PostgreSQL (never from Redis, so nothing is lost
with a notification) whenever the worker's relay announces on Redis that there are new ones,
and every ``events_poll_seconds`` in any case. Rows go to every local stream allowed to see them.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass

import sqlalchemy as sa
import structlog
from redis.asyncio import Redis
from sqlalchemy.ext.asyncio import AsyncEngine

from service.auth.principal import Principal
from service.db.tables import event_t
from service.realtime.schemas import EventPublic
from service.realtime.tail import EventTail
from service.settings import Settings

log = structlog.get_logger(__name__)

# A listener this far behind is cut off; it resumes from the table with Last-Event-ID.
LISTENER_QUEUE_SIZE = 1000
# Rows a resumed stream reads from the table at a time.
BACKLOG_PAGE = 500


def events_channel(settings: Settings) -> str:
    """The Redis channel that carries "events up to id N exist" notifications."""
    return f"{settings.redis_prefix}:events"


@dataclass(frozen=True, slots=True)
class StreamEvent:
    """An event serialized once for every listener, with what decides who may see it."""

    id: int
    kind: str
    team_id: uuid.UUID | None
    operator_ids: frozenset[uuid.UUID]
    json: str

    @classmethod
    def from_row(cls, row: object) -> StreamEvent:
        event = EventPublic.model_validate(row)
        return cls(
            id=event.id,
            kind=event.kind,
            team_id=event.team_id,
            operator_ids=frozenset(event.operator_ids),
            json=event.model_dump_json(by_alias=True),
        )

    def visible_to(self, principal: Principal) -> bool:
        """The team's members (admins: every team) and the operators the event names."""
        return principal.is_member(self.team_id) or principal.operator_id in self.operator_ids


def visible_clause(principal: Principal) -> sa.ColumnElement[bool]:
    """``StreamEvent.visible_to`` as SQL, for reading a resumed stream's gap from the table."""
    if principal.is_admin:
        return sa.true()
    return sa.or_(
        event_t.c.team_id.in_(list(principal.teams)),
        sa.literal(principal.operator_id) == sa.any_(event_t.c.operator_ids),
    )


async def backlog(engine: AsyncEngine, principal: Principal, after: int, upto: int) -> AsyncIterator[StreamEvent]:
    """The caller's events in (after, upto], from the table, a page at a time."""
    while after < upto:
        async with engine.connect() as conn:
            rows = (
                await conn.execute(
                    sa.select(event_t)
                    .where(event_t.c.id > after, event_t.c.id <= upto, visible_clause(principal))
                    .order_by(event_t.c.id)
                    .limit(BACKLOG_PAGE)
                )
            ).all()
        for row in rows:
            yield StreamEvent.from_row(row)
        if len(rows) < BACKLOG_PAGE:
            return
        after = rows[-1].id


class Listener:
    """One open stream: the events for its caller, queued in id order."""

    def __init__(self, principal: Principal, start: int) -> None:
        self.principal = principal
        self.start = start  # every event up to here is in the table for good; later ones come through the queue
        self.queue: asyncio.Queue[StreamEvent] = asyncio.Queue(maxsize=LISTENER_QUEUE_SIZE)
        self.overflowed = False

    def offer(self, event: StreamEvent) -> None:
        if self.overflowed or not event.visible_to(self.principal):
            return
        try:
            self.queue.put_nowait(event)
        except asyncio.QueueFull:
            self.overflowed = True


class EventHub:
    """Reads the event table for this process and hands each event to the local listeners allowed to see it."""

    def __init__(self, engine: AsyncEngine, redis: Redis, settings: Settings) -> None:
        self._engine = engine
        self._redis = redis
        self._settings = settings
        self._channel = events_channel(settings)
        self._listeners: set[Listener] = set()
        self._wake = asyncio.Event()
        self._subscribed = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._tail = EventTail(0, settings.events_settle_seconds)
        self._ready = asyncio.Event()

    async def start(self) -> None:
        """Subscribe to notifications; reading starts once PostgreSQL answers (the api starts without it)."""
        self._tasks = [
            asyncio.create_task(self._listen(), name="events-notifications"),
            asyncio.create_task(self._read_loop(), name="events-reader"),
        ]
        await asyncio.wait_for(self._subscribed.wait(), timeout=10)

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def listen(self, principal: Principal) -> Listener:
        """Register a stream; its ``start`` is the last event handed out before it joined."""
        await asyncio.wait_for(self._ready.wait(), timeout=10)
        listener = Listener(principal, self._tail.watermark)
        self._listeners.add(listener)
        return listener

    def forget(self, listener: Listener) -> None:
        self._listeners.discard(listener)

    async def _listen(self) -> None:
        while True:
            try:
                async with self._redis.pubsub(ignore_subscribe_messages=True) as pubsub:
                    await pubsub.subscribe(self._channel)
                    self._subscribed.set()
                    async for _ in pubsub.listen():
                        self._wake.set()
            except asyncio.CancelledError:
                raise
            except Exception:
                # Without Redis the periodic read still delivers everything, only later.
                self._subscribed.set()
                log.warning("event notifications lost Redis; retrying", exc_info=True)
                await asyncio.sleep(1)

    async def _read_loop(self) -> None:
        while not self._ready.is_set():
            try:
                async with self._engine.connect() as conn:
                    newest = await conn.scalar(sa.select(sa.func.coalesce(sa.func.max(event_t.c.id), 0)))
            except Exception:
                log.warning("event stream waits for PostgreSQL", exc_info=True)
                await asyncio.sleep(self._settings.events_poll_seconds)
                continue
            # A stream without Last-Event-ID begins with the events after this one.
            self._tail.advance_to(int(newest or 0))
            self._ready.set()
        while True:
            # A gap is usually a transaction committing right now: look again soon.
            timeout = (
                min(self._settings.events_poll_seconds, 0.05)
                if self._tail.waiting
                else self._settings.events_poll_seconds
            )
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout)
            self._wake.clear()
            try:
                await self.read_new()
            except Exception:
                log.warning("reading new events failed; retrying", exc_info=True)
                await asyncio.sleep(self._settings.events_poll_seconds)

    async def read_new(self) -> None:
        """Hand every new event to the listeners allowed to see it."""
        more = True
        while more:
            async with self._engine.connect() as conn:
                rows, more = await self._tail.read(conn)
            for row in rows:
                event = StreamEvent.from_row(row)
                for listener in list(self._listeners):
                    listener.offer(event)
