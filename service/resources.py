"""What a process holds (database, Redis, the file store, the PocketPing hub and its bridges, the AI provider, an
HTTP client), built, started and closed in one place for the api and the worker alike."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import httpx2
from arq import create_pool
from arq.connections import ArqRedis, RedisSettings
from opentelemetry.sdk.trace import TracerProvider
from pocketping.ai.base import AIProvider
from sqlalchemy.ext.asyncio import AsyncEngine

from service import metrics
from service.ai.providers import build_provider
from service.bridges.dispatch import TeamBridge
from service.bridges.posts import PostQueue, reads_own_message_ids
from service.bridges.registry import BridgeRegistry
from service.csat import services as csat
from service.db.engine import create_engine
from service.files.services import Files
from service.files.store import open_store
from service.flows import replies
from service.gateway.bridge import RoutingBridge
from service.gateway.hooks import GatewayHooks, HostHooks
from service.gateway.hub import SwitchboardPocketPing
from service.hours import clock
from service.push.senders import PushSenders
from service.routing import placement
from service.settings import Settings
from service.teams import visitors
from service.tracing import trace_engine

Role = Literal["api", "worker"]

# How the domains answer the widget gateway: one set, given to every process's hub.
GATEWAY_HOOKS = GatewayHooks(
    operator_replied=replies.operator_replied,
    choose_team=placement.choose_team,
    greeting=visitors.greeting,
    availability=visitors.availability,
    team_sessions=visitors.team_sessions,
    rated=csat.rate,
    reads_own_message_ids=reads_own_message_ids,
)


def redis_settings(settings: Settings) -> RedisSettings:
    """arq's connection settings from ``REDIS_URL`` (TCP or unix socket)."""
    if settings.redis_url.startswith("unix://"):
        path, _, query = settings.redis_url.removeprefix("unix://").partition("?")
        database = int(query.removeprefix("db=")) if query.startswith("db=") else 0
        return RedisSettings(unix_socket_path=path, database=database)
    return RedisSettings.from_dsn(settings.redis_url)


@dataclass(frozen=True)
class Resources:
    """One process's resources; ``open`` builds and starts them for its role, ``aclose`` stops them in order."""

    settings: Settings
    role: Role
    engine: AsyncEngine
    redis: ArqRedis
    files: Files
    bridge_registry: BridgeRegistry
    team_bridge: TeamBridge
    pocketping: SwitchboardPocketPing
    ai_provider: AIProvider
    http: httpx2.AsyncClient
    push: PushSenders
    owns_redis: bool
    unwatch_pool: Callable[[], None]

    @classmethod
    async def open(
        cls,
        settings: Settings,
        role: Role,
        *,
        redis: ArqRedis | None = None,
        tracing: TracerProvider | None = None,
        host: HostHooks | None = None,
    ) -> Resources:
        """Build and start them; ``redis`` is a pool the caller keeps (the worker's own), else one is opened;
        with ``tracing``, the engine's statements are traced; ``host`` is an embedding app's bridges and hooks."""
        metrics.configure(settings)
        clock.configure(settings)
        engine = create_engine(settings)
        trace_engine(engine, tracing)
        owns_redis = redis is None
        if redis is None:
            redis = await create_pool(redis_settings(settings), default_queue_name=settings.queue_name)
        files = Files(settings, open_store(settings))
        bridge_registry = BridgeRegistry(settings, files)
        # What the team's chats are to hear is queued here, whichever process hears it, and posted by a worker
        # through the team bridge (service/bridges/posts.py).
        team_bridge = TeamBridge(engine, bridge_registry)
        pocketping = SwitchboardPocketPing(
            settings=settings,
            engine=engine,
            redis=redis,
            hooks=GATEWAY_HOOKS,
            files=files,
            # Visitors' messages arrive at api processes only: the routing bridge stores them and asks for routing.
            routing=RoutingBridge(engine, redis) if role == "api" else None,
            bridges=[PostQueue(engine, redis)],
            host=host,
        )
        # Webhook receivers and FCM: no redirects followed (a signed body must reach the configured URL only).
        # Webhook requests go to the checked address (service/webhooks/guard.py), so a kept-alive connection
        # would be shared by every name on that address, its TLS checked for the first: none is kept.
        http = httpx2.AsyncClient(follow_redirects=False, limits=httpx2.Limits(max_keepalive_connections=0))
        resources = cls(
            settings=settings,
            role=role,
            engine=engine,
            redis=redis,
            files=files,
            bridge_registry=bridge_registry,
            team_bridge=team_bridge,
            pocketping=pocketping,
            ai_provider=build_provider(settings),
            http=http,
            push=PushSenders(settings, http),
            owns_redis=owns_redis,
            unwatch_pool=metrics.watch_pool(engine, settings.db_pool_size * 2),  # the pool plus its overflow
        )
        # Not one of the hub's bridges (the hub queues for it): it posts for the worker, and its registry
        # answers the platforms' webhooks, in either role.
        await team_bridge.init(pocketping)
        if role == "api":
            await pocketping.start()
            await pocketping.start_subscriber()  # widget events published anywhere, to this process's sockets
        else:
            # Workers hold no sockets: their PocketPing only publishes, api processes deliver.
            for bridge in pocketping.host_bridges:
                await bridge.init(pocketping)
        return resources

    async def aclose(self) -> None:
        """Publish what is pending, stop the hub and its bridges, then close the clients and the pool."""
        await self.pocketping.flush_events()
        if self.role == "api":
            await self.pocketping.stop_subscriber()
            await self.pocketping.stop()  # destroys its bridges too
        else:
            for bridge in self.pocketping.host_bridges:
                await bridge.destroy()
        await self.team_bridge.destroy()
        await self.push.aclose()
        await self.http.aclose()
        await self.files.store.aclose()
        if self.owns_redis:
            await self.redis.aclose()
        self.unwatch_pool()
        await self.engine.dispose()
