"""The policy simulator page for leads: a form for the period and the draft, and real against simulated as bars."""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from litestar import Controller, Request, get
from litestar.di import NamedDependency
from litestar.params import FromPath
from litestar.response import Template
from pydantic import ValidationError

from service.auth.principal import Principal, requires_lead
from service.dashboard.common import csrf_token
from service.deps import engine
from service.errors import DomainError
from service.problems import domain_status
from service.simulator.schemas import Figures, SimulationCreate, SimulationPublic
from service.simulator.services import simulate_period
from service.teams import services as teams

DEFAULT_DAYS = 7
POLICIES = {"round_robin": "Round robin", "least_busy": "Least busy"}
DRAFT_FIELDS = ("routingPolicy", "defaultCapacity", "firstResponseTargetSeconds")


def _day(value: str | None, fallback: date) -> date | str:
    """A form date, or the text itself when it is not one (the request's check then names the field)."""
    if not value:
        return fallback
    try:
        return date.fromisoformat(value)
    except ValueError:
        return value


def _bound(day: date | str, after: int) -> str:
    """Midnight UTC of ``day`` plus ``after`` days, as the API takes it; text that is no date passes through."""
    if not isinstance(day, date):
        return day
    try:
        return datetime.combine(day + timedelta(days=after), time(), UTC).isoformat()
    except OverflowError:  # the day after 9999-12-31: the request's check refuses the period
        return datetime.combine(day, time.max, UTC).isoformat()


def _form(query: Any, members: list[Any]) -> tuple[dict[str, Any], str, str]:
    """The API's request body from the form, and the form's two days: whole days, ``to`` included; an empty
    field keeps the team's setting. By default the last seven days before today (UTC)."""
    today = datetime.now(UTC).date()
    last = _day(query.get("to"), today - timedelta(days=1))
    first = _day(query.get("from"), (last if isinstance(last, date) else today) - timedelta(days=DEFAULT_DAYS - 1))
    draft: dict[str, Any] = {name: query.get(name) for name in DRAFT_FIELDS if query.get(name)}
    overrides = [
        {"operatorId": str(m.operator_id), "capacity": query.get(f"capacity-{m.operator_id}")}
        for m in members
        if query.get(f"capacity-{m.operator_id}")
    ]
    if overrides:
        draft["members"] = overrides
    body = {"from": _bound(first, 0), "to": _bound(last, 1), "draft": draft}
    return body, str(first), str(last)


def _pairs(result: SimulationPublic) -> list[dict[str, Any]]:
    """Rows of two bars (real, simulated), each row scaled to its larger value."""

    def row(label: str, unit: str, real: float | None, simulated: float | None) -> dict[str, Any]:
        top = max(real or 0, simulated or 0) or 1
        return {
            "label": label,
            "unit": unit,
            "real": real,
            "simulated": simulated,
            "real_width": round(100 * (real or 0) / top, 1),
            "simulated_width": round(100 * (simulated or 0) / top, 1),
        }

    def share(value: float | None) -> float | None:
        return None if value is None else round(100 * value, 1)

    real, simulated = result.real, result.simulated
    rows = [
        row(name, "s", getattr(real.waits, key), getattr(simulated.waits, key))
        for name, key in (
            ("Average wait", "average_seconds"),
            ("Wait p50", "p50_seconds"),
            ("Wait p90", "p90_seconds"),
            ("Wait p99", "p99_seconds"),
        )
    ]
    rows.append(row("SLA attainment", "%", share(real.sla_attainment), share(simulated.sla_attainment)))
    rows.append(row("Abandoned", "", real.abandoned, simulated.abandoned))
    rows.append(row("Fairness (Jain)", "", real.jain_index, simulated.jain_index))
    return rows


def _operators(real: Figures, simulated: Figures) -> list[dict[str, Any]]:
    """Assignments per operator, both sides on one scale (the busiest operator of either)."""
    replayed = {o.operator_id: o for o in simulated.operators}
    top = max([o.assignments for o in real.operators + simulated.operators] + [1])
    rows = []
    for load in real.operators:
        mine = replayed.get(load.operator_id)
        sim = mine.assignments if mine else 0
        rows.append(
            {
                "operator_id": load.operator_id,
                "name": load.display_name,
                "real": load.assignments,
                "simulated": sim,
                "real_width": round(100 * load.assignments / top, 1),
                "simulated_width": round(100 * sim / top, 1),
            }
        )
    return rows


class SimulatorPageController(Controller):
    """``/app/teams/{id}/simulator``: the team's leads and admins (as the API)."""

    path = "/app/teams"
    include_in_schema = False

    @get("/{team_id:uuid}/simulator")
    async def simulator(
        self, team_id: FromPath[uuid.UUID], request: Request[Any, Any, Any], principal: NamedDependency[Principal]
    ) -> Template:
        """The form; once submitted (``run``), the replay beside what happened, or the problem with the field."""
        requires_lead(principal, team_id)
        async with engine(request).connect() as conn:
            team = await teams.get_team(conn, team_id, principal)
            members = await teams.list_members(conn, team_id)
        body, first, last = _form(request.query_params, members)
        context: dict[str, Any] = {
            "principal": principal,
            "team": team,
            "members": members,
            "policies": POLICIES,
            "form": dict(request.query_params),
            "first": first,
            "last": last,
            "csrf_token": await csrf_token(request),
            "result": None,
            "problem": None,
        }
        status = 200
        if request.query_params.get("run"):
            try:
                result = await simulate_period(engine(request), team_id, SimulationCreate.model_validate(body))
            except ValidationError as exc:
                error = exc.errors()[0]
                field = ".".join(str(part) for part in error["loc"])
                context["problem"], status = {"field": field, "message": error["msg"]}, 400
            except DomainError as exc:
                context["problem"] = {"field": exc.field, "message": exc.message}
                status = domain_status(exc)
            else:
                context |= {
                    "result": result,
                    "pairs": _pairs(result),
                    "loads": _operators(result.real, result.simulated),
                }
        return Template("simulator.html", context=context, status_code=status)
