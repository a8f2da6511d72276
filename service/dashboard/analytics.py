"""The analytics page: the report of ``service.analytics`` as numbers and server-drawn SVG charts."""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from urllib.parse import urlencode
from zoneinfo import ZoneInfo

from litestar import Request

from service.analytics import services
from service.analytics.schemas import HeatmapCell, Metric, SessionBucket
from service.auth.principal import Principal
from service.deps import engine
from service.errors import field_malformed
from service.tags import services as tags
from service.teams import services as teams

DEFAULT_DAYS = 7
WEEKDAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
# Chart geometry in SVG user units; the viewBox scales it to the page width.
BAR_AREA = (600, 160)
CELL = 22


def _chosen(value: str, field: str) -> uuid.UUID | None:
    """The form's team or tag choice: empty means every team the caller leads, or any tag."""
    if not value:
        return None
    try:
        return uuid.UUID(value)
    except ValueError:
        raise field_malformed(field, "choose from the list") from None


def _days(first: date | None, last: date | None, tz: str) -> tuple[date, date]:
    """The inclusive day range of the form; by default the last seven days of ``tz`` up to today."""
    if tz not in services.zones():
        raise field_malformed("tz", "use an IANA time zone name such as Europe/Paris or UTC")
    last = last or datetime.now(UTC).astimezone(ZoneInfo(tz)).date()
    return first or last - timedelta(days=DEFAULT_DAYS - 1), last


def bars(buckets: list[SessionBucket]) -> dict[str, Any]:
    """One bar per day, heights relative to the busiest day."""
    width, height = BAR_AREA
    step = width / max(len(buckets), 1)
    top = max((b.sessions for b in buckets), default=0) or 1
    shapes = []
    for index, bucket in enumerate(buckets):
        tall = height * bucket.sessions / top
        shapes.append(
            {
                "x": round(index * step + step * 0.1, 2),
                "y": round(height - tall, 2),
                "width": round(step * 0.8, 2),
                "height": round(tall, 2),
                "label": bucket.label,
                "sessions": bucket.sessions,
            }
        )
    return {"width": width, "height": height, "bars": shapes, "top": top}


def heatmap(cells: list[HeatmapCell]) -> dict[str, Any]:
    """Weekday rows by hour columns; a cell's opacity is its share of the busiest cell."""
    top = max((c.sessions for c in cells), default=0) or 1
    shapes = [
        {
            "x": 40 + c.hour * CELL,
            "y": (c.weekday - 1) * CELL,
            "opacity": round(0.08 + 0.92 * c.sessions / top, 3) if c.sessions else 0.04,
            "title": f"{WEEKDAYS[c.weekday - 1]} {c.hour:02d}:00 — {c.sessions}",
            "sessions": c.sessions,
        }
        for c in cells
    ]
    return {"width": 40 + 24 * CELL, "height": 7 * CELL + 16, "cell": CELL, "cells": shapes, "weekdays": WEEKDAYS}


async def analytics_context(
    request: Request[Any, Any, Any],
    principal: Principal,
    team: str,
    first: date | None,
    last: date | None,
    tz: str,
    tag: str = "",
) -> dict[str, Any]:
    """Everything the page shows: the filter form's choices, the report, the charts and the CSV links."""
    team_id = _chosen(team, "teamId")
    tag_id = _chosen(tag, "tag")
    export = request.app.state.settings.site_path("/api/v1/analytics/export.csv")
    first, last = _days(first, last, tz)
    start, end = services.period(
        datetime.combine(first, time()), datetime.combine(last + timedelta(days=1), time()), tz
    )
    async with services.snapshot(engine(request)) as conn:
        selected = await services.teams_for(conn, principal, [team_id] if team_id else None)
        names = await teams.team_names(conn, await services.teams_for(conn, principal, None))
        await services.check_tag(conn, selected, tag_id)
        report = await services.report(conn, selected, start, end, tz, tag_id)
        team_tags = await tags.tags_of_teams(conn, selected)
    query = {"from": start.isoformat(), "to": end.isoformat(), "tz": tz} | ({"teamId": str(team_id)} if team_id else {})
    query |= {"tag": str(tag_id)} if tag_id else {}
    return {
        "principal": principal,
        "teams": sorted(((str(choice), name) for choice, name in names.items()), key=lambda pair: pair[1]),
        "team": str(team_id) if team_id else "",
        "tags": [
            (str(t.id), t.name if len(selected) == 1 else f"{t.name} ({names.get(t.team_id, '')})") for t in team_tags
        ],
        "tag": str(tag_id) if tag_id else "",
        "first": first.isoformat(),
        "last": last.isoformat(),
        "tz": tz,
        "report": report,
        "bars": bars(report.sessions_by_day),
        "heatmap": heatmap(report.peak_hours),
        "exports": [(m.value, f"{export}?" + urlencode({"metric": m.value} | query)) for m in Metric],
    }
