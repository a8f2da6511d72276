"""Switchboard inside another app (library mode): mounted in any ASGI framework, or added to Litestar by a plugin.

Both run the app ``create_app`` builds, under ``settings.path_prefix``, with the host app's lifespan and the host's
own PocketPing bridges and hooks on the hub. See docs/embedding.md.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any

from litestar import Litestar
from litestar.config.app import AppConfig
from litestar.handlers import asgi as asgi_route
from litestar.plugins import InitPlugin
from litestar.types import HTTPResponseBodyEvent, HTTPResponseStartEvent, Receive, Scope, Send
from pocketping.bridges import Bridge

from service.app import create_app
from service.gateway.hooks import HostHooks
from service.settings import Settings

_NOT_STARTED = json.dumps(
    {
        "type": "about:blank",
        "title": "Service Unavailable",
        "status": 503,
        "detail": "Switchboard is mounted but not started: run its lifespan with your app's (docs/embedding.md)",
    }
).encode()


class Switchboard:
    """An ASGI app to mount at ``settings.path_prefix``; ``lifespan`` starts and stops it with the host app."""

    def __init__(
        self,
        settings: Settings,
        *,
        bridges: Sequence[Bridge] = (),
        on_new_session: Callable[..., Any] | None = None,
        on_message: Callable[..., Any] | None = None,
        on_event: Callable[..., Any] | None = None,
        on_identify: Callable[..., Any] | None = None,
        on_csat: Callable[..., Any] | None = None,
    ) -> None:
        if not settings.path_prefix:
            raise ValueError("path_prefix: set the path Switchboard is mounted at, e.g. /support")
        self.settings = settings
        self.host = HostHooks(
            bridges=tuple(bridges),
            on_new_session=on_new_session,
            on_message=on_message,
            on_event=on_event,
            on_identify=on_identify,
            on_csat=on_csat,
        )
        self.app: Litestar = create_app(settings, host=self.host)
        self._started = False

    @property
    def path_prefix(self) -> str:
        return self.settings.path_prefix

    @asynccontextmanager
    async def _running(self) -> AsyncIterator[None]:
        async with self.app.lifespan():
            self._started = True
            try:
                yield
            finally:
                self._started = False

    def lifespan(self, _host_app: object = None) -> AbstractAsyncContextManager[None]:
        """Start Switchboard (database, Redis, the hub and its sockets) for as long as the host app runs.

        Takes the host app as FastAPI's and Starlette's ``lifespan=`` do; mounted apps get no lifespan of their
        own from those frameworks."""
        return self._running()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":  # a server running this as its only app: the server runs the lifespan
            self._started = True
            await self.app(scope, receive, send)
            return
        if not self._started:
            await _refuse(scope, send)
            return
        await self.app(_under_prefix(scope, self.path_prefix), receive, send)


def _under_prefix(scope: Scope, prefix: str) -> Scope:
    """The scope as a server behind the prefix would give it: ``root_path`` ends with the prefix and ``path``
    starts with it. Starlette's ``Mount`` already passes it so; Litestar's mounts strip it from ``path``."""
    root_path = scope.get("root_path", "")
    if root_path.endswith(prefix) and scope["path"].startswith(root_path):
        return scope
    mounted_at = root_path if root_path.endswith(prefix) else root_path + prefix
    return {**scope, "root_path": mounted_at, "path": mounted_at + scope["path"]}  # type: ignore[return-value]


async def _refuse(scope: Scope, send: Send) -> None:
    if scope["type"] == "websocket":
        await send({"type": "websocket.close", "code": 1013, "reason": "Switchboard is not started"})
        return
    start: HTTPResponseStartEvent = {
        "type": "http.response.start",
        "status": 503,
        "headers": [(b"content-type", b"application/problem+json"), (b"retry-after", b"1")],
    }
    await send(start)
    body: HTTPResponseBodyEvent = {"type": "http.response.body", "body": _NOT_STARTED, "more_body": False}
    await send(body)


def asgi(settings: Settings, **host: Any) -> Switchboard:
    """Switchboard for ``app.mount(settings.path_prefix, ...)`` in FastAPI or Starlette; pass its ``lifespan``
    to the host app. ``host`` takes ``bridges`` and the PocketPing hooks (``on_message``…)."""
    return Switchboard(settings, **host)


class SwitchboardPlugin(InitPlugin):
    """``Litestar(plugins=[SwitchboardPlugin(settings)])``: Switchboard under ``settings.path_prefix``, started and
    stopped with the app. Takes the same ``bridges`` and hooks as ``asgi``."""

    def __init__(self, settings: Settings, **host: Any) -> None:
        self.switchboard = Switchboard(settings, **host)

    def on_app_init(self, app_config: AppConfig) -> AppConfig:
        switchboard = self.switchboard

        async def mounted(scope: Scope, receive: Receive, send: Send) -> None:
            await switchboard(scope, receive, send)

        app_config.route_handlers.append(asgi_route(switchboard.path_prefix, is_mount=True, copy_scope=True)(mounted))
        app_config.lifespan.append(switchboard.lifespan)
        return app_config
