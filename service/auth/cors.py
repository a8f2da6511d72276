"""CORS for the operator REST API (``/api/v1``): the origins of ``OPERATOR_CORS_ORIGINS``, bearer tokens only."""

from __future__ import annotations

from litestar.config.cors import CORSConfig
from litestar.datastructures import Headers, MutableScopeHeaders
from litestar.enums import ScopeType
from litestar.middleware import ASGIMiddleware
from litestar.types import ASGIApp, Message, Receive, Scope, Send

_PREFLIGHT = {
    "Access-Control-Allow-Methods": "GET, POST, PUT, PATCH, DELETE",
    "Access-Control-Allow-Headers": "Authorization, Content-Type, Idempotency-Key, If-None-Match",
    "Access-Control-Max-Age": "600",
}
# What an app reads from a response: the inbox's ETag, a replayed reply, why a token was refused.
_EXPOSE = {"Access-Control-Expose-Headers": "ETag, Idempotent-Replayed, WWW-Authenticate"}


class OperatorCors(ASGIMiddleware):
    """Answers an allowed origin by name, under ``path`` only; others (and other paths) get no CORS headers.

    No ``Access-Control-Allow-Credentials``: an app (a web or desktop shell) sends its bearer token in
    ``Authorization``, which needs no credentials mode, while allowing credentials would let another origin
    use a browser's dashboard session cookie. The widget gateway's CORS (``service.gateway.cors``) is separate.
    """

    scopes = (ScopeType.HTTP,)

    def __init__(self, origins: list[str], path: str) -> None:
        self._origins = CORSConfig(allow_origins=origins) if origins else None
        self._path = path.rstrip("/") + "/"

    async def handle(self, scope: Scope, receive: Receive, send: Send, next_app: ASGIApp) -> None:
        request_headers = Headers.from_scope(scope)
        origin = request_headers.get("origin")
        path = scope["path"].rstrip("/") + "/"
        if (
            origin is None
            or self._origins is None
            or not path.startswith(self._path)
            or not self._origins.is_origin_allowed(origin)
        ):
            await next_app(scope, receive, send)
            return
        preflight = (
            scope["type"] == ScopeType.HTTP
            and scope["method"] == "OPTIONS"
            and "access-control-request-method" in request_headers
        )
        extra = {"Access-Control-Allow-Origin": origin} | (_PREFLIGHT if preflight else _EXPOSE)

        async def send_with_cors(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableScopeHeaders.from_message(message)
                headers.update(extra)
                vary = headers.get("vary")
                headers["Vary"] = f"{vary}, Origin" if vary else "Origin"
            await send(message)

        await next_app(scope, receive, send_with_cors)
