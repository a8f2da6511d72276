"""A small Server-Sent Events reader for tests: one parsed event at a time from a streaming response."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import httpx


@dataclass
class SseEvent:
    id: int
    event: str
    data: dict[str, Any]


class SseStream:
    """Reads events from an open ``text/event-stream`` response."""

    def __init__(self, response: httpx.Response) -> None:
        self.response = response
        self._lines = response.aiter_lines()

    async def _line(self) -> str:
        return await anext(self._lines)

    async def _until_connected(self) -> None:
        while (await self._line()) != ": connected":
            pass

    async def next(self) -> SseEvent:
        """The next event with data (comments and keep-alives skipped); fails after ten seconds."""
        return await asyncio.wait_for(self._next(), 10)

    async def _next(self) -> SseEvent:
        fields: dict[str, str] = {}
        while True:
            line = await self._line()
            if line == "":
                if "data" in fields:
                    return SseEvent(int(fields["id"]), fields["event"], json.loads(fields["data"]))
                fields = {}
            elif not line.startswith(":"):
                name, _, value = line.partition(": ")
                fields[name] = value

    async def until_closed(self) -> list[SseEvent]:
        """The events left until the server ends the stream; fails if it has not within ten seconds."""
        events: list[SseEvent] = []

        async def drain() -> None:
            with contextlib.suppress(StopAsyncIteration):
                while True:
                    events.append(await self._next())

        await asyncio.wait_for(drain(), 10)
        return events

    async def take(self, count: int) -> list[SseEvent]:
        return [await self.next() for _ in range(count)]


@asynccontextmanager
async def open_stream(
    base_url: str, token: str, last_event_id: int | None = None, path: str = "/api/v1/events"
) -> AsyncIterator[SseStream]:
    """Connect and wait until the server has registered the stream (its ``: connected`` comment)."""
    headers = {"Authorization": f"Bearer {token}"}
    if last_event_id is not None:
        headers["Last-Event-ID"] = str(last_event_id)
    async with httpx.AsyncClient(base_url=base_url, timeout=30) as client:
        async with client.stream("GET", path, headers=headers) as response:
            assert response.status_code == 200, await response.aread()
            assert response.headers["content-type"].startswith("text/event-stream")
            stream = SseStream(response)
            await asyncio.wait_for(stream._until_connected(), 10)
            yield stream
