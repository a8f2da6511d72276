"""The fault proxy itself, on real sockets: what passes, how late, and what its resets, stalls and cuts do."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import pytest
from redis.asyncio import Redis
from redis.exceptions import ConnectionError as RedisConnectionError

from tests.conftest import TEST_REDIS_URL
from tests.support.faultproxy import Toxics, fault_proxy


@pytest.fixture
async def echo() -> AsyncIterator[int]:
    """An upstream that sends back what it gets."""

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
        writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    yield server.sockets[0].getsockname()[1]
    server.close()


async def _round_trip(port: int, payload: bytes, patience: float = 5) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(payload)
        await writer.drain()
        return await asyncio.wait_for(reader.readexactly(len(payload)), patience)
    finally:
        writer.close()


async def test_bytes_pass_unchanged_and_in_order_with_jitter(echo: int) -> None:
    payload = bytes(range(256)) * 4096  # 1 MiB, many chunks, each given its own random delay
    async with fault_proxy("127.0.0.1", echo, Toxics(latency=0.001, jitter=0.01)) as proxy:
        assert await _round_trip(proxy.port, payload) == payload
    assert proxy.stats.bytes_up == proxy.stats.bytes_down == len(payload)


async def test_latency_delays_each_direction(echo: int) -> None:
    async with fault_proxy("127.0.0.1", echo, Toxics(latency=0.05)) as proxy:
        started = time.monotonic()
        assert await _round_trip(proxy.port, b"ping") == b"ping"
        took = time.monotonic() - started
    assert 0.1 <= took < 1.0, took


async def test_a_reset_connection_is_reset_after_its_time(echo: int) -> None:
    async with fault_proxy("127.0.0.1", echo, Toxics(reset=1.0, reset_after=0.2)) as proxy:
        reader, writer = await asyncio.open_connection("127.0.0.1", proxy.port)
        writer.write(b"before")
        assert await reader.readexactly(6) == b"before"  # it worked until then
        with pytest.raises((ConnectionResetError, asyncio.IncompleteReadError)):
            await asyncio.wait_for(reader.readexactly(1), 2)
        writer.close()
    assert proxy.stats.reset == 1


async def test_a_stalled_connection_stays_open_and_silent(echo: int) -> None:
    async with fault_proxy("127.0.0.1", echo, Toxics(stall=1.0)) as proxy:
        with pytest.raises(TimeoutError):
            await _round_trip(proxy.port, b"hello?", patience=0.3)
    assert (proxy.stats.stalled, proxy.stats.bytes_up) == (1, 0)


async def test_a_cut_resets_open_connections_refuses_new_ones_and_heals() -> None:
    host, port = "127.0.0.1", int(TEST_REDIS_URL.rsplit(":", 1)[1].split("/")[0])
    async with fault_proxy(host, port) as proxy:
        redis = Redis(host=host, port=proxy.port, socket_timeout=2, retry_on_timeout=False)
        try:
            assert await redis.ping()
            proxy.cut()
            for _ in range(2):  # the open connection reset; then a new one refused
                with pytest.raises(RedisConnectionError):
                    await redis.ping()
            assert proxy.stats.refused >= 1
            proxy.heal()
            assert await redis.ping()  # the client reconnects on its own
        finally:
            await redis.aclose()
