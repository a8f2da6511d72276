"""Analytics endpoints: every metric as JSON, or one metric as CSV, for teams the caller leads."""

from __future__ import annotations

import csv
import io
import uuid
from datetime import datetime
from typing import Annotated, Any

from litestar import Controller, Request, Response, get
from litestar.di import NamedDependency
from litestar.params import QueryParameter
from pydantic import BaseModel

from service.analytics import services
from service.analytics.schemas import (
    AnalyticsReport,
    CsatOperator,
    CsatStats,
    CsatTeam,
    DurationStats,
    Fairness,
    HeatmapCell,
    Metric,
    OperatorLoad,
    PageCount,
    ReplySplit,
    SessionBucket,
    SlaStats,
    SlaTeamStats,
)
from service.auth.principal import Principal
from service.deps import engine

TeamIds = Annotated[
    list[uuid.UUID] | None,
    QueryParameter(name="teamId", description="Repeat for several teams; omitted: every team you lead"),
]
Start = Annotated[
    datetime, QueryParameter(name="from", description="Start of the period (inclusive); no offset: read in tz")
]
End = Annotated[datetime, QueryParameter(name="to", description="End of the period (exclusive); no offset: read in tz")]
TagId = Annotated[
    uuid.UUID | None,
    QueryParameter(name="tag", description="Only conversations with this tag (a tag of the teams reported on)"),
]
Tz = Annotated[
    str, QueryParameter(description="IANA time zone of day, hour and weekday buckets", min_length=1, max_length=64)
]


def _csv_cell(value: Any) -> Any:
    # Page URLs and display names come from visitors and operators: keep spreadsheets from running them.
    if isinstance(value, str) and value[:1] in ("=", "+", "-", "@"):
        return "'" + value
    return "" if value is None else value


def _csv(model: type[BaseModel], rows: list[Any]) -> str:
    """A header row of the model's JSON names (also when there are no rows), then the rows."""
    out = io.StringIO()
    names = [field.alias or name for name, field in model.model_fields.items()]
    writer = csv.DictWriter(out, fieldnames=names, lineterminator="\r\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: _csv_cell(v) for k, v in row.model_dump(mode="json", by_alias=True).items()})
    return out.getvalue()


async def _metric_rows(metric: Metric, *args: Any) -> tuple[type[BaseModel], list[Any]]:
    """The metric's table: one row per bucket, page, cell or operator; one row for the summary metrics."""
    match metric:
        case Metric.SESSIONS_BY_DAY:
            return SessionBucket, await services.sessions_by_day(*args)
        case Metric.SESSIONS_BY_HOUR:
            return SessionBucket, await services.sessions_by_hour(*args)
        case Metric.FIRST_RESPONSE:
            return DurationStats, [await services.first_response(*args)]
        case Metric.TIME_TO_ASSIGNMENT:
            return DurationStats, [await services.time_to_assignment(*args)]
        case Metric.REPLIES:
            return ReplySplit, [await services.replies(*args)]
        case Metric.TOP_PAGES:
            return PageCount, await services.top_pages(*args)
        case Metric.PEAK_HOURS:
            return HeatmapCell, await services.peak_hours(*args)
        case Metric.OPERATOR_LOAD:
            return OperatorLoad, (await services.operator_load(*args)).operators
        case Metric.FAIRNESS:
            return Fairness, [(await services.operator_load(*args)).fairness]
        case Metric.CSAT:
            return CsatStats, [(await services.csat(*args)).overall]
        case Metric.CSAT_BY_TEAM:
            return CsatTeam, (await services.csat(*args)).teams
        case Metric.CSAT_BY_OPERATOR:
            return CsatOperator, (await services.csat(*args)).operators
        case Metric.SLA:
            return SlaStats, (await services.sla(*args)).overall
        case Metric.SLA_BY_TEAM:
            return SlaTeamStats, (await services.sla(*args)).teams


class AnalyticsController(Controller):
    """Sessions, response and assignment times, AI share, pages, peak hours, operator load and CSAT of led teams."""

    path = "/api/v1/analytics"
    tags = ["Analytics"]

    @get("", operation_id="getAnalytics", summary="Every analytics metric for a period")
    async def report(
        self,
        request: Request[Any, Any, Any],
        principal: NamedDependency[Principal],
        start: Start,
        end: End,
        team_id: TeamIds = None,
        tz: Tz = "UTC",
        tag: TagId = None,
    ) -> AnalyticsReport:
        """Leads see the teams they lead, admins every team; operators 403, another team's id 404."""
        start, end = services.period(start, end, tz)
        async with services.snapshot(engine(request)) as conn:
            teams = await services.teams_for(conn, principal, team_id)
            await services.check_tag(conn, teams, tag)
            return await services.report(conn, teams, start, end, tz, tag)

    @get(
        "/export.csv",
        operation_id="exportAnalyticsCsv",
        summary="One analytics metric as CSV",
        media_type="text/csv",
    )
    async def export(
        self,
        request: Request[Any, Any, Any],
        principal: NamedDependency[Principal],
        metric: Annotated[Metric, QueryParameter(description="The metric (one table per file)")],
        start: Start,
        end: End,
        team_id: TeamIds = None,
        tz: Tz = "UTC",
        tag: TagId = None,
    ) -> Response[str]:
        """A header row with the JSON field names, then one row per bucket, page, cell or operator."""
        start, end = services.period(start, end, tz)
        async with services.snapshot(engine(request)) as conn:
            teams = await services.teams_for(conn, principal, team_id)
            await services.check_tag(conn, teams, tag)
            model, rows = await _metric_rows(metric, conn, teams, start, end, tz, tag)
        filename = f"analytics-{metric.value}-{start.date().isoformat()}.csv"
        return Response(
            _csv(model, rows),
            media_type="text/csv",
            headers={"Content-Disposition": f'attachment; filename="{filename}"'},
        )
