"""Queue order under races: 4 routers, operators flapping through the presence service, drains by real worker
processes, conversations closing; the history shows no conversation assigned while one of its team that comes
first, and that the operator could take, was waiting. bench/queue_order.py runs it longer, over more seeds."""

from __future__ import annotations

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from service.settings import Settings
from tests.support.queue_order import out_of_order, race


@pytest.mark.parametrize("seed", [1, 2])
async def test_no_conversation_is_assigned_past_one_waiting_ahead(
    settings: Settings, clean_db: AsyncEngine, seed: int
) -> None:
    counts = await race(settings, clean_db, seed=seed, conversations=300)

    # The race happened: queueing, assignments, flaps, closes, and the rule passing operators over.
    assert min(counts[k] for k in ("queued", "assigned", "flap", "close", "queued_ahead")) > 0, counts
    assert await out_of_order(clean_db) == []
