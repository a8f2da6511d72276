"""Structured logs: one JSON object per line from our code, uvicorn, arq and SQLAlchemy alike.

Lines logged while the api answers a request carry its ``request_id`` (and ``operator_id`` once the caller
is known); lines of a worker job carry ``job`` (and ``conversation_id`` when it is about one).
"""

from __future__ import annotations

import logging
import re
import sys
import uuid
from collections.abc import MutableMapping
from contextvars import ContextVar
from typing import Any

import structlog
from litestar.types import ASGIApp, Message, Receive, Scope, Send

from service.settings import Settings

REQUEST_ID_HEADER = "X-Request-ID"
# A caller's request id is kept when it is a plain token; anything else (spaces, quotes, control
# characters, too long) could forge or break log lines, so it is replaced.
_SANE_REQUEST_ID = re.compile(r"[A-Za-z0-9._:/+=@-]{1,100}")

# The current request's log fields. A dict shared by reference rather than one structlog contextvar per
# field: Litestar resolves dependencies (``provide_principal``) in tasks of their own, and a contextvar set
# there would not reach the handler's lines, while an update to this dict does.
_request_fields: ContextVar[dict[str, str] | None] = ContextVar("switchboard_request_fields", default=None)


def bind_request(**fields: str) -> None:
    """Add fields to every later log line of the request being answered (nothing outside a request)."""
    current = _request_fields.get()
    if current is not None:
        current.update(fields)


def _merge_request_fields(_: Any, __: str, event_dict: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    for key, value in (_request_fields.get() or {}).items():
        event_dict.setdefault(key, value)
    return event_dict


def request_id_of(value: str | None) -> str:
    """The caller's ``X-Request-ID`` when it is a plain token of at most 100 characters, else a new one."""
    return value if value and _SANE_REQUEST_ID.fullmatch(value) else uuid.uuid4().hex


def request_logging_middleware(app: ASGIApp) -> ASGIApp:
    """Give each HTTP request and WebSocket a request id for its log lines, echoed in ``X-Request-ID``."""
    header = REQUEST_ID_HEADER.lower().encode()

    async def middleware(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await app(scope, receive, send)
            return
        sent = next((value for name, value in scope["headers"] if name == header), b"")
        request_id = request_id_of(sent.decode("latin-1"))

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", ()), (header, request_id.encode())]
            await send(message)

        token = _request_fields.set({"request_id": request_id})
        try:
            await app(scope, receive, send_with_id)
        finally:
            # Nothing of this request reaches the next one served by the same task.
            _request_fields.reset(token)

    return middleware


def configure_logging(settings: Settings) -> None:
    """Route stdlib and structlog records through one JSON (or console, in development) renderer."""
    shared: list[structlog.types.Processor] = [
        structlog.contextvars.merge_contextvars,
        _merge_request_fields,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    renderer: structlog.types.Processor = (
        structlog.processors.JSONRenderer() if settings.log_json else structlog.dev.ConsoleRenderer(colors=False)
    )
    structlog.configure(
        processors=[*shared, structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=shared,
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            structlog.processors.format_exc_info,
            renderer,
        ],
    )
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(formatter)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(settings.log_level)
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access", "arq", "arq.worker"):
        logging.getLogger(name).handlers[:] = []
        logging.getLogger(name).propagate = True
    # httpx logs each request's URL at INFO, and Telegram Bot API URLs carry the bot token.
    for name in ("httpx", "httpcore"):
        logging.getLogger(name).setLevel(logging.WARNING)
