"""The group-commit batcher: who shares a flush, and who gets which result or error."""

from __future__ import annotations

import asyncio

import pytest

from service.batching import Batcher


async def test_first_item_flushes_alone_and_the_rest_share_the_next_flush() -> None:
    flushes: list[list[int]] = []
    release = asyncio.Event()

    async def flush(items: list[int]) -> list[int]:
        flushes.append(items)
        if len(flushes) == 1:
            await release.wait()  # hold the first round trip while more items arrive
        return [item * 10 for item in items]

    batcher: Batcher[int, int] = Batcher(flush, max_size=3)
    first = asyncio.create_task(batcher.submit(1))
    await asyncio.sleep(0)
    rest = [asyncio.create_task(batcher.submit(n)) for n in range(2, 7)]
    await asyncio.sleep(0)
    release.set()
    assert await first == 10
    assert [await task for task in rest] == [20, 30, 40, 50, 60]
    assert flushes == [[1], [2, 3, 4], [5, 6]]


async def test_an_exception_result_fails_only_its_own_caller() -> None:
    async def flush(items: list[int]) -> list[int | BaseException]:
        return [ValueError(f"bad {item}") if item % 2 else item for item in items]

    batcher: Batcher[int, int] = Batcher(flush, max_size=10)
    results = await asyncio.gather(*(batcher.submit(n) for n in range(4)), return_exceptions=True)
    assert results[0] == 0 and results[2] == 2
    assert [str(results[1]), str(results[3])] == ["bad 1", "bad 3"]


async def test_a_failed_flush_fails_its_batch_and_the_next_batch_still_runs() -> None:
    calls = 0

    async def flush(items: list[int]) -> list[int]:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise ConnectionError("database went away")
        return items

    batcher: Batcher[int, int] = Batcher(flush, max_size=10)
    with pytest.raises(ConnectionError, match="database went away"):
        await batcher.submit(1)
    assert await batcher.submit(2) == 2


async def test_a_caller_that_goes_away_does_not_disturb_the_batch() -> None:
    started = asyncio.Event()
    release = asyncio.Event()

    async def flush(items: list[int]) -> list[int]:
        started.set()
        await release.wait()
        return items

    batcher: Batcher[int, int] = Batcher(flush, max_size=10)
    gone = asyncio.create_task(batcher.submit(1))
    await started.wait()
    stays = asyncio.create_task(batcher.submit(2))
    await asyncio.sleep(0)
    gone.cancel()
    release.set()
    assert await stays == 2
    assert gone.cancelled()


async def test_posted_items_ride_the_next_flush_and_join_waits_for_them() -> None:
    flushed: list[int] = []

    async def flush(items: list[int]) -> list[None]:
        await asyncio.sleep(0.01)
        flushed.extend(items)
        return [None] * len(items)

    batcher: Batcher[int, None] = Batcher(flush, max_size=10)
    for n in range(3):
        batcher.post(n)
    assert flushed == []  # nobody waited
    await batcher.join()
    assert flushed == [0, 1, 2]
