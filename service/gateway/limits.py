"""Widget gateway budgets: messages per session and per IP, signals per IP, typing coalesced per session.

Checks run in Redis (shared by every api instance) as one Lua script call for all the checks of
the moment: one round trip, atomic. Counters are fixed windows of ``WIDGET_RATE_WINDOW_SECONDS``.
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

# Every check of a batch in one call. ARGV[1] is the counters' lifetime (s); then, per check: its kind
# ('c' counters, 't' typing), its number of counters n, for 't' the state, now (ms) and interval (ms),
# then its n limits. KEYS, per check: for 't' the session's last forwarded typing ("<state>:<ms>"),
# then its n counters, narrowest first. A check's result: 0 allowed; -1 a typing repeat within the
# interval (answered, neither forwarded nor counted); i > 0 refused by its i-th counter. A refused
# request is given back to the counters before that one and never seen by those after it, so it only
# uses up the budget that refused it.
_CHECKS = """
local results, k, a = {}, 1, 2
while a <= #ARGV do
    local kind, n = ARGV[a], tonumber(ARGV[a + 1])
    a = a + 2
    local result, state_key, state, now
    if kind == 't' then
        state_key, state, now = KEYS[k], ARGV[a], ARGV[a + 1]
        local last = redis.call('GET', state_key)
        if last then
            local was, at = string.match(last, '^(%d):(%d+)$')
            if was == state and tonumber(now) - tonumber(at) < tonumber(ARGV[a + 2]) then result = -1 end
        end
        k, a = k + 1, a + 3
    end
    if result == nil then
        result = 0
        for i = 1, n do
            local count = redis.call('INCR', KEYS[k + i - 1])
            if count == 1 then redis.call('EXPIRE', KEYS[k + i - 1], ARGV[1]) end
            if count > tonumber(ARGV[a + i - 1]) then
                for j = 1, i - 1 do redis.call('DECR', KEYS[k + j - 1]) end
                result = i
                break
            end
        end
        if state_key and result == 0 then redis.call('SET', state_key, state .. ':' .. now, 'EX', ARGV[1]) end
    end
    k, a = k + n, a + n
    results[#results + 1] = result
end
return results
"""

# One check: its keys and its arguments, laid out as _CHECKS reads them.
_Check = tuple[list[str], list[Any]]
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
        key = self._key("signal", client, window_start)
        refused = await self._batcher.submit(([key], ["c", 1, self._signal_limit]))
        self._refuse(refused, now, window_start, _SIGNAL_REFUSALS)

    async def message(self, client: str, session_id: str) -> None:
        """Count one message of ``session_id`` from ``client``; 429 past the session's or the IP's budget."""
        now, window_start = self._now()
        keys = [self._key("message-session", session_id, window_start), self._key("message", client, window_start)]
        limits = [self._settings.widget_message_limit_per_session, self._settings.widget_message_limit_per_ip]
        refused = await self._batcher.submit((keys, ["c", 2, *limits]))
        self._refuse(refused, now, window_start, _MESSAGE_REFUSALS)

    async def typing(self, client: str, session_id: str, is_typing: bool) -> bool:
        """Whether to forward this typing state: not when the session sent the same one just before.

        A forwarded one counts as a signal (429 past the budget); a repeat costs nothing.
        """
        now, window_start = self._now()
        keys = [f"{self._prefix}:typing:{session_id}", self._key("signal", client, window_start)]
        interval_ms = int(self._settings.widget_typing_interval_seconds * 1000)
        args = ["t", 1, int(is_typing), round(now * 1000), interval_ms, self._signal_limit]
        refused = await self._batcher.submit((keys, args))
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
        """Every check of the moment in one script call: one round trip, atomic."""
        keys = [key for check_keys, _ in checks for key in check_keys]
        args = [arg for _, check_args in checks for arg in check_args]
        arguments = [str(arg) for arg in (self._window + 1, *args)]
        results = await self._redis.eval(_CHECKS, len(keys), *keys, *arguments)  # type: ignore[misc]
        return [int(result) for result in results]


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
