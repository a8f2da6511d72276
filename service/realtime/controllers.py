"""``GET /api/v1/events``: the operator event stream over Server-Sent Events, resumable with ``Last-Event-ID``."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Annotated, Any

from litestar import Controller, Request, get
from litestar.di import NamedDependency
from litestar.params import HeaderParameter, QueryParameter
from litestar.response import ServerSentEvent, ServerSentEventMessage
from sqlalchemy.ext.asyncio import AsyncEngine

from service.auth.principal import Principal
from service.realtime.hub import EventHub, StreamEvent, backlog

KEEPALIVE_SECONDS = 15.0
RECONNECT_MILLISECONDS = 2000


def _message(event: StreamEvent) -> ServerSentEventMessage:
    return ServerSentEventMessage(id=str(event.id), event=event.kind, data=event.json)


async def _stream(
    engine: AsyncEngine, hub: EventHub, principal: Principal, after: int | None, max_seconds: float
) -> AsyncIterator[ServerSentEventMessage]:
    # Join first, then read what was missed up to the join point: nothing falls between the two.
    listener = await hub.listen(principal)
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
            try:
                event = await asyncio.wait_for(
                    listener.queue.get(), min(KEEPALIVE_SECONDS, max(ends_at - loop.time(), 0))
                )
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
    ) -> ServerSentEvent:
        """Assignments, messages, notes, transfers, presence and AI takeovers the caller may see, in id order."""
        state = request.app.state
        resume = last_event_id if last_event_id is not None else after
        max_seconds = state.settings.events_stream_max_seconds
        return ServerSentEvent(_stream(state.engine, state.event_hub, principal, resume, max_seconds))
