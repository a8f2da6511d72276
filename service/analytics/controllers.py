"""Analytics endpoints: every metric as JSON, or one metric as CSV, for teams the caller leads."""

from __future__ import annotations

import csv
import io
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from functools import cache
from typing import Annotated, Any
from zoneinfo import ZoneInfo, available_timezones

import sqlalchemy as sa
from litestar import Controller, Request, Response, get
from litestar.di import NamedDependency
from litestar.exceptions import ValidationException
from litestar.params import QueryParameter
from pydantic import BaseModel
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from service.analytics import services
from service.analytics.schemas import (
    AnalyticsReport,
    DurationStats,
    Fairness,
    HeatmapCell,
    OperatorLoad,
    PageCount,
    ReplySplit,
    SessionBucket,
)
from service.auth.principal import Principal

MAX_SPAN = timedelta(days=366)


class Metric(StrEnum):
    """The metric one CSV export holds (one table per file)."""

    SESSIONS_BY_DAY = "sessionsByDay"
    SESSIONS_BY_HOUR = "sessionsByHour"
    FIRST_RESPONSE = "firstResponse"
    TIME_TO_ASSIGNMENT = "timeToAssignment"
    REPLIES = "replies"
    TOP_PAGES = "topPages"
    PEAK_HOURS = "peakHours"
    OPERATOR_LOAD = "operatorLoad"
    FAIRNESS = "fairness"


TeamIds = Annotated[
    list[uuid.UUID] | None,
    QueryParameter(name="teamId", description="Repeat for several teams; omitted: every team you lead"),
]
Start = Annotated[
    datetime, QueryParameter(name="from", description="Start of the period (inclusive); no offset: read in tz")
]
End = Annotated[datetime, QueryParameter(name="to", description="End of the period (exclusive); no offset: read in tz")]
Tz = Annotated[
    str, QueryParameter(description="IANA time zone of day, hour and weekday buckets", min_length=1, max_length=64)
]


def invalid(field: str, message: str) -> ValidationException:
    return ValidationException(detail=f"{field} is not valid", extra=[{"key": field, "message": message}])


@cache
def zones() -> frozenset[str]:
    return frozenset(available_timezones())


def period(start: datetime, end: datetime, tz: str) -> tuple[datetime, datetime]:
    """Validated, offset-aware bounds: a known zone, from < to, at most MAX_SPAN apart."""
    if tz not in zones():
        raise invalid("tz", "use an IANA time zone name such as Europe/Paris or UTC")
    zone = ZoneInfo(tz)
    start, end = ((t if t.tzinfo is not None else t.replace(tzinfo=zone)).astimezone(UTC) for t in (start, end))
    if start >= end:
        raise invalid("to", "must be after from")
    if end - start > MAX_SPAN:
        raise invalid("to", f"the period may span at most {MAX_SPAN.days} days")
    return start, end


@asynccontextmanager
async def snapshot(request: Request[Any, Any, Any]) -> AsyncIterator[AsyncConnection]:
    """One read-only REPEATABLE READ transaction, so every metric of a report sees the same data."""
    engine: AsyncEngine = request.app.state.engine
    async with engine.connect() as conn:
        await conn.execution_options(isolation_level="REPEATABLE READ")
        async with conn.begin():
            await conn.execute(sa.text("SET TRANSACTION READ ONLY"))
            yield conn


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


class AnalyticsController(Controller):
    """Sessions, response and assignment times, AI share, pages, peak hours and operator load of led teams."""

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
    ) -> AnalyticsReport:
        """Leads see the teams they lead, admins every team; operators 403, another team's id 404."""
        start, end = period(start, end, tz)
        async with snapshot(request) as conn:
            teams = await services.teams_for(conn, principal, team_id)
            return await services.report(conn, teams, start, end, tz)

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
    ) -> Response[str]:
        """A header row with the JSON field names, then one row per bucket, page, cell or operator."""
        start, end = period(start, end, tz)
        async with snapshot(request) as conn:
            teams = await services.teams_for(conn, principal, team_id)
            model, rows = await _metric_rows(metric, conn, teams, start, end, tz)
        filename = f"analytics-{metric.value}-{start.date().isoformat()}.csv"
        return Response(
            _csv(model, rows),
            media_type="text/csv",
            headers={"Content-Disposition": f'attachment; filename="{filename}"'},
        )
