"""What every dashboard page module needs: the session's CSRF token for the page's writes."""

from __future__ import annotations

from typing import Any

from litestar import Request

from service.auth.sessions import SESSION_COOKIE, load_session


async def csrf_token(request: Request[Any, Any, Any]) -> str:
    """The session's CSRF token for the page's writes; empty for bearer callers, who need none."""
    cookie = request.cookies.get(SESSION_COOKIE)
    if request.headers.get("authorization") or not cookie:
        return ""
    session = await load_session(request.app.state.redis, request.app.state.settings, cookie)
    return session.csrf_token if session else ""
