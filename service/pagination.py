"""Opaque keyset cursors: the sort key of a page's last item, as URL-safe base64 JSON."""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from service.errors import field_malformed

T = TypeVar("T")


def encode_cursor(*key: Any) -> str:
    """An opaque cursor standing for the sort key of a page's last item."""
    return base64.urlsafe_b64encode(json.dumps(key, default=str).encode()).decode().rstrip("=")


def decode_cursor(cursor: str, arity: int, kind: type = str) -> list[Any]:
    """The sort key behind a ``nextCursor``: ``arity`` parts of ``kind``, else a 400 naming ``cursor``."""
    try:
        key = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
    except (binascii.Error, UnicodeDecodeError, ValueError):
        key = None
    if not isinstance(key, list) or len(key) != arity or not all(isinstance(part, kind) for part in key):
        raise field_malformed("cursor", "use nextCursor from a previous page")
    return key


def page(
    rows: Sequence[Any], limit: int, convert: Callable[[Any], T], key: Callable[[T], tuple[Any, ...]]
) -> tuple[list[T], str | None]:
    """Items of a page fetched with ``limit + 1`` rows, and the cursor for the next page (None on the last)."""
    items = [convert(row) for row in rows[:limit]]
    return items, encode_cursor(*key(items[-1])) if len(rows) > limit else None
