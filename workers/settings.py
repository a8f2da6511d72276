"""arq worker settings, built from the same ``Settings`` as the api."""

from __future__ import annotations

import asyncio
import dataclasses
from typing import Any

from arq import cron, func
from arq.connections import RedisSettings
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from service.bridges.notify import BridgeRelay
from service.gateway.availability import AvailabilityRelay
from service.gateway.hooks import HostHooks
from service.logging import configure_logging
from service.outbox import LEASE_SECONDS
from service.push.notify import PushRelay
from service.realtime.relay import EventRelay
from service.resources import Resources, redis_settings
from service.settings import Settings
from service.sites.callbacks import SiteCallbackRelay
from service.tracing import shutdown as shutdown_tracing
from service.tracing import traced_job, tracer_provider
from service.webhooks.delivery import lease_seconds
from workers import jobs

# Every 5 s: a killed worker's work resumes within about one interval (see docs/routing.md, "Crashes").
SWEEP_SECONDS = set(range(0, 60, 5))

# Longest runs, in seconds: a job past it is cancelled (and retried, up to max_tries). arq keeps a
# started job "in progress" for the longest of them plus 10 s; the sweep does not wait for that.
ROUTING_TIMEOUT = 30
TIMER_TIMEOUT = 120  # an AI reply waits for its provider
SWEEP_TIMEOUT = 60
# Old rows are deleted once a day, at a quiet hour (UTC), in batches.
RETENTION_HOUR, RETENTION_MINUTE = 3, 30
RETENTION_TIMEOUT = 1800

# How long a relay may take to finish its current step when the worker stops.
RELAY_STOP_SECONDS = 10.0


def waiting_for_redis(settings: Settings) -> RedisSettings:
    """arq's connection settings for a worker: a command that finds Redis gone waits for it (retried, backing off
    to once a second, without end) instead of failing.

    arq's polling loop lets a Redis error end the worker process, so a Redis restart would stop every worker
    for good; waiting keeps them, and they carry on once Redis answers (the sweep re-enqueues what the lost
    queue held). A worker waiting stops writing its health check, so ``switchboard worker --check`` tells.
    """
    return dataclasses.replace(
        redis_settings(settings),
        retry=Retry(ExponentialBackoff(cap=1.0, base=0.05), retries=-1),
        # OSError: a refused connection reaches the retry unwrapped (redis-py wraps it after).
        retry_on_error=[RedisConnectionError, RedisTimeoutError, OSError],
    )


def worker_settings(settings: Settings, host: HostHooks | None = None) -> dict[str, Any]:
    """Keyword arguments for ``arq.Worker`` (also accepted by ``arq.run_worker``); ``host`` is an embedding
    app's own PocketPing bridges and hooks, which see what this worker sends (operator and AI messages)."""
    tracing = tracer_provider(settings, "worker")

    async def on_startup(ctx: dict[str, Any]) -> None:
        configure_logging(settings)
        # The pool is arq's own (ctx["redis"]); jobs read the resources from ctx by name.
        resources = await Resources.open(settings, "worker", redis=ctx["redis"], tracing=tracing, host=host)
        ctx.update(
            resources=resources,
            settings=settings,
            engine=resources.engine,
            files=resources.files,
            team_bridge=resources.team_bridge,
            pocketping=resources.pocketping,
            ai_provider=resources.ai_provider,
            http=resources.http,
            push=resources.push,
            # fire_timer's batches, one at a time in this worker.
            timer_batches=asyncio.Lock(),
        )
        ctx["relays"] = {
            relay: asyncio.create_task(relay.run(), name=f"{relay.cursor}-relay")
            for relay in (
                EventRelay(resources.engine, resources.redis, settings),
                BridgeRelay(resources.engine, resources.redis, settings),
                PushRelay(resources.engine, resources.redis, settings),
                AvailabilityRelay(resources.engine, resources.redis, settings, resources.pocketping),
                SiteCallbackRelay(resources.engine, resources.redis, settings),
            )
        }

    async def on_shutdown(ctx: dict[str, Any]) -> None:
        # Stopped between steps, not cancelled inside one: outbox rows a step committed are enqueued too.
        relays = ctx.get("relays", {})
        for relay in relays:
            relay.stop()
        for task in relays.values():
            try:
                await asyncio.wait_for(task, RELAY_STOP_SECONDS)
            except TimeoutError:
                pass  # cancelled by wait_for; the sweep enqueues what that step committed
        if "resources" in ctx:
            await ctx["resources"].aclose()
        shutdown_tracing(tracing)

    # A send's lease ends after the kind's longest send; the job may run that long, and a little more.
    delivery_timeout = max(LEASE_SECONDS, lease_seconds(settings)) + 10
    return {
        "functions": [
            func(traced_job(jobs.route_conversation, tracing), timeout=ROUTING_TIMEOUT),
            func(traced_job(jobs.drain_team_queue, tracing), timeout=ROUTING_TIMEOUT),
            func(traced_job(jobs.tell_queue_positions, tracing), timeout=ROUTING_TIMEOUT),
            func(traced_job(jobs.deliver_outbox, tracing), timeout=delivery_timeout),
            func(traced_job(jobs.fire_timer, tracing), timeout=TIMER_TIMEOUT),
        ],
        # The cron job's name is in its job ids (``<name>:<run time>``): one per deployment, so deployments
        # sharing a Redis each run their own sweep.
        "cron_jobs": [
            cron(
                traced_job(jobs.sweep, tracing),
                name=f"{settings.queue_name}:sweep",
                second=SWEEP_SECONDS,
                run_at_startup=True,
                unique=True,
                timeout=SWEEP_TIMEOUT,
            ),
            cron(
                traced_job(jobs.prune_old_rows, tracing),
                name=f"{settings.queue_name}:retention",
                hour=RETENTION_HOUR,
                minute=RETENTION_MINUTE,
                unique=True,
                timeout=RETENTION_TIMEOUT,
            ),
        ],
        "redis_settings": waiting_for_redis(settings),
        "queue_name": settings.queue_name,
        "health_check_key": f"{settings.queue_name}:health-check",
        # The key expires a second after each interval, so `switchboard worker --check` fails
        # within a minute of the worker stopping (arq's default interval is an hour).
        "health_check_interval": 59,
        "on_startup": on_startup,
        "on_shutdown": on_shutdown,
        "poll_delay": settings.worker_poll_delay,
        "max_jobs": settings.worker_max_jobs,
        # Running jobs finish before the worker stops: cancelling one mid-write would also end the process with
        # arq's CancelledError (exit 1) instead of a clean exit.
        "job_completion_wait": settings.worker_shutdown_grace_seconds,
        # Results are not kept, so a versioned job id is free again as soon as its job ends;
        # correctness never depends on arq's de-duplication, only on the database re-check.
        "keep_result": 0,
        "max_tries": 5,
        "handle_signals": True,
    }
