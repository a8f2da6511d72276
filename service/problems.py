"""One mapping from exceptions to RFC 9457 problem details (``application/problem+json``), at the HTTP edge."""

from __future__ import annotations

import re
from http import HTTPStatus
from typing import Any

import asyncpg
import redis.exceptions
import structlog
from litestar import Request, Response
from litestar.exceptions import HTTPException, NotFoundException, ValidationException
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout

from service.errors import (
    Conflict,
    DomainError,
    Forbidden,
    Invalid,
    NotFound,
    OAuthRefused,
    TooLarge,
    Unavailable,
    Unprocessable,
    UnsupportedType,
)

log = structlog.get_logger(__name__)
PROBLEM_JSON = "application/problem+json"


def _problem(request: Request[Any, Any, Any], status: int, detail: str, **extra: Any) -> Response[dict[str, Any]]:
    body = {
        "type": "about:blank",
        "title": HTTPStatus(status).phrase,
        "status": status,
        "detail": detail,
        "instance": request.url.path,
        **extra,
    }
    return Response(body, status_code=status, media_type=PROBLEM_JSON)


_MISSING_FIELD = re.compile(r"missing required field `([^`]+)`")


def _wire_name(request: Request[Any, Any, Any], key: Any) -> Any:
    """The name the client sent (``teamId``), where Litestar reports the handler's argument (``team_id``)."""
    try:
        parameter = request.route_handler.parsed_fn_signature.parameters.get(key)
    except Exception:  # no handler matched: nothing to translate
        return key
    return getattr(getattr(parameter, "kwarg_definition", None), "name", None) or key


def _field_error(request: Request[Any, Any, Any], item: Any) -> Any:
    """``{field, message}``; msgspec reports a missing field on the whole body, so name the field."""
    if not isinstance(item, dict):
        return item
    field, message = _wire_name(request, item.get("key")), item.get("message")
    if field == "data" and isinstance(message, str) and (missing := _MISSING_FIELD.search(message)):
        field = missing.group(1)
    return {"field": field, "message": message}


def http_exception_handler(request: Request[Any, Any, Any], exc: HTTPException) -> Response[dict[str, Any]]:
    """HTTP errors keep their status; validation errors list each offending field under ``errors``."""
    extra: dict[str, Any] = {}
    if isinstance(exc.extra, list) and exc.extra:
        extra["errors"] = [_field_error(request, item) for item in exc.extra]
    response = _problem(request, exc.status_code, exc.detail, **extra)
    if exc.headers:
        response.headers.update(exc.headers)
    return response


def internal_error_handler(request: Request[Any, Any, Any], exc: Exception) -> Response[dict[str, Any]]:
    """Anything unexpected: logged with its traceback, answered without internals."""
    log.error("unhandled error", path=request.url.path, exc_info=exc)
    return _problem(request, 500, "An internal error occurred; it has been logged.")


# PostgreSQL refuses NUL in text ("invalid byte sequence for encoding UTF8: 0x00"), wherever it came from.
_UNSTORABLE_TEXT = "22021"
# PostgreSQL's own "not now" answers: shutting down (57P01, 57P02), starting or recovering (57P03), and the
# connection exceptions (class 08). A restart answers with these before it refuses connections and after.
_UNAVAILABLE_SQLSTATES = ("57P01", "57P02", "57P03", "08")


# Seconds a client should wait before trying again while PostgreSQL cannot be reached.
DATABASE_RETRY_AFTER = 5


def database_unavailable_handler(request: Request[Any, Any, Any], exc: Exception) -> Response[dict[str, Any]]:
    """PostgreSQL unreachable (refused, cut, pool exhausted): 503 with ``Retry-After``, as ``/readyz`` says."""
    log.warning("database unavailable", path=request.url.path, error=repr(exc))
    response = _problem(request, 503, "The database is unavailable; try again shortly.")
    response.headers["Retry-After"] = str(DATABASE_RETRY_AFTER)
    return response


def redis_unavailable_handler(request: Request[Any, Any, Any], exc: Exception) -> Response[dict[str, Any]]:
    """Redis unreachable (restarting, say): 503 with ``Retry-After``; nothing was stored by a request refused here
    before its write, and the work a stored one asked of Redis is redone by the worker's sweep."""
    log.warning("redis unavailable", path=request.url.path, error=repr(exc))
    response = _problem(request, 503, "A backing service is unavailable; try again shortly.")
    response.headers["Retry-After"] = str(DATABASE_RETRY_AFTER)
    return response


def os_error_handler(request: Request[Any, Any, Any], exc: OSError) -> Response[dict[str, Any]]:
    """A refused or timed-out connection reaches here unwrapped when PostgreSQL is down; anything else is a 500."""
    if isinstance(exc, ConnectionError | TimeoutError):
        return database_unavailable_handler(request, exc)
    return internal_error_handler(request, exc)


def database_error_handler(request: Request[Any, Any, Any], exc: DBAPIError) -> Response[dict[str, Any]]:
    """Text PostgreSQL cannot hold is the caller's mistake (400); a lost connection, or a server shutting down or
    starting, is 503; the rest is ours."""
    if getattr(exc.orig, "sqlstate", None) == _UNSTORABLE_TEXT:
        return _problem(request, 400, "Text in the request (path, query or body) must not contain NUL characters")
    if exc.connection_invalidated or isinstance(exc, OperationalError | InterfaceError):
        return database_unavailable_handler(request, exc)
    if str(getattr(exc.orig, "sqlstate", None) or "").startswith(_UNAVAILABLE_SQLSTATES):
        return database_unavailable_handler(request, exc)
    return internal_error_handler(request, exc)


_DOMAIN_STATUS: dict[type[DomainError], int] = {
    NotFound: 404,
    Forbidden: 403,
    Conflict: 409,
    Unprocessable: 422,
    Invalid: 400,
    TooLarge: 413,
    UnsupportedType: 415,
    Unavailable: 503,
}


def domain_status(exc: DomainError) -> int:
    """The HTTP status of a service's refusal."""
    return next(code for kind, code in _DOMAIN_STATUS.items() if isinstance(exc, kind))


def domain_error_handler(request: Request[Any, Any, Any], exc: DomainError) -> Response[dict[str, Any]]:
    """A service's refusal as problem details, with the field it names under ``errors``."""
    extra: dict[str, Any] = {"errors": [{"field": exc.field, "message": exc.message}]} if exc.field else {}
    if isinstance(exc, OAuthRefused):
        # OAuth clients read these two members (RFC 6749 section 5.2); they sit beside the problem's own.
        response = _problem(request, 400, exc.detail, **extra, error=exc.error, error_description=exc.detail)
        response.headers.update({"Cache-Control": "no-store", "Pragma": "no-cache"})
        return response
    return _problem(request, domain_status(exc), exc.detail, **extra)


EXCEPTION_HANDLERS: dict[type[Exception] | int, Any] = {
    DomainError: domain_error_handler,
    HTTPException: http_exception_handler,
    ValidationException: http_exception_handler,
    NotFoundException: http_exception_handler,
    DBAPIError: database_error_handler,
    # Refused or cut before SQLAlchemy wraps it; other OSErrors (a full disk, say) are ours, not the database's.
    OSError: os_error_handler,
    asyncpg.PostgresConnectionError: database_unavailable_handler,
    asyncpg.CannotConnectNowError: database_unavailable_handler,
    asyncpg.AdminShutdownError: database_unavailable_handler,
    asyncpg.CrashShutdownError: database_unavailable_handler,
    asyncpg.InterfaceError: database_unavailable_handler,
    PoolTimeout: database_unavailable_handler,
    redis.exceptions.ConnectionError: redis_unavailable_handler,
    redis.exceptions.TimeoutError: redis_unavailable_handler,
    Exception: internal_error_handler,
}
