"""Liveness and readiness for load balancers and orchestrators; Prometheus metrics for the monitoring."""

from __future__ import annotations

import asyncio
from typing import Any

from litestar import Controller, Request, Response, get
from litestar.datastructures import State
from prometheus_client import CONTENT_TYPE_LATEST
from pydantic import BaseModel

from service import metrics
from service.auth.deps import client_in
from service.db.engine import ping
from service.errors import Forbidden


class Health(BaseModel):
    status: str
    checks: dict[str, str] = {}


class HealthController(Controller):
    """``/healthz``: the process answers. ``/readyz``: PostgreSQL and Redis answer too. ``/metrics``: Prometheus."""

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

    @get("/metrics", operation_id="metrics", include_in_schema=False)
    async def metrics(self, request: Request[Any, Any, Any], state: State) -> Response[bytes]:
        """Every process's metrics on this host, and the database's figures (``METRICS_ALLOWED_CIDRS`` only)."""
        if not client_in(request, state.settings.metrics_allowed_cidrs):
            raise Forbidden("Metrics are not served to this network")
        # Set as the header, not the media type: Litestar would add a second charset.
        return Response(await metrics.exposition(state.engine), headers={"Content-Type": CONTENT_TYPE_LATEST})


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
