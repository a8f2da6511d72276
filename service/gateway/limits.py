"""Widget gateway budgets: messages per session and per IP, signals per IP, typing coalesced per session.

Each check is one Lua script run in Redis (atomic, shared by every api instance); concurrent checks
share one pipeline. Counters are fixed windows of ``WIDGET_RATE_WINDOW_SECONDS``.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from typing import Any

from litestar import Request
from litestar.connection import ASGIConnection
from litestar.exceptions import TooManyRequestsException
from redis.asyncio import Redis

from service.batching import Batcher
from service.settings import Settings

# A handler marked with this option checks its own budget (it needs the session from its body).
OWN_BUDGET = {"own_budget": True}

# Counts KEYS[first..] in order against the limits from ARGV[limits..]. On the first counter past its
# limit it stops and returns that counter's place (1 = first): the counters before it are given the
# request back, the wider ones after it never see it, so a refused request only uses up the budget
# that refused it. 0: within every limit. ARGV[1] is the counters' lifetime in seconds.
_COUNT = """
local function count(first, limits)
    for i = first, #KEYS do
        local n = redis.call('INCR', KEYS[i])
        if n == 1 then redis.call('EXPIRE', KEYS[i], ARGV[1]) end
        if n > tonumber(ARGV[limits + i - first]) then
            for j = first, i - 1 do redis.call('DECR', KEYS[j]) end
            return i - first + 1
        end
    end
    return 0
end
"""
_COUNTERS = _COUNT + "return count(1, 2)"
# KEYS[1] holds the session's last forwarded typing state and when ("1:<ms>"). The same state again
# within ARGV[4] ms is answered without forwarding or counting (-1); otherwise it is counted and, if
# within the limits, remembered and forwarded (0). ARGV[2] is the state, ARGV[3] now in ms.
_TYPING = (
    _COUNT
    + """
local last = redis.call('GET', KEYS[1])
if last then
    local state, at = string.match(last, '^(%d):(%d+)$')
    if state == ARGV[2] and tonumber(ARGV[3]) - tonumber(at) < tonumber(ARGV[4]) then return -1 end
end
local refused = count(2, 5)
if refused == 0 then redis.call('SET', KEYS[1], ARGV[2] .. ':' .. ARGV[3], 'EX', ARGV[1]) end
return refused
"""
)

_Check = tuple[str, list[str], list[Any]]
# What a refusal says, by the place of the counter that refused it.
_SIGNAL_REFUSALS = ("Too many requests from this network",)
_MESSAGE_REFUSALS = ("Too many messages from this visitor", "Too many messages from this network")


class RateLimiter:
    """The gateway's budgets; ``clock`` (seconds) is the one time source, so tests can play hours in seconds."""

    def __init__(self, redis: Redis, settings: Settings, clock: Callable[[], float] = time.time) -> None:
        self.clock = clock
        self._redis = redis
        self._prefix = f"{settings.redis_prefix}:rate"
        self._window = settings.widget_rate_window_seconds
        self._settings = settings
        self._batcher: Batcher[_Check, int] = Batcher(self._run, max_size=1024)

    async def signal(self, client: str) -> None:
        """Count one signal (anything but a message) from ``client``; 429 past the per-IP budget."""
        now, window_start = self._now()
        refused = await self._batcher.submit(
            (_COUNTERS, [self._key("signal", client, window_start)], [self._window + 1, self._signal_limit])
        )
        self._refuse(refused, now, window_start, _SIGNAL_REFUSALS)

    async def message(self, client: str, session_id: str) -> None:
        """Count one message of ``session_id`` from ``client``; 429 past the session's or the IP's budget."""
        now, window_start = self._now()
        keys = [self._key("message-session", session_id, window_start), self._key("message", client, window_start)]
        limits = [self._settings.widget_message_limit_per_session, self._settings.widget_message_limit_per_ip]
        refused = await self._batcher.submit((_COUNTERS, keys, [self._window + 1, *limits]))
        self._refuse(refused, now, window_start, _MESSAGE_REFUSALS)

    async def typing(self, client: str, session_id: str, is_typing: bool) -> bool:
        """Whether to forward this typing state: not when the session sent the same one just before.

        A forwarded one counts as a signal (429 past the budget); a repeat costs nothing.
        """
        now, window_start = self._now()
        keys = [f"{self._prefix}:typing:{session_id}", self._key("signal", client, window_start)]
        interval_ms = int(self._settings.widget_typing_interval_seconds * 1000)
        args = [self._window + 1, int(is_typing), round(now * 1000), interval_ms, self._signal_limit]
        refused = await self._batcher.submit((_TYPING, keys, args))
        self._refuse(refused, now, window_start, _SIGNAL_REFUSALS)
        return refused == 0

    @property
    def _signal_limit(self) -> int:
        return self._settings.widget_signal_limit_per_ip

    def _now(self) -> tuple[float, int]:
        now = self.clock()
        return now, int(now // self._window) * self._window

    def _key(self, budget: str, subject: str, window_start: int) -> str:
        return f"{self._prefix}:{budget}:{subject}:{window_start}"

    def _refuse(self, refused: int, now: float, window_start: int, reasons: tuple[str, ...]) -> None:
        """429 naming the budget at place ``refused`` (0 or -1: allowed), with ``Retry-After`` its window's end."""
        if refused <= 0:
            return
        retry_after = max(1, math.ceil(window_start + self._window - now))
        raise TooManyRequestsException(
            detail=f"{reasons[refused - 1]}; retry in {retry_after} s.",
            headers={"Retry-After": str(retry_after)},
        )

    async def _run(self, checks: list[_Check]) -> list[int]:
        """Every check of the moment in one pipeline: one round trip, each script atomic."""
        async with self._redis.pipeline(transaction=False) as pipe:
            for script, keys, args in checks:
                pipe.eval(script, len(keys), *keys, *args)
            return [int(result) for result in await pipe.execute()]


def client_ip(connection: ASGIConnection[Any, Any, Any, Any]) -> str:
    """The visitor's address (uvicorn's proxy-headers middleware has already applied trusted X-Forwarded-For)."""
    return connection.client.host if connection.client else "unknown"


async def count_signal(request: Request[Any, Any, Any]) -> None:
    """``before_request`` hook: every widget request is a signal, unless its handler checks its own budget.

    CORS preflights are not counted: the browser sends one before many of the widget's requests.
    """
    if request.method != "OPTIONS" and not request.route_handler.opt.get("own_budget"):
        limiter: RateLimiter = request.app.state.rate_limiter
        await limiter.signal(client_ip(request))
