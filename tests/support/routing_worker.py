"""Real worker processes for tests and benchmarks: ``python -m tests.support.routing_worker`` runs the real jobs,
minus the periodic sweep unless ``--sweep`` is given (so a drain the engine failed to trigger is not quietly
made up for by the sweep), on the database and Redis prefix of the settings ``worker_processes`` passes.
With ``--sweep`` the sweep runs on its schedule only, not at start-up: what recovers work is the schedule."""

from __future__ import annotations

import asyncio
import dataclasses
import os
import signal
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from arq.constants import in_progress_key_prefix
from arq.worker import run_worker
from redis.asyncio import Redis

from service.settings import Settings, load_settings
from workers.settings import worker_settings

READY_KEY = "TEST_WORKER_READY_KEY"


def worker_env(settings: Settings) -> dict[str, str]:
    """The environment of a worker process for these settings (database, Redis and its prefix)."""
    return {
        **os.environ,
        "DATABASE_URL": settings.database_url,
        "REDIS_URL": settings.redis_url,
        "SECRET_KEY": settings.secret_key,
        "REDIS_PREFIX": settings.redis_prefix,
        "ENVIRONMENT": "test",
        "LOG_LEVEL": "WARNING",
        "LOG_JSON": "false",
        "DB_POOL_SIZE": "4",
        "WORKER_POLL_DELAY": "0.01",
        "WEBHOOK_TIMEOUT_SECONDS": str(settings.webhook_timeout_seconds),
        "OUTBOX_RETRY_BASE_SECONDS": str(settings.outbox_retry_base_seconds),
        "AI_PROVIDER": settings.ai_provider,
        "AI_MAX_ATTEMPTS": str(settings.ai_max_attempts),
        "AI_HANDBACK_SECONDS": str(settings.ai_handback_seconds),
        "CLOCK_OFFSET_SECONDS": repr(settings.clock_offset_seconds),
        **({"AI_API_KEY": settings.ai_api_key} if settings.ai_api_key else {}),
        **({"AI_BASE_URL": settings.ai_base_url} if settings.ai_base_url else {}),
        "WEBHOOK_ALLOWED_CIDRS": ",".join(str(network) for network in settings.webhook_allowed_cidrs),
        **(
            {"OTEL_EXPORTER_OTLP_ENDPOINT": str(settings.otel_exporter_otlp_endpoint)}
            if settings.otel_exporter_otlp_endpoint
            else {}
        ),
    }


async def start_worker(
    settings: Settings, *, sweep: bool = False, ready_key: str | None = None
) -> asyncio.subprocess.Process:
    """One worker process; stop it with ``stop_worker`` (or kill it). With ``ready_key``, it writes its health check
    under that key instead of the deployment's: the key's arrival tells this worker has started."""
    argv = [sys.executable, "-m", "tests.support.routing_worker", *(["--sweep"] if sweep else [])]
    env = {**worker_env(settings), **({READY_KEY: ready_key} if ready_key else {})}
    return await asyncio.create_subprocess_exec(*argv, env=env, cwd=os.getcwd())


async def stop_worker(process: asyncio.subprocess.Process) -> int:
    """Ask the worker to stop (SIGTERM) unless it already ended; its exit code (-9 when it was killed)."""
    if process.returncode is None:
        process.send_signal(signal.SIGTERM)
    return await asyncio.wait_for(process.wait(), timeout=20)


@asynccontextmanager
async def worker_processes(
    settings: Settings, count: int, *, sweep: bool = False
) -> AsyncIterator[list[asyncio.subprocess.Process]]:
    """``count`` worker processes for the block; each must exit cleanly at its end (unless the test killed it)."""
    processes = [await start_worker(settings, sweep=sweep) for _ in range(count)]
    try:
        yield processes
    finally:
        codes = [await stop_worker(process) for process in processes]
        assert [code for code in codes if code not in (0, -signal.SIGKILL)] == []


async def wait_until_idle(redis: Redis, queue: str) -> None:
    """No job of this queue waiting or running, twice in a row (a running job may enqueue another)."""
    quiet = 0
    while quiet < 2:
        running = [key async for key in redis.scan_iter(match=f"{in_progress_key_prefix}{queue}:*")]
        quiet = quiet + 1 if await redis.zcard(queue) + len(running) == 0 else 0
        await asyncio.sleep(0.1)


if __name__ == "__main__":
    options = worker_settings(load_settings())
    options["cron_jobs"] = (
        [dataclasses.replace(job, run_at_startup=False) for job in options["cron_jobs"]]
        if "--sweep" in sys.argv[1:]
        else []
    )
    if ready_key := os.environ.get(READY_KEY):
        options["health_check_key"] = ready_key
    run_worker(options)  # type: ignore[arg-type]
