"""The profile page: your presence, your teams and roles, your personal access tokens, your chat accounts, and
desktop notifications for this browser."""

from __future__ import annotations

from typing import Any

from litestar import Controller, Request, get
from litestar.di import NamedDependency
from litestar.response import Template

from service.auth import services as auth
from service.auth.principal import Principal
from service.bridges import links
from service.dashboard.common import csrf_token
from service.deps import engine
from service.presence import services as presence
from service.push.senders import vapid_public_key
from service.teams import services as teams

# Token lifetimes offered by the form, in days; "never" is offered too.
EXPIRY_DAYS = (7, 30, 90, 365)


async def _profile_context(request: Request[Any, Any, Any], principal: Principal) -> dict[str, Any]:
    async with engine(request).connect() as conn:
        now = await presence.current(conn, principal.operator_id)
        memberships = await teams.memberships(conn, principal.operator_id)
        tokens = await auth.live_tokens(conn, principal.operator_id)
        accounts = await links.list_links(conn, principal.operator_id)
    return {
        "principal": principal,
        "presence": now,
        "teams": memberships,
        "tokens": tokens.items,
        "accounts": accounts,
    }


class ProfilePageController(Controller):
    """``/app/profile``: changes go to the presence, token and bridge-link endpoints; the page part then refreshes."""

    path = "/app/profile"
    include_in_schema = False

    @get("")
    async def profile_page(self, request: Request[Any, Any, Any], principal: NamedDependency[Principal]) -> Template:
        """Presence, teams, tokens and chat accounts; the forms for a new token or link code (each shown once)."""
        context = await _profile_context(request, principal)
        context |= {
            "csrf_token": await csrf_token(request),
            "expiry_days": EXPIRY_DAYS,
            "vapid_public_key": vapid_public_key(request.app.state.settings),
        }
        return Template("profile.html", context=context)

    @get("/details")
    async def profile_details(self, request: Request[Any, Any, Any], principal: NamedDependency[Principal]) -> Template:
        """Presence, teams, tokens and chat accounts alone, for the page to swap in."""
        return Template("_profile.html", context=await _profile_context(request, principal))
