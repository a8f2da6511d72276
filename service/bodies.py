"""The guard every JSON request body passes before it is decoded: bounded nesting, UTF-8, no NUL characters.

A decoder recursing 20,000 arrays deep, bytes that are not UTF-8 or a ``\\u0000`` PostgreSQL cannot store
would otherwise surface as a 500 far from the request; here each is a 400 naming the field.
"""

from __future__ import annotations

import re
from typing import Any, cast

import msgspec
from litestar import Request
from litestar.exceptions import ValidationException
from litestar.types import ASGIApp, HTTPScope, Receive, Scope, Send

# Arrays and objects inside one another, the body itself included; no widget or API body needs more.
MAX_JSON_DEPTH = 32

_NUL_MESSAGE = "NUL characters are not allowed"
# Strings (a key when a colon follows) and brackets.
_TOKENS = re.compile(rb'"(?:[^"\\]|\\.)*"(\s*:)?|[\[\]{}]')
# ``\u0000`` not itself escaped (``\\u0000`` is a backslash, then text).
_ESCAPED_NUL = re.compile(rb"(?<!\\)(?:\\\\)*\\u0000")


def _refuse(detail: str, field: str, message: str) -> ValidationException:
    return ValidationException(detail=detail, extra=[{"key": field, "message": message}])


def _field(path: list[str]) -> str:
    return ".".join(path) or "body"


def _key(token: bytes) -> str:
    try:
        return msgspec.json.decode(token, type=str)
    except msgspec.DecodeError:
        return token.decode(errors="replace").strip('"')


def _too_deep(body: bytes) -> str | None:
    """The top-level field under which ``body`` nests deeper than ``MAX_JSON_DEPTH``, if it does."""
    depth, field = 0, "body"
    for token in _TOKENS.finditer(body):
        text = token.group()
        if text in (b"{", b"["):
            depth += 1
            if depth > MAX_JSON_DEPTH:
                return field
        elif text in (b"}", b"]"):
            depth -= 1
        elif token.group(1) and depth == 1:
            field = _key(text[: token.start(1) - token.start()])
    return None


def _nul_path(value: Any, path: list[str]) -> list[str] | None:
    """The path to the first key or string holding a NUL character."""
    if isinstance(value, str):
        return path if "\x00" in value else None
    items = value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, list) else ()
    for key, item in items:
        if isinstance(key, str) and "\x00" in key:
            return path
        if (found := _nul_path(item, [*path, str(key)])) is not None:
            return found
    return None


def check_json_body(body: bytes) -> None:
    """Raise a 400 naming the field if ``body`` is not UTF-8, nests too deep or holds a NUL character."""
    try:
        body.decode()
    except UnicodeDecodeError as exc:
        raise _refuse("The body is not valid UTF-8", "body", f"invalid byte at position {exc.start}") from None
    # Counting is cheap; only a body with that many brackets is scanned.
    if body.count(b"[") + body.count(b"{") > MAX_JSON_DEPTH and (field := _too_deep(body)) is not None:
        detail = f"The JSON body may nest at most {MAX_JSON_DEPTH} arrays or objects deep"
        raise _refuse(detail, field, f"nested more than {MAX_JSON_DEPTH} deep")
    if _ESCAPED_NUL.search(body):
        try:
            decoded = msgspec.json.decode(body)
        except msgspec.DecodeError:
            return  # malformed: the handler's own decoding says so
        if (path := _nul_path(decoded, [])) is not None:
            field = _field(path)
            raise _refuse(f"{field} must not contain NUL characters", field, _NUL_MESSAGE)


def _is_json(scope: HTTPScope) -> bool:
    for name, value in scope["headers"]:
        if name == b"content-type":
            media_type = value.split(b";", 1)[0].strip().lower()
            return media_type == b"application/json" or media_type.endswith(b"+json")
    # No type: Litestar reads a POST or PATCH body as JSON anyway; an untyped PUT is a file's bytes (uploads).
    return scope["method"] in ("POST", "PATCH")


def json_body_guard(app: ASGIApp) -> ASGIApp:
    """Check each JSON request body with ``check_json_body``; the request keeps the body read (and its size limit)."""

    async def middleware(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            http = cast("HTTPScope", scope)
            if http["method"] in ("POST", "PUT", "PATCH", "DELETE") and _is_json(http):
                check_json_body(await Request(scope, receive).body())
        await app(scope, receive, send)

    return middleware
