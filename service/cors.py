"""CORS by path: the widget gateway and the operator REST API each answer their own origins, headers and credentials.

An allowed origin is echoed by name (never ``*``), with ``Vary: Origin``; any other origin, and every path no
policy covers (the dashboard, sign-in), gets no CORS headers, so a browser refuses the cross-origin read.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from litestar.config.cors import CORSConfig
from litestar.datastructures import Headers, MutableScopeHeaders
from litestar.enums import ScopeType
from litestar.middleware import ASGIMiddleware
from litestar.types import ASGIApp, Message, Receive, Scope, Send

# Response headers the widget reads (version warnings).
WIDGET_VERSION_HEADERS = (
    "X-PocketPing-Version-Status",
    "X-PocketPing-Min-Version",
    "X-PocketPing-Latest-Version",
    "X-PocketPing-Version-Message",
)
_METHODS = "GET, POST, PUT, PATCH, DELETE"  # PUT: the widget's signed upload URL, and the API's replacements


@dataclass(frozen=True)
class CorsPolicy:
    """Who may call under ``path``: origins in Litestar's syntax (exact, ``*``, a ``*`` inside an origin)."""

    path: str
    origins: Sequence[str]
    allow_headers: Sequence[str]
    expose_headers: Sequence[str]
    credentials: bool


def widget_policy(origins: Sequence[str], path: str) -> CorsPolicy:
    """The gateway's: credentials allowed, for the widget's beacons.

    ``navigator.sendBeacon`` (the widget's ``/disconnect`` and ``/visibility``) always sends credentials, and a
    browser drops a credentialed request unless the preflight allows credentials for that very origin (``*``
    will not do), so the origin is echoed even when ``WIDGET_ORIGINS`` is ``*``. The gateway reads no cookie,
    so allowing credentials lends a page nothing.
    """
    return CorsPolicy(path, origins, ("Content-Type", "X-PocketPing-Version"), WIDGET_VERSION_HEADERS, True)


def operator_policy(origins: Sequence[str], path: str) -> CorsPolicy:
    """The REST API's: bearer tokens in ``Authorization``, no credentials.

    An app (a web or desktop shell) needs no credentials mode to send ``Authorization``, while allowing
    credentials would let another origin use a browser's dashboard session cookie. It reads the inbox's
    ETag, a replayed write's marker and why a token was refused.
    """
    return CorsPolicy(
        path,
        origins,
        ("Authorization", "Content-Type", "Idempotency-Key", "If-None-Match"),
        ("ETag", "Idempotent-Replayed", "WWW-Authenticate"),
        False,
    )


class _Compiled:
    def __init__(self, policy: CorsPolicy) -> None:
        self.prefix = policy.path.rstrip("/") + "/"
        self.origins = CORSConfig(allow_origins=list(policy.origins))
        credentials = {"Access-Control-Allow-Credentials": "true"} if policy.credentials else {}
        self.preflight = credentials | {
            "Access-Control-Allow-Methods": _METHODS,
            "Access-Control-Allow-Headers": ", ".join(policy.allow_headers),
            "Access-Control-Max-Age": "600",
        }
        self.actual = credentials | {"Access-Control-Expose-Headers": ", ".join(policy.expose_headers)}


class PathCors(ASGIMiddleware):
    """Applies the first policy whose path covers the request; a policy without origins is left out."""

    scopes = (ScopeType.HTTP,)

    def __init__(self, *policies: CorsPolicy) -> None:
        self._policies = [_Compiled(policy) for policy in policies if policy.origins]

    async def handle(self, scope: Scope, receive: Receive, send: Send, next_app: ASGIApp) -> None:
        request_headers = Headers.from_scope(scope)
        origin = request_headers.get("origin")
        path = scope["path"].rstrip("/") + "/"
        policy = next((p for p in self._policies if path.startswith(p.prefix)), None)
        if origin is None or policy is None or not policy.origins.is_origin_allowed(origin):
            await next_app(scope, receive, send)
            return
        preflight = scope.get("method") == "OPTIONS" and "access-control-request-method" in request_headers
        extra = {"Access-Control-Allow-Origin": origin} | (policy.preflight if preflight else policy.actual)

        async def send_with_cors(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableScopeHeaders.from_message(message)
                headers.update(extra)
                vary = headers.get("vary")
                headers["Vary"] = f"{vary}, Origin" if vary else "Origin"
            await send(message)

        await next_app(scope, receive, send_with_cors)
