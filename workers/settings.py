"""arq worker settings, built from the same ``Settings`` as the api."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx2
from arq import cron

from service.ai.providers import build_provider
from service.app import redis_settings
from service.bridges.dispatch import TeamBridge
from service.bridges.notify import BridgeRelay
from service.bridges.registry import BridgeRegistry
from service.db.engine import create_engine
from service.gateway.availability import AvailabilityRelay
from service.gateway.hub import SwitchboardPocketPing
from service.logging import configure_logging
from service.realtime.relay import EventRelay
from service.settings import Settings
from service.wiring import GATEWAY_HOOKS
from workers import jobs

SWEEP_SECONDS = {0, 10, 20, 30, 40, 50}

# How long a relay may take to finish its current step when the worker stops.
RELAY_STOP_SECONDS = 10.0


def worker_settings(settings: Settings) -> dict[str, Any]:
    """Keyword arguments for ``arq.Worker`` (also accepted by ``arq.run_worker``)."""

    async def on_startup(ctx: dict[str, Any]) -> None:
        configure_logging(settings)
        ctx["settings"] = settings
        ctx["engine"] = create_engine(settings)
        # Workers hold no sockets: their PocketPing only publishes, api processes deliver. Their
        # messages (replies from the dashboard, the AI) reach the team's chats through the team bridge.
        ctx["team_bridge"] = TeamBridge(ctx["engine"], BridgeRegistry(settings))
        ctx["pocketping"] = SwitchboardPocketPing(
            settings=settings,
            engine=ctx["engine"],
            redis=ctx["redis"],
            hooks=GATEWAY_HOOKS,
            bridges=[ctx["team_bridge"]],
        )
        await ctx["team_bridge"].init(ctx["pocketping"])
        ctx["ai_provider"] = build_provider(settings)
        # Webhook receivers: no redirects followed (a signed body must reach the configured URL only).
        ctx["http"] = httpx2.AsyncClient(follow_redirects=False)
        ctx["relays"] = {
            relay: asyncio.create_task(relay.run(), name=f"{relay.cursor}-relay")
            for relay in (
                EventRelay(ctx["engine"], ctx["redis"], settings),
                BridgeRelay(ctx["engine"], ctx["redis"], settings),
                AvailabilityRelay(ctx["engine"], ctx["redis"], settings, ctx["pocketping"]),
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
        if "http" in ctx:
            await ctx["http"].aclose()
        if "team_bridge" in ctx:
            await ctx["team_bridge"].destroy()
        if "engine" in ctx:
            await ctx["engine"].dispose()

    return {
        "functions": [jobs.route_conversation, jobs.drain_team_queue, jobs.deliver_outbox, jobs.fire_timer],
        "cron_jobs": [cron(jobs.sweep, second=SWEEP_SECONDS, run_at_startup=True, unique=True)],
        "redis_settings": redis_settings(settings),
        "queue_name": settings.queue_name,
        "health_check_key": f"{settings.queue_name}:health-check",
        # The key expires a second after each interval, so `switchboard worker --check` fails
        # within a minute of the worker stopping (arq's default interval is an hour).
        "health_check_interval": 59,
        "on_startup": on_startup,
        "on_shutdown": on_shutdown,
        "poll_delay": settings.worker_poll_delay,
        "max_jobs": settings.worker_max_jobs,
        # Results are not kept, so a versioned job id is free again as soon as its job ends;
        # correctness never depends on arq's de-duplication, only on the database re-check.
        "keep_result": 0,
        "max_tries": 5,
        "handle_signals": True,
    }
