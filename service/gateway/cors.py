"""CORS for the widget gateway: the origins of ``WIDGET_ORIGINS``, credentials allowed (the widget's beacons)."""

from __future__ import annotations

from litestar.config.cors import CORSConfig
from litestar.datastructures import Headers, MutableScopeHeaders
from litestar.enums import ScopeType
from litestar.middleware import ASGIMiddleware
from litestar.types import ASGIApp, Message, Receive, Scope, Send

# Response headers the widget reads (version warnings).
VERSION_HEADERS = (
    "X-PocketPing-Version-Status",
    "X-PocketPing-Min-Version",
    "X-PocketPing-Latest-Version",
    "X-PocketPing-Version-Message",
)
_PREFLIGHT = {
    "Access-Control-Allow-Methods": "GET, POST, PUT, PATCH, DELETE",
    "Access-Control-Allow-Headers": "Content-Type, X-PocketPing-Version",
    "Access-Control-Max-Age": "600",
}
_EXPOSE = {"Access-Control-Expose-Headers": ", ".join(VERSION_HEADERS)}


class WidgetCors(ASGIMiddleware):
    """Answers an allowed origin by name, with ``Access-Control-Allow-Credentials``; others get no CORS headers.

    ``navigator.sendBeacon`` (the widget's ``/disconnect`` and ``/visibility``) always sends credentials,
    and a browser drops a credentialed request unless the preflight allows credentials for that very
    origin (``*`` will not do), so the origin is echoed, even when ``WIDGET_ORIGINS`` is ``*``. The
    gateway reads no cookie, so allowing credentials lends a page nothing; the other routes (dashboard,
    REST API) answer no cross-origin request at all.
    """

    scopes = (ScopeType.HTTP,)

    def __init__(self, origins: list[str], path: str) -> None:
        # Litestar's matcher: exact origins, '*' for any, '*' inside an origin for a wildcard part.
        self._origins = CORSConfig(allow_origins=origins)
        self._path = path.rstrip("/") + "/"

    async def handle(self, scope: Scope, receive: Receive, send: Send, next_app: ASGIApp) -> None:
        request_headers = Headers.from_scope(scope)
        origin = request_headers.get("origin")
        if origin is None or not scope["path"].startswith(self._path) or not self._origins.is_origin_allowed(origin):
            await next_app(scope, receive, send)
            return
        preflight = (
            scope["type"] == ScopeType.HTTP
            and scope["method"] == "OPTIONS"
            and "access-control-request-method" in request_headers
        )
        extra = {"Access-Control-Allow-Origin": origin, "Access-Control-Allow-Credentials": "true"}
        extra |= _PREFLIGHT if preflight else _EXPOSE

        async def send_with_cors(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableScopeHeaders.from_message(message)
                headers.update(extra)
                vary = headers.get("vary")
                headers["Vary"] = f"{vary}, Origin" if vary else "Origin"
            await send(message)

        await next_app(scope, receive, send_with_cors)
