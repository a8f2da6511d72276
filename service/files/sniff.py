"""What a file is, read from its bytes (the client's word for it is not taken)."""

from __future__ import annotations

import filetype

# Read this much: every signature ``filetype`` knows sits in the first 8 KiB.
HEAD_BYTES = 8192
# Plain-text types have no signature: valid UTF-8 without control characters (bar tab and line ends) is text.
TEXT_TYPES = frozenset({"text/plain", "text/csv"})
_TEXT_CONTROLS = set(range(32)) - {9, 10, 13}


def sniff(data: bytes, declared: str) -> str | None:
    """The file's MIME type from its bytes; None when they say nothing known.

    Text has no signature, so bytes that decode as text take the declared text type (CSV and plain
    text cannot be told apart by their bytes); text declared as anything else is ``text/plain``.
    """
    kind = filetype.guess(data[:HEAD_BYTES])
    if kind is not None:
        return str(kind.mime)
    if _is_text(data):
        return declared if declared in TEXT_TYPES else "text/plain"
    return None


def _is_text(data: bytes) -> bool:
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return not any(ord(c) in _TEXT_CONTROLS for c in text[:HEAD_BYTES])
