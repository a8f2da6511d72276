"""Liveness and readiness for load balancers and orchestrators."""

from __future__ import annotations

import asyncio

from litestar import Controller, Response, get
from litestar.datastructures import State
from pydantic import BaseModel

from service.db.engine import ping


class Health(BaseModel):
    status: str
    checks: dict[str, str] = {}


class HealthController(Controller):
    """``/healthz``: the process answers. ``/readyz``: PostgreSQL and Redis answer too."""

    tags = ["operations"]

    @get("/healthz", operation_id="healthz")
    async def healthz(self) -> Health:
        return Health(status="ok")

    @get("/readyz", operation_id="readyz")
    async def readyz(self, state: State) -> Response[Health]:
        checks = dict(
            zip(
                ("postgres", "redis"),
                await asyncio.gather(_check_postgres(state), _check_redis(state)),
                strict=True,
            )
        )
        ready = all(value == "ok" for value in checks.values())
        return Response(
            Health(status="ok" if ready else "unavailable", checks=checks), status_code=200 if ready else 503
        )


async def _check_postgres(state: State) -> str:
    try:
        async with asyncio.timeout(2):
            await ping(state.engine)
        return "ok"
    except Exception as exc:
        return f"error: {type(exc).__name__}"


async def _check_redis(state: State) -> str:
    try:
        async with asyncio.timeout(2):
            await state.redis.ping()
        return "ok"
    except Exception as exc:
        return f"error: {type(exc).__name__}"
