"""The canned responses page: your personal responses and your teams', an editor with a live preview."""

from __future__ import annotations

import uuid
from typing import Any

from litestar import Controller, Request, get
from litestar.di import NamedDependency
from litestar.response import Template

from service.auth.principal import Principal
from service.canned import services as canned
from service.canned.template import VARIABLES
from service.conversations import services as conversations
from service.conversations.services import ConversationFilters
from service.dashboard.common import csrf_token
from service.deps import engine
from service.teams import services as teams

# Operators keep a few dozen responses; a list this long says the rest are in the REST API.
LIST_SIZE = 500
# Conversations offered to fill the preview's visitor variables.
PREVIEW_CONVERSATIONS = 20


async def team_names(request: Request[Any, Any, Any], principal: Principal) -> dict[uuid.UUID, str]:
    """The names of the caller's teams, by id, in name order."""
    async with engine(request).connect() as conn:
        return await teams.team_names(conn, principal.teams)


async def _list_context(request: Request[Any, Any, Any], principal: Principal) -> dict[str, Any]:
    teams = await team_names(request, principal)
    async with engine(request).connect() as conn:
        page = await canned.list_canned(conn, principal, team_id=None, prefix=None, cursor=None, limit=LIST_SIZE)
    return {
        "principal": principal,
        "items": page.items,
        "more": page.next_cursor is not None,
        "teams": teams,
        # What the API lets the caller change: their own, and the teams they lead.
        "managed": {item.id for item in page.items if item.team_id is None or principal.is_lead(item.team_id)},
    }


class CannedPageController(Controller):
    """``/app/canned``: list, create, edit and delete through the REST API; the list refreshes after each change."""

    path = "/app/canned"
    include_in_schema = False

    @get("")
    async def canned_page(self, request: Request[Any, Any, Any], principal: NamedDependency[Principal]) -> Template:
        """The list, the editor (scopes you may write to) and the preview's conversation choices."""
        context = await _list_context(request, principal)
        async with engine(request).connect() as conn:
            recent, _ = await conversations.list_conversations(
                conn, principal, ConversationFilters(), None, PREVIEW_CONVERSATIONS
            )
        context |= {
            "csrf_token": await csrf_token(request),
            "lead_teams": {team: name for team, name in context["teams"].items() if principal.is_lead(team)},
            "recent": recent,
            "variables": VARIABLES,
        }
        return Template("canned.html", context=context)

    @get("/list")
    async def canned_list(self, request: Request[Any, Any, Any], principal: NamedDependency[Principal]) -> Template:
        """The list alone, for the page to swap in after a change."""
        return Template("_canned_list.html", context=await _list_context(request, principal))
