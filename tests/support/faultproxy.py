"""A small fault-injecting TCP proxy, after toxiproxy's model: a listener in front of one upstream, with toxics.

``latency``/``jitter`` delay every chunk in both directions (in order: a chunk is never overtaken); ``reset``
is the share of new connections closed with a TCP RST after ``reset_after`` seconds, ``stall`` the share that
go silent (kept open, nothing forwarded) until closed. ``cut()`` refuses new connections and resets the open
ones (a partition, as a link set down looks to both ends); ``heal()`` lets them through again. The toxics can
change while traffic runs; every connection draws its fate when it opens, from its own seeded random source.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import socket
import struct
from collections.abc import AsyncIterator
from dataclasses import dataclass, field


@dataclass
class Toxics:
    latency: float = 0.0  # seconds added to every chunk, each way
    jitter: float = 0.0  # up to this much more, uniformly
    reset: float = 0.0  # share of new connections reset
    reset_after: float = 0.5  # seconds a doomed connection lives
    stall: float = 0.0  # share of new connections that stall


@dataclass
class Stats:
    accepted: int = 0
    refused: int = 0
    reset: int = 0
    stalled: int = 0
    bytes_up: int = 0
    bytes_down: int = 0


def _abort(writer: asyncio.StreamWriter) -> None:
    """Close with RST, not FIN: what a peer sees when the other end's host vanishes or a middlebox gives up."""
    sock = writer.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()


@dataclass
class FaultProxy:
    upstream_host: str
    upstream_port: int
    toxics: Toxics = field(default_factory=Toxics)
    seed: int = 0
    host: str = "127.0.0.1"
    port: int = 0
    stats: Stats = field(default_factory=Stats)

    def __post_init__(self) -> None:
        self._random = random.Random(self.seed)
        self._cut = False
        self._open: set[asyncio.StreamWriter] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self._server: asyncio.Server | None = None

    async def start(self) -> FaultProxy:
        self._server = await asyncio.start_server(self._accept, self.host, self.port)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
        self._reset_open()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    def cut(self) -> None:
        """Partition: new connections are reset at once, open ones now."""
        self._cut = True
        self._reset_open()

    def heal(self) -> None:
        self._cut = False

    def _reset_open(self) -> None:
        for writer in list(self._open):
            _abort(writer)
        self._open.clear()

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self._cut:
            self.stats.refused += 1
            _abort(writer)
            return
        draw = self._random.random()
        toxics = self.toxics
        try:
            up_reader, up_writer = await asyncio.open_connection(self.upstream_host, self.upstream_port)
        except OSError:
            self.stats.refused += 1
            _abort(writer)
            return
        self.stats.accepted += 1
        self._open.update((writer, up_writer))
        if toxics.reset <= draw < toxics.reset + toxics.stall:
            # Nothing moves either way; the connection stays open until the client gives up.
            self.stats.stalled += 1
            pumps = [asyncio.create_task(self._swallow(reader))]
        else:
            pumps = [
                asyncio.create_task(self._pump(reader, up_writer, up=True)),
                asyncio.create_task(self._pump(up_reader, writer, up=False)),
            ]
        if draw < toxics.reset:
            self.stats.reset += 1
            pumps.append(asyncio.create_task(self._reset_later(writer, up_writer, toxics.reset_after)))
        self._tasks.update(pumps)
        try:
            await asyncio.gather(*pumps, return_exceptions=True)
        finally:
            self._tasks.difference_update(pumps)
            for w in (writer, up_writer):
                self._open.discard(w)
                w.close()

    async def _swallow(self, reader: asyncio.StreamReader) -> None:
        with contextlib.suppress(ConnectionError, OSError):
            while await reader.read(65536):
                pass

    async def _reset_later(self, writer: asyncio.StreamWriter, up_writer: asyncio.StreamWriter, after: float) -> None:
        await asyncio.sleep(after)
        _abort(writer)
        _abort(up_writer)

    async def _pump(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, *, up: bool) -> None:
        """Forward chunks, each delayed by the latency toxic but never ahead of the one before it."""
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[tuple[float, bytes]] = asyncio.Queue()

        async def deliver() -> None:
            while True:
                due, chunk = await queue.get()
                if not chunk:
                    with contextlib.suppress(OSError):
                        writer.write_eof()
                    return
                if (wait := due - loop.time()) > 0:
                    await asyncio.sleep(wait)
                writer.write(chunk)
                await writer.drain()

        sender = asyncio.create_task(deliver())
        try:
            while True:
                chunk = await reader.read(65536)
                toxics = self.toxics
                delay = toxics.latency + (self._random.uniform(0, toxics.jitter) if toxics.jitter else 0)
                queue.put_nowait((loop.time() + delay, chunk))
                if up:
                    self.stats.bytes_up += len(chunk)
                else:
                    self.stats.bytes_down += len(chunk)
                if not chunk:
                    break
            await sender
        except (ConnectionError, OSError):
            pass
        finally:
            sender.cancel()
            with contextlib.suppress(asyncio.CancelledError, ConnectionError, OSError):
                await sender


@contextlib.asynccontextmanager
async def fault_proxy(host: str, port: int, toxics: Toxics | None = None, seed: int = 0) -> AsyncIterator[FaultProxy]:
    proxy = await FaultProxy(host, port, toxics or Toxics(), seed).start()
    try:
        yield proxy
    finally:
        await proxy.stop()
