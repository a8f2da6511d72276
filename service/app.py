"""The Litestar application factory."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from litestar import Litestar
from litestar.datastructures import State
from litestar.di import Provide
from litestar.plugins.jinja import JinjaTemplateEngine
from litestar.plugins.opentelemetry import OpenTelemetryConfig, OpenTelemetryPlugin
from litestar.plugins.prometheus import PrometheusConfig
from litestar.plugins.pydantic import PydanticPlugin
from litestar.template.config import TemplateConfig

from service.ai.controllers import AiController
from service.analytics.controllers import AnalyticsController
from service.auth.controllers import AuthController, OAuthController, TokenController, authorization_server_metadata
from service.auth.deps import provide_principal
from service.auth.oidc import OidcClient
from service.bodies import json_body_guard
from service.bridges.controllers import BridgeLinkController, BridgeWebhookController
from service.bridges.registry import BridgeRegistry
from service.canned.controllers import CannedResponseController
from service.conversations.controllers import ConversationController, WidgetScreenshotController
from service.cors import PathCors, operator_policy, widget_policy
from service.dashboard.controllers import TEMPLATES, dashboard_router
from service.db.transactions import in_transaction
from service.demo.controllers import demo_router
from service.files.controllers import FileController
from service.gateway.controllers import GatewayController
from service.gateway.hooks import HostHooks
from service.gateway.hub import SwitchboardPocketPing
from service.gateway.limits import RateLimiter
from service.history.controllers import HistoryController
from service.logging import configure_logging, request_logging_middleware
from service.macros.controllers import ConversationMacroController, TeamMacroController
from service.openapi import finish_openapi, openapi_config
from service.operators.controllers import MeController, OperatorController
from service.ops.controllers import HealthController
from service.presence.controllers import PresenceController
from service.presence.services import end_session_clients
from service.problems import EXCEPTION_HANDLERS
from service.push.controllers import DeviceController
from service.realtime.controllers import EventsController
from service.realtime.hub import EventHub
from service.resources import Resources
from service.routing.controllers import RoutingController
from service.scim.controllers import ScimController
from service.settings import Settings, load_settings
from service.simulator.controllers import SimulationController
from service.sites.controllers import ConnectController, SiteController
from service.sla.controllers import SlaPolicyController
from service.tags.controllers import ConversationTagController, TeamTagController
from service.teams.controllers import TeamController
from service.timers.services import timer_triggers_middleware
from service.tracing import shutdown as shutdown_tracing
from service.tracing import tracer_provider
from service.webhooks.controllers import WebhookController

# Scrapes and probes come every few seconds and say nothing about a request's path through the service.
UNTRACED = ["^/metrics$", "^/healthz$", "^/readyz$"]


def create_app(settings: Settings | None = None, *, host: HostHooks | None = None) -> Litestar:
    """Build the api; settings come from the caller or the environment, ``host`` is an embedding app's own
    PocketPing bridges and hooks (service/embed.py)."""
    settings = settings or load_settings()
    configure_logging(settings)
    tracing = tracer_provider(settings, "api")

    @asynccontextmanager
    async def lifespan(app: Litestar) -> AsyncIterator[None]:
        resources = await Resources.open(settings, "api", tracing=tracing, host=host)
        # Without an issuer, browsers cannot sign in; personal access tokens still work.
        oidc = OidcClient(settings) if settings.oidc_issuer_url and settings.oidc_client_id else None
        event_hub = EventHub(resources.engine, resources.redis, settings)

        async def on_sign_out(session_key: str) -> None:
            """The browser session's dashboard tabs are gone (offline after the grace if they were the last)."""
            grace = settings.presence_offline_grace_seconds
            await in_transaction(resources.engine, lambda conn: end_session_clients(conn, session_key, grace=grace))

        app.state.update(
            on_sign_out=on_sign_out,
            engine=resources.engine,
            redis=resources.redis,
            pocketping=resources.pocketping,
            files=resources.files,
            bridge_registry=resources.bridge_registry,
            rate_limiter=RateLimiter(resources.redis, settings),
            oidc=oidc,
            event_hub=event_hub,
        )
        await event_hub.start()
        try:
            yield
        finally:
            await event_hub.stop()
            await resources.aclose()
            if oidc is not None:
                await oidc.aclose()
            shutdown_tracing(tracing)

    def provide_pocketping(state: State) -> SwitchboardPocketPing:
        return state.pocketping  # type: ignore[no-any-return]

    def provide_bridge_registry(state: State) -> BridgeRegistry:
        return state.bridge_registry  # type: ignore[no-any-return]

    app = Litestar(
        route_handlers=[
            GatewayController,
            WidgetScreenshotController,
            HealthController,
            MeController,
            PresenceController,
            RoutingController,
            ConversationController,
            FileController,
            TeamController,
            SimulationController,
            TeamTagController,
            ConversationTagController,
            TeamMacroController,
            ConversationMacroController,
            SlaPolicyController,
            AuthController,
            OAuthController,
            authorization_server_metadata,
            TokenController,
            CannedResponseController,
            OperatorController,
            HistoryController,
            EventsController,
            WebhookController,
            AiController,
            dashboard_router,
            AnalyticsController,
            BridgeWebhookController,
            BridgeLinkController,
            ScimController,
            DeviceController,
            SiteController,
            ConnectController,
            demo_router,
        ],
        lifespan=[lifespan],
        dependencies={
            "pocketping": Provide(provide_pocketping, sync_to_thread=False, use_cache=True),
            "bridge_registry": Provide(provide_bridge_registry, sync_to_thread=False, use_cache=True),
            # Not cached: Litestar caches a provider's value on the Provide itself, for every later request.
            "principal": Provide(provide_principal),
        },
        plugins=[
            PydanticPlugin(prefer_alias=True),
            # A server span per request, named by route template; scrapes and probes are not traced.
            *(
                [
                    OpenTelemetryPlugin(
                        OpenTelemetryConfig(
                            tracer_provider=tracing, exclude=UNTRACED, exclude_spans=["receive", "send"]
                        )
                    )
                ]
                if tracing
                else []
            ),
        ],
        exception_handlers=EXCEPTION_HANDLERS,
        middleware=[
            # First, so every line logged while answering (other middleware included) carries the request id.
            request_logging_middleware,
            # Requests by route template (a conversation id is not a label); the scrapes themselves left out.
            PrometheusConfig(
                app_name="switchboard",
                prefix="switchboard_http",
                group_path=True,
                exclude_unhandled_paths=True,
                exclude=["/metrics"],
            ).middleware,
            timer_triggers_middleware,
            PathCors(
                widget_policy(settings.widget_origins, GatewayController.path),
                operator_policy(settings.operator_cors_origins, "/api/v1"),
            ),
            json_body_guard,
        ],
        logging_config=None,
        request_max_body_size=settings.widget_max_body_bytes,
        template_config=TemplateConfig(
            directory=TEMPLATES,
            engine=JinjaTemplateEngine,
            # Every link and asset the pages name starts with the site's path prefix.
            engine_callback=lambda jinja: jinja.engine.globals.update(prefix=settings.path_prefix),
        ),
        openapi_config=openapi_config("0.1.0", settings.path_prefix),
        state=State({"settings": settings}),
        debug=False,
    )
    finish_openapi(app)
    return app
