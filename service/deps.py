"""What request handlers share across domains."""

from __future__ import annotations

from typing import Any

from litestar import Request
from sqlalchemy.ext.asyncio import AsyncEngine


def engine(request: Request[Any, Any, Any]) -> AsyncEngine:
    """The app's database engine (one per process, created at startup)."""
    return request.app.state.engine  # type: ignore[no-any-return]
