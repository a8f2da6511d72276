"""Per-client rate limit for the widget gateway: a fixed window counted in Redis, shared by all instances."""

from __future__ import annotations

import time
from typing import Any

from litestar import Request
from litestar.exceptions import TooManyRequestsException

from service.gateway.hub import SwitchboardPocketPing


async def enforce_rate_limit(request: Request[Any, Any, Any]) -> None:
    """Allow ``WIDGET_RATE_LIMIT`` requests per client IP per window; 429 with ``Retry-After`` beyond."""
    pocketping: SwitchboardPocketPing = request.app.state.pocketping
    settings = pocketping.settings
    window = settings.widget_rate_window_seconds
    now = time.time()
    window_start = int(now // window) * window
    client = request.client.host if request.client else "unknown"
    key = f"{settings.redis_prefix}:rate:{client}:{window_start}"
    async with pocketping.redis.pipeline(transaction=False) as pipe:
        # SET NX EX then INCR rather than EXPIRE NX: the embedded Redis (6.2) has no EXPIRE NX.
        pipe.set(key, 0, ex=window + 1, nx=True)
        pipe.incr(key)
        _, count = await pipe.execute()
    if count > settings.widget_rate_limit:
        retry_after = max(1, int(window_start + window - now + 0.999))
        raise TooManyRequestsException(
            detail=f"Too many requests from this client; retry in {retry_after} s.",
            headers={"Retry-After": str(retry_after)},
        )
