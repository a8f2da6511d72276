"""Team settings for leads: routing, members, rules, AI, bridges and webhooks of one team, on one page.

The page only reads (through the same services as the REST API); each form writes to the REST API, so its
rules and its problem details, field by field, are the API's own.
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Literal, get_args

from litestar import Controller, Request, get
from litestar.di import NamedDependency
from litestar.params import FromPath
from litestar.response import Template
from pydantic import BaseModel
from sqlalchemy.ext.asyncio import AsyncConnection

from service.auth.principal import Principal, requires_lead, requires_lead_somewhere
from service.dashboard.common import csrf_token
from service.deps import engine
from service.errors import NotFound
from service.hours import calendar, clock
from service.hours.calendar import WEEKDAYS
from service.operators.services import list_operators
from service.teams import rules as rules_service
from service.teams import services as teams
from service.teams.schemas import (
    BridgesPublic,
    BridgesUpdate,
    OfflinePolicy,
    OutsideHours,
    Policy,
    RulePublic,
    TeamPublic,
)
from service.teams.visitors import local_time_text
from service.webhooks.delivery import WEBHOOK_EVENT_KINDS
from service.webhooks.services import get_endpoint, list_deliveries, list_endpoints

# The page shows this many of each; the REST API pages through the rest.
TEAMS_SHOWN = 200
WEBHOOKS_SHOWN = 100
DELIVERIES_SHOWN = 10
OPERATORS_OFFERED = 200
POLICIES: dict[Policy, str] = {
    "round_robin": "Round robin (assigned longest ago first)",
    "least_busy": "Least busy (lowest open ÷ capacity)",
    "manual": "Manual (queue; operators claim)",
}
OFFLINE_POLICIES: dict[OfflinePolicy, str] = {
    "keep": "Keep their conversations",
    "requeue": "Put them back in the queue",
    "reassign": "Reassign them to the next eligible member",
}
OUTSIDE_HOURS: dict[OutsideHours, str] = {
    "wait": "Wait in the queue for the opening",
    "overflow": "Go to another team",
    "ai": "The AI answers (needs the AI on)",
}
WEEKDAY_NAMES = dict(
    zip(WEEKDAYS, ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"), strict=True)
)
_LOOKS_LITERAL = re.compile(r"^(true|false|-?\d+(\.\d+)?)$|^\".*\"$")


@dataclass(frozen=True)
class BridgeField:
    """One setting of a bridge form; a secret carries only whether it is stored, never its value."""

    name: str
    label: str
    kind: Literal["bool", "text", "secret"]
    value: Any
    hint: str | None


@dataclass(frozen=True)
class BridgeForm:
    name: str
    fields: list[BridgeField]


def _model(annotation: Any) -> type[BaseModel]:
    """``XUpdate | None`` → ``XUpdate``."""
    return next(arg for arg in get_args(annotation) if isinstance(arg, type) and issubclass(arg, BaseModel))


def _label(field: str) -> str:
    """``chat_id`` → "Chat ID"."""
    return re.sub(r"\bid\b", "ID", field.replace("_", " ").capitalize())


def bridge_forms(bridges: BridgesPublic) -> list[BridgeForm]:
    """A form per bridge, with the fields the API's schemas offer: ``BridgesUpdate`` says what can be set, and a
    ``<field>Configured`` flag in ``BridgesPublic`` marks a field as a write-only secret."""
    forms = []
    for bridge, spec in BridgesUpdate.model_fields.items():
        public_model = _model(BridgesPublic.model_fields[bridge].annotation)
        stored = getattr(bridges, bridge)
        fields = []
        for name, field in _model(spec.annotation).model_fields.items():
            alias = field.alias or name
            if f"{name}_configured" in public_model.model_fields:
                configured = bool(stored and getattr(stored, f"{name}_configured"))
                # Every secret is write-only, as the page says once; the rest of its description still helps.
                hint = re.sub(r"^Write-only\W*", "", field.description or "").rstrip(")") or None
                fields.append(BridgeField(alias, _label(name), "secret", configured, hint))
            else:
                value = getattr(stored, name, None) if stored else None
                kind: Literal["bool", "text"] = "bool" if field.annotation is bool else "text"
                fields.append(BridgeField(alias, _label(name), kind, value, field.description))
        forms.append(BridgeForm(bridge, fields))
    return forms


def field_lines(values: dict[str, Any] | None) -> str:
    """Identity or metadata conditions as ``key = value`` lines; a value that would read back as another type
    (a string "true" against the boolean) or that has edge spaces is quoted, so saving it again changes nothing."""
    lines = []
    for key, value in (values or {}).items():
        if not isinstance(value, str) or _LOOKS_LITERAL.match(value) or value != value.strip() or "\n" in value:
            value = json.dumps(value)
        lines.append(f"{key} = {value}")
    return "\n".join(lines)


def rule_view(rule: RulePublic) -> dict[str, Any]:
    """A rule's values as its form's fields show them."""
    conditions = rule.conditions
    return {
        "name": rule.name,
        "enabled": rule.enabled,
        "url": conditions.url or "",
        "language": ", ".join(conditions.language or []),
        "country": ", ".join(conditions.country or []),
        "identity": field_lines(conditions.identity),
        "metadata": field_lines(conditions.metadata),
        "set_priority": "" if rule.set_priority is None else rule.set_priority,
        "required_skills": ", ".join(rule.required_skills),
    }


# --- the page's sections: each reads what it shows, on the page's connection


Section = Callable[[AsyncConnection, Principal, TeamPublic], Awaitable[dict[str, Any]]]


def hours_status(team: TeamPublic) -> str:
    """Whether the team is open now, and until when or from when."""
    if team.business_hours is None:
        return "Open 24/7"
    schedule, now, zone = team.business_hours.schedule(), clock.now(), team.business_hours.time_zone
    if calendar.is_open(schedule, now):
        closing = calendar.next_closing(schedule, now)
        return "Open now" if closing is None else f"Open now, until {local_time_text(closing, zone)}"
    return f"Closed now; opens {local_time_text(calendar.next_opening(schedule, now), zone)}"


def hours_view(team: TeamPublic) -> dict[str, Any]:
    """The business-hours fields as the form shows them: a day's intervals and the holidays comma-separated."""
    hours = team.business_hours
    weekly: dict[str, list[str]] = {day: list(intervals) for day, intervals in hours.weekly.items()} if hours else {}
    return {
        "status": hours_status(team),
        "time_zone": hours.time_zone if hours else "",
        "days": {day: ", ".join(weekly.get(day, [])) for day in WEEKDAYS},
        "holidays": ", ".join(hours.holidays) if hours else "",
    }


async def _settings(conn: AsyncConnection, principal: Principal, team: TeamPublic) -> dict[str, Any]:
    return {
        "policies": POLICIES,
        "offline_policies": OFFLINE_POLICIES,
        "outside_hours": OUTSIDE_HOURS,
        "weekday_names": WEEKDAY_NAMES,
        "hours": hours_view(team),
        "overflow_teams": await teams.other_teams(conn, team.id),
    }


async def _members(conn: AsyncConnection, principal: Principal, team: TeamPublic) -> dict[str, Any]:
    members = await teams.list_members(conn, team.id)
    operators: list[Any] = []
    if principal.is_admin and principal.admin_network:
        # Only administrators may list operators (as in the REST API); leads add a member by operator id.
        page = await list_operators(conn, include_deactivated=False, cursor=None, limit=OPERATORS_OFFERED)
        inside = {member.operator_id for member in members}
        operators = [operator for operator in page.items if operator.id not in inside]
    return {"members": members, "operators": operators}


async def _rules(conn: AsyncConnection, principal: Principal, team: TeamPublic) -> dict[str, Any]:
    return {"rules": [rule_view(rule) for rule in (await rules_service.list_rules(conn, team.id)).items]}


async def _bridges(conn: AsyncConnection, principal: Principal, team: TeamPublic) -> dict[str, Any]:
    return {"bridges": bridge_forms(team.bridges or BridgesPublic())}


async def _webhooks(conn: AsyncConnection, principal: Principal, team: TeamPublic) -> dict[str, Any]:
    endpoints = await list_endpoints(conn, team.id, None, WEBHOOKS_SHOWN)
    more = endpoints.next_cursor is not None
    return {"webhooks": endpoints.items, "more_webhooks": more, "kinds": WEBHOOK_EVENT_KINDS}


SECTIONS: dict[str, Section] = {
    "settings": _settings,
    "members": _members,
    "rules": _rules,
    "bridges": _bridges,
    "webhooks": _webhooks,
}


async def _team_context(
    request: Request[Any, Any, Any], principal: Principal, team_id: uuid.UUID, sections: list[str]
) -> dict[str, Any]:
    """The team (404 outside it, 403 for its operators) and each section's context, read on one connection."""
    requires_lead(principal, team_id)
    async with engine(request).connect() as conn:
        team = await teams.get_team(conn, team_id, principal)
        context: dict[str, Any] = {"principal": principal, "team": team}
        for name in sections:
            context.update(await SECTIONS[name](conn, principal, team))
    return context


class TeamSettingsController(Controller):
    """The team settings pages and the sections they refresh after a save."""

    path = "/app/teams"
    include_in_schema = False

    @get("")
    async def index(self, request: Request[Any, Any, Any], principal: NamedDependency[Principal]) -> Template:
        """The teams the caller leads (every team for admins)."""
        requires_lead_somewhere(principal, "Team settings are for team leads")
        async with engine(request).connect() as conn:
            page = await teams.list_teams(conn, principal, None, TEAMS_SHOWN)
        led = [team for team in page.items if principal.is_lead(team.id)]
        context = {"principal": principal, "teams": led, "more": page.next_cursor is not None}
        return Template("teams.html", context={**context, "csrf_token": await csrf_token(request)})

    @get("/{team_id:uuid}")
    async def settings(
        self, team_id: FromPath[uuid.UUID], request: Request[Any, Any, Any], principal: NamedDependency[Principal]
    ) -> Template:
        """Every section of one team's settings."""
        context = await _team_context(request, principal, team_id, list(SECTIONS))
        return Template("team.html", context={**context, "csrf_token": await csrf_token(request)})

    @get("/{team_id:uuid}/sections/{section:str}")
    async def section(
        self,
        team_id: FromPath[uuid.UUID],
        section: FromPath[str],
        request: Request[Any, Any, Any],
        principal: NamedDependency[Principal],
    ) -> Template:
        """One section alone (settings, members, rules, bridges or webhooks), for the page to swap in."""
        if section not in SECTIONS:
            raise NotFound("No such section")
        context = await _team_context(request, principal, team_id, [section])
        return Template(f"_team_{section}.html", context=context)

    @get("/{team_id:uuid}/webhooks/{webhook_id:uuid}/deliveries")
    async def deliveries(
        self,
        team_id: FromPath[uuid.UUID],
        webhook_id: FromPath[uuid.UUID],
        request: Request[Any, Any, Any],
        principal: NamedDependency[Principal],
    ) -> Template:
        """A webhook's newest deliveries."""
        requires_lead(principal, team_id)
        async with engine(request).connect() as conn:
            await get_endpoint(conn, team_id, webhook_id)
            page = await list_deliveries(conn, webhook_id, None, DELIVERIES_SHOWN)
        return Template("_team_deliveries.html", context={"deliveries": page.items})
