"""Analytics queries: one function per metric, each an SQL aggregate over (teams, [start, end), time zone).

Every function takes ``(conn, team_ids, start, end, tz, tag)``; the population is the conversations of those
teams created in ``[start, end)``, with ``tag`` on them when one is given (definitions in docs/analytics.md).
"""

from __future__ import annotations

import statistics
import uuid
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from functools import cache
from typing import Any
from zoneinfo import ZoneInfo, available_timezones

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from service.analytics.schemas import (
    AnalyticsReport,
    CsatOperator,
    CsatReport,
    CsatStats,
    CsatTeam,
    DurationStats,
    Fairness,
    HeatmapCell,
    LoadReport,
    OperatorLoad,
    PageCount,
    ReplySplit,
    SessionBucket,
    SlaReport,
    SlaStats,
    SlaTeamStats,
)
from service.auth.principal import Principal, requires_admin_network, requires_lead
from service.db.tables import tag_t, team_t
from service.errors import Forbidden, NotFound, field_invalid, field_malformed

MAX_SPAN = timedelta(days=366)
TOP_PAGES = 20
SECONDS_DIGITS = 3
SHARE_DIGITS = 4
SCORE_DIGITS = 2

# Whether conversation ``{c}`` has the tag asked for (always true without one).
_TAGGED = """(CAST(:tag_id AS uuid) IS NULL OR EXISTS (
    SELECT 1 FROM conversation_tag ct WHERE ct.conversation_id = {c} AND ct.tag_id = CAST(:tag_id AS uuid)))"""

_POPULATION = (
    """
population AS (
    SELECT id, created_at, session_metadata FROM conversation
    WHERE team_id = ANY(:team_ids) AND created_at >= :start AND created_at < :end AND """
    + _TAGGED.format(c="conversation.id")
    + """
)"""
)

# The first visitor message of each conversation in the population: when the visitor asked.
_ASKED = (
    _POPULATION
    + """,
asked AS (
    SELECT m.conversation_id, min(m.created_at) AS at
    FROM message m JOIN population p ON p.id = m.conversation_id
    WHERE m.sender = 'visitor'
    GROUP BY m.conversation_id
)"""
)

_DURATION_STATS = """
SELECT count(*) AS conversations, count(seconds) AS measured, avg(seconds) AS average,
       percentile_cont(0.5) WITHIN GROUP (ORDER BY seconds) AS p50,
       percentile_cont(0.9) WITHIN GROUP (ORDER BY seconds) AS p90
FROM durations"""


@cache
def zones() -> frozenset[str]:
    """The IANA time zone names this machine knows."""
    return frozenset(available_timezones())


# The calendar analytics reports on: a bucket past either end would be out of Python's (and PostgreSQL's) range.
EARLIEST = datetime(1970, 1, 1, tzinfo=UTC)
LATEST = datetime(9000, 1, 1, tzinfo=UTC)


def _utc(instant: datetime, zone: ZoneInfo, field: str) -> datetime:
    """``instant`` in UTC (no offset: read in ``zone``), within ``EARLIEST`` and ``LATEST``."""
    bounds = f"must be between {EARLIEST.date().isoformat()} and {LATEST.date().isoformat()}"
    try:
        utc = (instant if instant.tzinfo is not None else instant.replace(tzinfo=zone)).astimezone(UTC)
    except OverflowError:  # year 1 or 9999 moved across midnight by the zone's offset
        raise field_malformed(field, bounds) from None
    if not EARLIEST <= utc <= LATEST:
        raise field_malformed(field, bounds)
    return utc


def period(start: datetime, end: datetime, tz: str) -> tuple[datetime, datetime]:
    """Validated, offset-aware bounds: a known zone, from < to, at most MAX_SPAN apart."""
    if tz not in zones():
        raise field_malformed("tz", "use an IANA time zone name such as Europe/Paris or UTC")
    zone = ZoneInfo(tz)
    start, end = (_utc(t, zone, name) for t, name in ((start, "from"), (end, "to")))
    if start >= end:
        raise field_malformed("to", "must be after from")
    if end - start > MAX_SPAN:
        raise field_malformed("to", f"the period may span at most {MAX_SPAN.days} days")
    return start, end


@asynccontextmanager
async def snapshot(engine: AsyncEngine) -> AsyncIterator[AsyncConnection]:
    """One read-only REPEATABLE READ transaction, so every metric of a report sees the same data."""
    async with engine.connect() as conn:
        await conn.execution_options(isolation_level="REPEATABLE READ")
        async with conn.begin():
            await conn.execute(sa.text("SET TRANSACTION READ ONLY"))
            yield conn


async def check_tag(conn: AsyncConnection, team_ids: Sequence[uuid.UUID], tag: uuid.UUID | None) -> None:
    """422 naming ``tag`` unless it is a tag of one of the teams reported on."""
    if tag is None:
        return
    found = await conn.scalar(sa.select(tag_t.c.id).where(tag_t.c.id == tag, tag_t.c.team_id.in_(list(team_ids))))
    if found is None:
        raise field_invalid("tag", "No such tag in the teams reported on")


async def teams_for(
    conn: AsyncConnection, principal: Principal, requested: Sequence[uuid.UUID] | None = None
) -> list[uuid.UUID]:
    """The teams to report on: the requested ones (each led by the caller), else every team the caller leads.

    Another team's id (or one that does not exist) is 404; a team the caller is only an operator of is 403,
    and so is asking for nothing while leading no team. Admins lead every team.
    """
    if requested:
        wanted = list(dict.fromkeys(requested))
        for team_id in wanted:
            requires_lead(principal, team_id)
        found = set((await conn.execute(sa.select(team_t.c.id).where(team_t.c.id.in_(wanted)))).scalars())
        if len(found) < len(wanted):
            raise NotFound("Team not found")
        return wanted
    led = [team_id for team_id, role in principal.teams.items() if role == "lead"]
    if principal.is_admin and (principal.admin_network or not led):
        requires_admin_network(principal)
        return list((await conn.execute(sa.select(team_t.c.id).order_by(team_t.c.name))).scalars())
    if not led:
        raise Forbidden("Analytics are for team leads and administrators")
    return led


async def _rows(
    conn: AsyncConnection, sql: str, team_ids: Sequence[uuid.UUID], tag: uuid.UUID | None, **params: Any
) -> list[Any]:
    statement = sa.text(sql).bindparams(sa.bindparam("team_ids", type_=ARRAY(sa.Uuid)))
    if ":tag_id" in sql:
        statement = statement.bindparams(sa.bindparam("tag_id", type_=sa.Uuid))
        params["tag_id"] = tag
    return list((await conn.execute(statement, {"team_ids": list(team_ids), **params})).all())


def _seconds(value: Any) -> float | None:
    return None if value is None else round(float(value), SECONDS_DIGITS)


def _share(part: float, whole: float) -> float | None:
    return None if whole == 0 else round(part / whole, SHARE_DIGITS)


async def _sessions(
    conn: AsyncConnection,
    team_ids: Sequence[uuid.UUID],
    start: datetime,
    end: datetime,
    tz: str,
    unit: str,
    tag: uuid.UUID | None,
) -> list[SessionBucket]:
    # Buckets are wall-clock days/hours of `tz`; generate_series supplies the empty ones.
    sql = f"""
WITH {_POPULATION},
buckets AS (
    SELECT generate_series(
        date_trunc(:unit, CAST(:start AS timestamptz) AT TIME ZONE :tz),
        (CAST(:end AS timestamptz) AT TIME ZONE :tz) - interval '1 microsecond',
        CAST(:step AS interval)
    ) AS local
),
counts AS (
    SELECT date_trunc(:unit, created_at AT TIME ZONE :tz) AS local, count(*) AS sessions
    FROM population GROUP BY 1
)
SELECT b.local, b.local AT TIME ZONE :tz AS start, coalesce(c.sessions, 0) AS sessions
FROM buckets b LEFT JOIN counts c ON c.local = b.local
ORDER BY b.local"""
    rows = await _rows(
        conn,
        sql,
        team_ids,
        tag,
        start=start,
        end=end,
        tz=tz,
        unit=unit,
        step=timedelta(days=1) if unit == "day" else timedelta(hours=1),
    )
    label = "%Y-%m-%d" if unit == "day" else "%Y-%m-%dT%H:00"
    return [SessionBucket(start=r.start, label=r.local.strftime(label), sessions=r.sessions) for r in rows]


async def sessions_by_day(
    conn: AsyncConnection,
    team_ids: Sequence[uuid.UUID],
    start: datetime,
    end: datetime,
    tz: str,
    tag: uuid.UUID | None = None,
) -> list[SessionBucket]:
    """Sessions started per day of ``tz``, every day of the range."""
    return await _sessions(conn, team_ids, start, end, tz, "day", tag)


async def sessions_by_hour(
    conn: AsyncConnection,
    team_ids: Sequence[uuid.UUID],
    start: datetime,
    end: datetime,
    tz: str,
    tag: uuid.UUID | None = None,
) -> list[SessionBucket]:
    """Sessions started per hour of ``tz``, every hour of the range."""
    return await _sessions(conn, team_ids, start, end, tz, "hour", tag)


async def _duration_stats(
    conn: AsyncConnection, sql: str, team_ids: Sequence[uuid.UUID], tag: uuid.UUID | None, **params: Any
) -> DurationStats:
    [row] = await _rows(conn, sql + _DURATION_STATS, team_ids, tag, **params)
    return DurationStats(
        conversations=row.conversations,
        measured=row.measured,
        average_seconds=_seconds(row.average),
        p50_seconds=_seconds(row.p50),
        p90_seconds=_seconds(row.p90),
    )


async def first_response(
    conn: AsyncConnection,
    team_ids: Sequence[uuid.UUID],
    start: datetime,
    end: datetime,
    tz: str,
    tag: uuid.UUID | None = None,
) -> DurationStats:
    """From the first visitor message to the first operator or AI message at or after it."""
    sql = f"""
WITH {_ASKED},
durations AS (
    SELECT extract(epoch FROM min(m.created_at) - a.at) AS seconds
    FROM asked a
    LEFT JOIN message m
      ON m.conversation_id = a.conversation_id AND m.sender IN ('operator', 'ai') AND m.created_at >= a.at
    GROUP BY a.conversation_id, a.at
)"""
    return await _duration_stats(conn, sql, team_ids, tag, start=start, end=end)


async def time_to_assignment(
    conn: AsyncConnection,
    team_ids: Sequence[uuid.UUID],
    start: datetime,
    end: datetime,
    tz: str,
    tag: uuid.UUID | None = None,
) -> DurationStats:
    """From the first visitor message to the conversation's first assignment (0 if assigned before it)."""
    sql = f"""
WITH {_ASKED},
durations AS (
    -- GREATEST skips NULLs, so a conversation never assigned must stay NULL explicitly.
    SELECT CASE WHEN min(s.started_at) IS NOT NULL
                THEN extract(epoch FROM greatest(min(s.started_at) - a.at, interval '0')) END AS seconds
    FROM asked a LEFT JOIN assignment s ON s.conversation_id = a.conversation_id
    GROUP BY a.conversation_id, a.at
)"""
    return await _duration_stats(conn, sql, team_ids, tag, start=start, end=end)


async def replies(
    conn: AsyncConnection,
    team_ids: Sequence[uuid.UUID],
    start: datetime,
    end: datetime,
    tz: str,
    tag: uuid.UUID | None = None,
) -> ReplySplit:
    """Operator against AI messages in the population's conversations (visitor and system messages left out)."""
    sql = f"""
WITH {_POPULATION}
SELECT count(*) FILTER (WHERE m.sender = 'operator') AS human, count(*) FILTER (WHERE m.sender = 'ai') AS ai
FROM message m JOIN population p ON p.id = m.conversation_id
WHERE m.sender IN ('operator', 'ai')"""
    [row] = await _rows(conn, sql, team_ids, tag, start=start, end=end)
    total = row.human + row.ai
    return ReplySplit(human=row.human, ai=row.ai, human_share=_share(row.human, total), ai_share=_share(row.ai, total))


async def top_pages(
    conn: AsyncConnection,
    team_ids: Sequence[uuid.UUID],
    start: datetime,
    end: datetime,
    tz: str,
    tag: uuid.UUID | None = None,
) -> list[PageCount]:
    """The pages where most sessions opened the chat (PocketPing's ``metadata.url``), query and fragment cut off."""
    sql = f"""
WITH {_POPULATION},
pages AS (
    SELECT split_part(split_part(session_metadata->>'url', '#', 1), '?', 1) AS page FROM population
)
SELECT page, count(*) AS sessions FROM pages
WHERE page <> ''
GROUP BY page ORDER BY sessions DESC, page COLLATE "C" LIMIT :limit"""
    rows = await _rows(conn, sql, team_ids, tag, start=start, end=end, limit=TOP_PAGES)
    return [PageCount(page=r.page, sessions=r.sessions) for r in rows]


async def peak_hours(
    conn: AsyncConnection,
    team_ids: Sequence[uuid.UUID],
    start: datetime,
    end: datetime,
    tz: str,
    tag: uuid.UUID | None = None,
) -> list[HeatmapCell]:
    """Sessions started per (ISO weekday, hour) of ``tz``: all 168 cells, Monday 00h first."""
    sql = f"""
WITH {_POPULATION},
counts AS (
    SELECT extract(isodow FROM created_at AT TIME ZONE :tz)::int AS weekday,
           extract(hour FROM created_at AT TIME ZONE :tz)::int AS hour,
           count(*) AS sessions
    FROM population GROUP BY 1, 2
)
SELECT d.weekday, h.hour, coalesce(c.sessions, 0) AS sessions
FROM generate_series(1, 7) AS d(weekday) CROSS JOIN generate_series(0, 23) AS h(hour)
LEFT JOIN counts c ON c.weekday = d.weekday AND c.hour = h.hour
ORDER BY d.weekday, h.hour"""
    rows = await _rows(conn, sql, team_ids, tag, start=start, end=end, tz=tz)
    return [HeatmapCell(weekday=r.weekday, hour=r.hour, sessions=r.sessions) for r in rows]


async def operator_load(
    conn: AsyncConnection,
    team_ids: Sequence[uuid.UUID],
    start: datetime,
    end: datetime,
    tz: str,
    tag: uuid.UUID | None = None,
) -> LoadReport:
    """Assignments started and operator messages sent in the period, per operator, and how evenly they fell."""
    # Current active members count even with nothing assigned (an idle member is what unfairness looks like);
    # former members appear only if they were assigned something in the period.
    sql = (
        """
WITH given AS (
    SELECT operator_id, count(*) AS assignments, count(DISTINCT conversation_id) AS conversations
    FROM assignment
    WHERE team_id = ANY(:team_ids) AND started_at >= :start AND started_at < :end AND """
        + _TAGGED.format(c="assignment.conversation_id")
        + """
    GROUP BY operator_id
),
members AS (
    SELECT tm.operator_id, max(coalesce(tm.capacity, t.default_capacity)) AS capacity
    FROM team_member tm JOIN team t ON t.id = tm.team_id
    WHERE tm.team_id = ANY(:team_ids)
    GROUP BY tm.operator_id
),
sent AS (
    SELECT m.operator_id, count(*) AS messages
    FROM message m JOIN conversation c ON c.id = m.conversation_id
    WHERE m.sender = 'operator' AND c.team_id = ANY(:team_ids) AND m.created_at >= :start AND m.created_at < :end
      AND """
        + _TAGGED.format(c="c.id")
        + """
    GROUP BY m.operator_id
)
SELECT o.id, o.display_name, coalesce(g.assignments, 0) AS assignments, coalesce(g.conversations, 0) AS conversations,
       coalesce(s.messages, 0) AS messages, mb.capacity
FROM operator o
LEFT JOIN given g ON g.operator_id = o.id
LEFT JOIN members mb ON mb.operator_id = o.id
LEFT JOIN sent s ON s.operator_id = o.id
WHERE g.operator_id IS NOT NULL OR (mb.operator_id IS NOT NULL AND o.deactivated_at IS NULL)
ORDER BY assignments DESC, o.display_name, o.id"""
    )
    rows = await _rows(conn, sql, team_ids, tag, start=start, end=end)
    loads = [
        OperatorLoad(
            operator_id=r.id,
            display_name=r.display_name,
            assignments=r.assignments,
            conversations=r.conversations,
            messages=r.messages,
            capacity=r.capacity,
            assignments_per_slot=round(r.assignments / r.capacity, SHARE_DIGITS) if r.capacity else None,
        )
        for r in rows
    ]
    counts = [float(load.assignments) for load in loads]
    per_slot = [load.assignments / load.capacity for load in loads if load.capacity]
    mean = statistics.fmean(counts) if counts else None
    fairness = Fairness(
        operators=len(loads),
        mean_assignments=None if mean is None else round(mean, SHARE_DIGITS),
        coefficient_of_variation=None if not mean else round(statistics.pstdev(counts) / mean, SHARE_DIGITS),
        gini=_gini(counts),
        gini_per_slot=_gini(per_slot),
    )
    return LoadReport(operators=loads, fairness=fairness)


def _gini(values: Sequence[float]) -> float | None:
    """Gini coefficient from the sorted values (0 when even, towards 1 when one operator takes everything)."""
    total = sum(values)
    if not values or total == 0:
        return None
    n = len(values)
    ranked = sum(rank * value for rank, value in enumerate(sorted(values), start=1))
    return round(2 * ranked / (n * total) - (n + 1) / n, SHARE_DIGITS)


# Ratings asked for in the period: the population of the CSAT metrics (not conversations created in it).
_ASKED_RATINGS = (
    """
WITH asked AS (
    SELECT team_id, csat_operator_id AS operator_id, CAST(csat ->> 'score' AS int) AS score
    FROM conversation
    WHERE team_id = ANY(:team_ids)
      AND CAST(csat ->> 'requested_at' AS timestamptz) >= :start AND CAST(csat ->> 'requested_at' AS timestamptz) < :end
      AND """
    + _TAGGED.format(c="conversation.id")
    + """
)"""
)
_RATING_COLUMNS = "count(a.team_id) AS requested, count(a.score) AS rated, avg(a.score) AS average"


def _ratings(row: Any) -> dict[str, Any]:
    return {
        "requested": row.requested,
        "rated": row.rated,
        "average_score": None if row.average is None else round(float(row.average), SCORE_DIGITS),
        "response_rate": _share(row.rated, row.requested),
    }


async def csat(
    conn: AsyncConnection,
    team_ids: Sequence[uuid.UUID],
    start: datetime,
    end: datetime,
    tz: str,
    tag: uuid.UUID | None = None,
) -> CsatReport:
    """Ratings asked for in the period, how many were given and their average, overall, per team and per operator
    (the operator a rating counts for: the assignee when the conversation closed)."""
    period = {"start": start, "end": end}
    [overall] = await _rows(conn, f"{_ASKED_RATINGS} SELECT {_RATING_COLUMNS} FROM asked a", team_ids, tag, **period)
    teams = await _rows(
        conn,
        f"""{_ASKED_RATINGS}
SELECT t.id, t.name, {_RATING_COLUMNS} FROM team t LEFT JOIN asked a ON a.team_id = t.id
WHERE t.id = ANY(:team_ids) GROUP BY t.id, t.name ORDER BY t.name""",
        team_ids,
        tag,
        **period,
    )
    operators = await _rows(
        conn,
        f"""{_ASKED_RATINGS}
SELECT o.id, o.display_name, {_RATING_COLUMNS} FROM asked a JOIN operator o ON o.id = a.operator_id
GROUP BY o.id, o.display_name ORDER BY o.display_name, o.id""",
        team_ids,
        tag,
        **period,
    )
    return CsatReport(
        overall=CsatStats(**_ratings(overall)),
        teams=[CsatTeam(team_id=r.id, name=r.name, **_ratings(r)) for r in teams],
        operators=[CsatOperator(operator_id=r.id, display_name=r.display_name, **_ratings(r)) for r in operators],
    )


# The SLA clocks measured by the selected teams (the clock's team: an overflowed conversation's clock counts
# for the team it ran in) of conversations created in the period; a next-response clock only once started.
_SLA_CLOCKS = (
    """
targets AS (
    SELECT * FROM unnest(ARRAY['first_response', 'next_response', 'resolution']) WITH ORDINALITY AS t(target, ord)
), clocks AS (
    SELECT s.team_id, s.target, s.stopped_at IS NOT NULL AND NOT s.ever_breached AS met, s.ever_breached AS missed
    FROM sla_clock s JOIN conversation c ON c.id = s.conversation_id
    WHERE s.team_id = ANY(:team_ids) AND c.created_at >= :start AND c.created_at < :end AND s.cycles > 0
      AND """
    + _TAGGED.format(c="c.id")
    + """
)"""
)
_SLA_COLUMNS = """t.target, count(k.target) AS tracked, count(*) FILTER (WHERE k.met) AS met,
       count(*) FILTER (WHERE k.missed) AS missed, count(*) FILTER (WHERE NOT k.met AND NOT k.missed) AS running"""


def _attainment(row: Any) -> dict[str, Any]:
    return {
        "target": row.target,
        "tracked": row.tracked,
        "met": row.met,
        "missed": row.missed,
        "running": row.running,
        "attainment": _share(row.met, row.met + row.missed),
    }


async def sla(
    conn: AsyncConnection,
    team_ids: Sequence[uuid.UUID],
    start: datetime,
    end: datetime,
    tz: str,
    tag: uuid.UUID | None = None,
) -> SlaReport:
    """Per SLA target, overall and per team: clocks that met it, missed it, still run, and the attainment."""
    period = {"start": start, "end": end}
    overall = await _rows(
        conn,
        f"""WITH {_SLA_CLOCKS}
SELECT {_SLA_COLUMNS} FROM targets t LEFT JOIN clocks k ON k.target = t.target
GROUP BY t.target, t.ord ORDER BY t.ord""",
        team_ids,
        tag,
        **period,
    )
    teams = await _rows(
        conn,
        f"""WITH {_SLA_CLOCKS}
SELECT tm.id, tm.name, {_SLA_COLUMNS}
FROM team tm CROSS JOIN targets t LEFT JOIN clocks k ON k.team_id = tm.id AND k.target = t.target
WHERE tm.id = ANY(:team_ids) GROUP BY tm.id, tm.name, t.target, t.ord ORDER BY tm.name, tm.id, t.ord""",
        team_ids,
        tag,
        **period,
    )
    return SlaReport(
        overall=[SlaStats(**_attainment(r)) for r in overall],
        teams=[SlaTeamStats(team_id=r.id, name=r.name, **_attainment(r)) for r in teams],
    )


async def report(
    conn: AsyncConnection,
    team_ids: Sequence[uuid.UUID],
    start: datetime,
    end: datetime,
    tz: str,
    tag: uuid.UUID | None = None,
) -> AnalyticsReport:
    """Every metric at once, read in one snapshot (the caller opens a REPEATABLE READ transaction)."""
    args = (conn, team_ids, start, end, tz, tag)
    return AnalyticsReport(
        team_ids=list(team_ids),
        tag_id=tag,
        start=start,
        end=end,
        tz=tz,
        sessions_by_day=await sessions_by_day(*args),
        sessions_by_hour=await sessions_by_hour(*args),
        first_response=await first_response(*args),
        time_to_assignment=await time_to_assignment(*args),
        replies=await replies(*args),
        top_pages=await top_pages(*args),
        peak_hours=await peak_hours(*args),
        operator_load=await operator_load(*args),
        csat=await csat(*args),
        sla=await sla(*args),
    )
