"""Per-client rate limit for the widget gateway: a fixed window counted in Redis, shared by all instances."""

from __future__ import annotations

import time
from collections import Counter
from typing import Any

from litestar import Request
from litestar.exceptions import TooManyRequestsException
from redis.asyncio import Redis

from service.batching import Batcher
from service.settings import Settings


class RateLimiter:
    """Counts requests per client IP and window; concurrent requests share one Redis pipeline."""

    def __init__(self, redis: Redis, settings: Settings) -> None:
        self._redis = redis
        self._prefix = f"{settings.redis_prefix}:rate"
        self._limit = settings.widget_rate_limit
        self._window = settings.widget_rate_window_seconds
        self._batcher: Batcher[str, int] = Batcher(self._count, max_size=1024)

    async def check(self, client: str) -> None:
        """Count one request from ``client``; 429 with ``Retry-After`` past the limit."""
        now = time.time()
        window_start = int(now // self._window) * self._window
        count = await self._batcher.submit(f"{self._prefix}:{client}:{window_start}")
        if count > self._limit:
            retry_after = max(1, int(window_start + self._window - now + 0.999))
            raise TooManyRequestsException(
                detail=f"Too many requests from this client; retry in {retry_after} s.",
                headers={"Retry-After": str(retry_after)},
            )

    async def _count(self, keys: list[str]) -> list[int]:
        """Each key's running count, one ``INCRBY`` per distinct key in the batch."""
        hits = Counter(keys)
        async with self._redis.pipeline(transaction=False) as pipe:
            for key, n in hits.items():
                # SET NX EX then INCRBY rather than EXPIRE NX: the embedded Redis (6.2) lacks EXPIRE NX.
                pipe.set(key, 0, ex=self._window + 1, nx=True)
                pipe.incrby(key, n)
            replies = await pipe.execute()
        # Hand out the counts in arrival order: the batch's last request for a key sees its total.
        next_count = {key: int(total) - hits[key] + 1 for key, total in zip(hits, replies[1::2], strict=True)}
        counts = []
        for key in keys:
            counts.append(next_count[key])
            next_count[key] += 1
        return counts


async def enforce_rate_limit(request: Request[Any, Any, Any]) -> None:
    """Allow ``WIDGET_RATE_LIMIT`` requests per client IP per window (``before_request`` hook)."""
    limiter: RateLimiter = request.app.state.rate_limiter
    await limiter.check(request.client.host if request.client else "unknown")
