"""The operator dashboard: server-rendered pages under ``/app`` that read through the same services as the REST API.

Pages render what the services return; every change (reply, note, claim, transfer, AI control...) is a call from
the page to the REST API with the session's CSRF token, so the rules live in one place.
"""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import quote, urlsplit

from litestar import Controller, Request, Response, Router, get
from litestar.di import NamedDependency
from litestar.exceptions import HTTPException, NotAuthorizedException, NotFoundException, ValidationException
from litestar.params import FromPath, QueryParameter
from litestar.response import Redirect, Template
from litestar.static_files import create_static_files_router
from sqlalchemy.ext.asyncio import AsyncConnection

from service.auth.principal import Principal, requires_lead_somewhere
from service.auth.sessions import SIGNED_OUT_COOKIE
from service.conversations import screenshots, services, visitors
from service.conversations.services import ConversationFilters
from service.dashboard.analytics import analytics_context
from service.dashboard.canned import CannedPageController
from service.dashboard.common import csrf_token
from service.dashboard.conversation import decision_views, transfer_targets
from service.dashboard.profile import ProfilePageController
from service.dashboard.simulator import SimulatorPageController
from service.dashboard.teams import TeamSettingsController
from service.deps import engine, files
from service.errors import DomainError
from service.macros import services as macros
from service.problems import domain_status
from service.tags import services as tags
from service.teams import services as teams

HERE = Path(__file__).parent
TEMPLATES = HERE / "templates"
STATIC = HERE / "static"
Tab = Literal["mine", "offers", "queue", "all"]
TABS: dict[str, tuple[str, ConversationFilters]] = {
    "mine": ("Mine", ConversationFilters(statuses=("assigned",), assignee="me")),
    # Pooled teams' conversations offered to the operator: the first to claim or answer one gets it.
    "offers": ("Offered to me", ConversationFilters(statuses=("queued",), assignee="offered")),
    "queue": ("Team queue", ConversationFilters(statuses=("new", "queued"), assignee="unassigned")),
    "all": ("All open", ConversationFilters(statuses=("new", "queued", "assigned"))),
}
INBOX_SIZE = 50


def may_see_all(principal: Principal) -> bool:
    """The "all" tab is for team leads and admins (from an allowed network)."""
    return "lead" in principal.teams.values() or (principal.is_admin and principal.admin_network)


async def _inbox_context(
    request: Request[Any, Any, Any], principal: Principal, tab: Tab, tag: uuid.UUID | None
) -> dict[str, Any]:
    if tab == "all":
        requires_lead_somewhere(principal, "The all-conversations view is for team leads")
    async with engine(request).connect() as conn:
        filters = dataclasses.replace(TABS[tab][1], tag=tag)
        items, _ = await services.list_conversations(conn, principal, filters, None, INBOX_SIZE)
        previews = await services.last_messages(conn, [item["id"] for item in items])
        team_tags = await tags.tags_of_teams(conn, list(principal.teams))
        pooled = await teams.any_pooled(conn, list(principal.teams))
    # "Offered to me" only where a team of yours pools; "All open" for leads and admins.
    shown = {"offers": pooled or tab == "offers", "all": may_see_all(principal)}
    tabs = [(key, label) for key, (label, _) in TABS.items() if shown.get(key, True)]
    return {
        "principal": principal,
        "tab": tab,
        "tabs": tabs,
        "items": items,
        "previews": previews,
        "team_tags": team_tags,
        "tag": tag,
    }


async def _thread_context(
    request: Request[Any, Any, Any], conn: AsyncConnection, principal: Principal, row: Any
) -> dict[str, Any]:
    """State, AI state, newest messages and notes: the part of the page that refreshes on the conversation's events."""
    messages, older = await services.newest_messages(conn, files(request), row.id)
    notes, more_notes = await services.list_notes(conn, row.id, None, services.MAX_PAGE)
    prefix = request.app.state.settings.path_prefix
    shots, more_shots = await screenshots.list_screenshots(conn, row.id, None, services.MAX_PAGE, prefix)
    return {
        "conversation": await services.conversation_of(conn, row),
        "team_tags": await tags.tags_of_teams(conn, [row.team_id]) if row.team_id else [],
        "macros": (await macros.list_macros(conn, row.team_id)).items if row.team_id else [],
        "ai_enabled": await teams.ai_enabled(conn, row.team_id),
        "editable": editable(messages, principal, await teams.message_edit_window(conn, row.team_id)),
        "messages": messages,
        "older": older,
        "notes": notes,
        "more_notes": more_notes is not None,
        "screenshots": shots,
        "more_screenshots": more_shots is not None,
    }


def editable(messages: list[dict[str, Any]], principal: Principal, window: int) -> set[str]:
    """The caller's own messages still inside the team's edit window: they get edit and delete controls."""
    since = datetime.now(UTC) - timedelta(seconds=window)
    return {
        m["id"]
        for m in messages
        if m["operator"]
        and m["operator"]["id"] == principal.operator_id
        and m["sender"] == "operator"
        and m["deleted_at"] is None
        and m["created_at"] > since
    }


async def _transfer_context(
    request: Request[Any, Any, Any], conn: AsyncConnection, principal: Principal, row: Any
) -> dict[str, Any]:
    """Who the conversation can be transferred to; the capacity override is offered to the team's leads only."""
    return {
        "assignee_id": row.assignee_id,
        "targets": await transfer_targets(conn, row.team_id),
        "may_override": principal.is_lead(row.team_id),
    }


async def _visitor_context(
    request: Request[Any, Any, Any], conn: AsyncConnection, principal: Principal, row: Any
) -> dict[str, Any]:
    """The visitor panel: page, language, time zone, device, identity and earlier conversations."""
    detail = await visitors.conversation_detail(conn, principal, row)
    return {
        "visitor": detail["visitor"],
        "page": detail["visitor"]["metadata"] or {},
        "identity_extra": visitors.identity_extra(detail["visitor"]["identity"]),
        "earlier": detail["earlier_conversations"],
    }


async def _routing_context(
    request: Request[Any, Any, Any], conn: AsyncConnection, principal: Principal, row: Any
) -> dict[str, Any]:
    return {"decisions": await decision_views(conn, row.id)}


Part = Callable[[Request[Any, Any, Any], AsyncConnection, Principal, Any], Awaitable[dict[str, Any]]]


async def _conversation_template(
    template: str, request: Request[Any, Any, Any], principal: Principal, conversation_id: str, *parts: Part
) -> Template:
    """The visible conversation (404 otherwise) rendered with the context of each part, read on one connection."""
    context: dict[str, Any] = {"principal": principal}
    async with engine(request).connect() as conn:
        row = await services.visible_conversation(conn, principal, conversation_id)
        for part in parts:
            context.update(await part(request, conn, principal, row))
    return Template(template, context=context)


InboxTab = Annotated[Tab, QueryParameter(description="mine, queue or all")]
InboxTag = Annotated[uuid.UUID | None, QueryParameter(description="Only conversations with this tag")]


class DashboardController(Controller):
    """Inbox and conversation pages, and the fragments the pages refresh when the event stream says so."""

    path = "/app"
    include_in_schema = False

    @get("")
    async def inbox(
        self,
        request: Request[Any, Any, Any],
        principal: NamedDependency[Principal],
        tab: InboxTab = "mine",
        tag: InboxTag = None,
    ) -> Template:
        """The inbox page: one tab of conversations (with a tag, if one is chosen), refreshed live."""
        context = await _inbox_context(request, principal, tab, tag)
        return Template("inbox.html", context={**context, "csrf_token": await csrf_token(request)})

    @get("/inbox")
    async def inbox_list(
        self,
        request: Request[Any, Any, Any],
        principal: NamedDependency[Principal],
        tab: InboxTab = "mine",
        tag: InboxTag = None,
    ) -> Template:
        """The inbox list alone, for the page to swap in."""
        return Template("_inbox_list.html", context=await _inbox_context(request, principal, tab, tag))

    @get("/conversations/{conversation_id:str}")
    async def conversation(
        self, conversation_id: FromPath[str], request: Request[Any, Any, Any], principal: NamedDependency[Principal]
    ) -> Template:
        """A conversation: state, AI controls, history, notes, the visitor, transfer, why it was routed here, forms."""
        parts = (_thread_context, _visitor_context, _transfer_context, _routing_context)
        page = await _conversation_template("conversation.html", request, principal, conversation_id, *parts)
        page.context["csrf_token"] = await csrf_token(request)
        return page

    @get("/conversations/{conversation_id:str}/thread")
    async def thread(
        self, conversation_id: FromPath[str], request: Request[Any, Any, Any], principal: NamedDependency[Principal]
    ) -> Template:
        """The conversation's state, AI state and history alone, for the page to swap in."""
        return await _conversation_template("_thread.html", request, principal, conversation_id, _thread_context)

    @get("/conversations/{conversation_id:str}/transfer-targets")
    async def transfer_choices(
        self, conversation_id: FromPath[str], request: Request[Any, Any, Any], principal: NamedDependency[Principal]
    ) -> Template:
        """The transfer form's choices (members with presence and load, other teams), refreshed as they change."""
        return await _conversation_template(
            "_transfer_targets.html", request, principal, conversation_id, _transfer_context
        )

    @get("/conversations/{conversation_id:str}/routing")
    async def why(
        self, conversation_id: FromPath[str], request: Request[Any, Any, Any], principal: NamedDependency[Principal]
    ) -> Template:
        """The "why was this routed here" panel: the newest routing decisions in plain words."""
        return await _conversation_template("_routing.html", request, principal, conversation_id, _routing_context)

    @get("/analytics")
    async def analytics(
        self,
        request: Request[Any, Any, Any],
        principal: NamedDependency[Principal],
        team: Annotated[str, QueryParameter(name="teamId", max_length=36)] = "",
        first: Annotated[date | None, QueryParameter(name="from")] = None,
        last: Annotated[date | None, QueryParameter(name="to")] = None,
        tz: Annotated[str, QueryParameter(min_length=1, max_length=64)] = "UTC",
        tag: Annotated[str, QueryParameter(max_length=36)] = "",
    ) -> Template:
        """Team metrics for a range of days (both included), with charts and CSV exports; leads and admins."""
        context = await analytics_context(request, principal, team, first, last, tz, tag)
        return Template("analytics.html", context={**context, "csrf_token": await csrf_token(request)})


@get("/", include_in_schema=False)
async def home(request: Request[Any, Any, Any]) -> Redirect:
    """The site's root is the dashboard: where signing in without ``returnTo`` and signing out land."""
    return Redirect(request.app.state.settings.site_path("/app"), status_code=303)


@get("/app/sw.js", include_in_schema=False)
async def service_worker() -> Response[bytes]:
    """The service worker, served under /app/ so that its scope is the whole dashboard (not only /app/static/)."""
    return Response(
        (STATIC / "sw.js").read_bytes(), media_type="text/javascript", headers={"Cache-Control": "no-cache"}
    )


def _sign_in_url(request: Request[Any, Any, Any], path: str, query: str) -> str:
    """Sign-in that comes back to this page (``path`` as the browser asked for it, prefix included)."""
    sign_in = request.app.state.settings.site_path("/auth/login")
    return f"{sign_in}?returnTo=" + quote(path + (f"?{query}" if query else ""))


def sign_in_or_error(request: Request[Any, Any, Any], exc: HTTPException | DomainError) -> Response[Any]:
    """Anonymous visitors go to sign-in and come back (after a sign-out, to a "signed out" page instead, so an
    IdP session that outlived the logout does not sign them straight back in); other errors are a small HTML page."""
    if isinstance(exc, DomainError):
        status = domain_status(exc)
        return Template("error.html", context={"status": status, "detail": exc.detail}, status_code=status)
    if isinstance(exc, NotAuthorizedException):
        signed_out = SIGNED_OUT_COOKIE in request.cookies
        if request.headers.get("hx-request"):
            # A fragment request from a page whose session ended: htmx moves the whole page, which comes back after.
            current = urlsplit(request.headers.get("hx-current-url", request.app.state.settings.site_path("/app")))
            target = current.path if signed_out else _sign_in_url(request, current.path, current.query)
            return Response(None, status_code=401, headers={"HX-Redirect": target})
        if signed_out:
            return Template("signed_out.html", context={"return_to": request.url.path})
        return Redirect(_sign_in_url(request, request.url.path, request.url.query), status_code=303)
    return Template(
        "error.html", context={"status": exc.status_code, "detail": exc.detail}, status_code=exc.status_code
    )


dashboard_router = Router(
    path="/",
    route_handlers=[
        home,
        service_worker,
        DashboardController,
        CannedPageController,
        ProfilePageController,
        TeamSettingsController,
        SimulatorPageController,
        create_static_files_router(path="/app/static", directories=[STATIC], include_in_schema=False),
    ],
    # The app registers these exact classes for problem+json; pages answer in HTML instead.
    exception_handlers={
        cls: sign_in_or_error for cls in (DomainError, HTTPException, ValidationException, NotFoundException)
    },
)
