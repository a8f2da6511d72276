"""``GET /api/v1/events``: the operator event stream over Server-Sent Events, resumable with ``Last-Event-ID``."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import AsyncIterator
from typing import Annotated, Any

from litestar import Controller, Request, get
from litestar.di import NamedDependency
from litestar.params import HeaderParameter, QueryParameter
from litestar.response import ServerSentEvent, ServerSentEventMessage
from sqlalchemy.ext.asyncio import AsyncEngine

from service import metrics
from service.auth.principal import Principal
from service.auth.sessions import SESSION_COOKIE, session_key
from service.db.transactions import in_transaction
from service.presence import services as presence
from service.realtime.hub import EventHub, StreamEvent, backlog
from service.settings import Settings
from service.timers.services import triggers

KEEPALIVE_SECONDS = 15.0
RECONNECT_MILLISECONDS = 2000


def _message(event: StreamEvent) -> ServerSentEventMessage:
    return ServerSentEventMessage(id=str(event.id), event=event.kind, data=event.json)


class Holding:
    """The presence client an open stream holds (a dashboard tab): opened with it, renewed on each keepalive,
    gone when it closes. Each stream has its own connection id, so an old stream closing after the tab's
    next one opened (a page change) ends nothing."""

    # Closings run as tasks of their own (the stream's task is being cancelled); kept here until done.
    _closing: set[asyncio.Task[Any]] = set()

    def __init__(self, state: Any, principal: Principal, client: presence.ClientRef) -> None:
        self.engine: AsyncEngine = state.engine
        self.redis = state.redis
        self.settings: Settings = state.settings
        self.operator_id = principal.operator_id
        self.client = client
        self.connection_id = secrets.token_hex(8)
        self.renew_every = self.settings.presence_heartbeat_timeout_seconds / 3
        self.renew_at = 0.0

    async def open(self) -> None:
        self.renew_at = asyncio.get_running_loop().time() + self.renew_every
        timeout = self.settings.presence_heartbeat_timeout_seconds
        async with triggers(self.redis):
            await in_transaction(
                self.engine,
                lambda conn: presence.open_stream(
                    conn, self.operator_id, self.client, self.connection_id, lease=timeout
                ),
            )

    async def renew(self) -> bool:
        """False when the client was ended meanwhile (signed out): the stream should end too."""
        self.renew_at = asyncio.get_running_loop().time() + self.renew_every
        timeout = self.settings.presence_heartbeat_timeout_seconds
        return await in_transaction(
            self.engine,
            lambda conn: presence.renew_stream(
                conn, self.operator_id, self.client.client_id, self.connection_id, lease=timeout
            ),
        )

    def close(self) -> None:
        task = asyncio.create_task(self._close())
        self._closing.add(task)
        task.add_done_callback(self._closing.discard)

    async def _close(self) -> None:
        grace = self.settings.presence_offline_grace_seconds
        async with triggers(self.redis):
            await in_transaction(
                self.engine,
                lambda conn: presence.close_stream(
                    conn, self.operator_id, self.client.client_id, self.connection_id, grace=grace
                ),
            )


async def _stream(
    engine: AsyncEngine,
    hub: EventHub,
    principal: Principal,
    after: int | None,
    max_seconds: float,
    holding: Holding | None = None,
) -> AsyncIterator[ServerSentEventMessage]:
    # Join first, then read what was missed up to the join point: nothing falls between the two.
    with metrics.connection("operator_sse"):
        listener = await hub.listen(principal)
        if holding is not None:
            await holding.open()
        try:
            yield ServerSentEventMessage(comment="connected", data=None, retry=RECONNECT_MILLISECONDS)
            last = listener.start
            if after is not None and after < listener.start:
                async for event in backlog(engine, principal, after, listener.start):
                    yield _message(event)
            elif after is not None:
                last = after  # resumed from an instance that had read further than this one
            loop = asyncio.get_running_loop()
            ends_at = loop.time() + max_seconds
            while not (listener.overflowed and listener.queue.empty()) and loop.time() < ends_at:
                # A held client is renewed every third of its lease, busy stream or not; gone (signed out): the end.
                if holding is not None and loop.time() >= holding.renew_at and not await holding.renew():
                    break
                wait = min(KEEPALIVE_SECONDS, max(ends_at - loop.time(), 0))
                if holding is not None:
                    wait = min(wait, max(holding.renew_at - loop.time(), 0))
                try:
                    event = await asyncio.wait_for(listener.queue.get(), wait)
                except TimeoutError:
                    yield ServerSentEventMessage(comment="keepalive", data=None)
                    continue
                if event.id > last:
                    last = event.id
                    yield _message(event)
            # Too slow a reader, or time to authenticate again: the stream ends, and the client resumes
            # from the table with Last-Event-ID.
        finally:
            hub.forget(listener)
            if holding is not None:
                holding.close()


class EventsController(Controller):
    """Live events for operators."""

    path = "/api/v1/events"
    tags = ["Realtime"]

    @get(
        "/",
        operation_id="streamEvents",
        summary="Stream the caller's events (Server-Sent Events)",
        response_description="text/event-stream: `id:` event id, `event:` kind, `data:` an EventPublic JSON object",
    )
    async def stream(
        self,
        request: Request[Any, Any, Any],
        principal: NamedDependency[Principal],
        last_event_id: Annotated[
            int | None,
            HeaderParameter(
                name="Last-Event-ID", ge=0, description="Resume after this event id (browsers send it on reconnect)"
            ),
        ] = None,
        after: Annotated[
            int | None, QueryParameter(ge=0, description="Resume after this event id when a header cannot be set")
        ] = None,
        client_id: Annotated[
            str | None,
            QueryParameter(
                name="clientId",
                min_length=1,
                max_length=100,
                pattern=r"^[A-Za-z0-9_.:-]+$",
                description="A presence client this stream holds (a dashboard tab): online while the stream is open",
            ),
        ] = None,
    ) -> ServerSentEvent:
        """Assignments, messages, notes, transfers, presence and AI takeovers the caller may see, in id order."""
        state = request.app.state
        resume = last_event_id if last_event_id is not None else after
        max_seconds = state.settings.events_stream_max_seconds
        holding = None
        if client_id is not None:
            cookie = request.cookies.get(SESSION_COOKIE) if principal.via == "session" else None
            kind = "web" if cookie else "mobile"
            client = presence.ClientRef(client_id, kind, session_key(cookie) if cookie else None)
            holding = Holding(state, principal, client)
        return ServerSentEvent(_stream(state.engine, state.event_hub, principal, resume, max_seconds, holding))
