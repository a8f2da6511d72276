"""The visitor demo (development mode only): a plain page that speaks the PocketPing widget protocol."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from litestar.connection import ASGIConnection
from litestar.exceptions import NotFoundException
from litestar.handlers import BaseRouteHandler
from litestar.static_files import create_static_files_router

STATIC = Path(__file__).parent / "static"


def requires_development(connection: ASGIConnection[Any, Any, Any, Any], _: BaseRouteHandler) -> None:
    """Outside development mode (``switchboard dev``) the demo does not exist."""
    if connection.app.state.settings.environment != "development":
        raise NotFoundException("Not found")


# /demo is the page (index.html), /demo/demo.js its script; anyone may open them, as a visitor would.
demo_router = create_static_files_router(
    path="/demo", directories=[STATIC], html_mode=True, guards=[requires_development], include_in_schema=False
)
