"""Analytics query latency on a generated database, against ``SELECT count(*)`` over the same tables.

Generates ``--conversations`` conversations over 10 teams and 30 days with ``--messages`` messages each
(INSERT ... SELECT generate_series in a scratch database), then runs each metric of
``service.analytics.services`` over every team and the whole 30 days ``--repeat`` times:

    .venv/bin/python bench/analytics.py [--conversations 100000] [--messages 10] [--repeat 20]

Prints p50 and p99 per metric in milliseconds and the ratio of its p50 to the p50 of ``SELECT count(*)``
over the (whole) tables that metric reads, measured in the same run, interleaved with it; then the same
for one team over 7 days (what a dashboard page usually asks for).
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa
from conversations import scratch_database  # bench/ is the script's directory, so on sys.path
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from service.analytics import services
from service.db.migrate import upgrade

START = datetime(2026, 10, 1, tzinfo=UTC)
DAYS = 30
TEAMS = 10
OPERATORS_PER_TEAM = 5

# Conversation c: team 1 + c % 10, created evenly over 30 days; operator 1 + (c % 10) * 5 + c % 5 of that team.
# One in ten never answered (visitor messages only); one in five never assigned; one in four answered by the AI.
SEED = """
CREATE TEMP TABLE gen AS
SELECT c, CAST(:start AS timestamptz) + c * (interval '30 days' / CAST(:conversations AS int)) AS at,
       ('00000000-0000-0000-0000-' || lpad((1 + c % 10)::text, 12, '0'))::uuid AS team,
       ('00000000-0000-0000-0001-' || lpad((1 + (c % 10) * 5 + c % 5)::text, 12, '0'))::uuid AS operator
FROM generate_series(1, CAST(:conversations AS int)) c;
INSERT INTO team (id, name) SELECT ('00000000-0000-0000-0000-' || lpad(t::text, 12, '0'))::uuid, 'team ' || t
FROM generate_series(1, 10) t;
INSERT INTO operator (id, subject, display_name)
SELECT ('00000000-0000-0000-0001-' || lpad(o::text, 12, '0'))::uuid, 'sub-' || o, 'Op ' || o
FROM generate_series(1, 50) o;
INSERT INTO team_member (team_id, operator_id, role, capacity)
SELECT ('00000000-0000-0000-0000-' || lpad((1 + (o - 1) / 5)::text, 12, '0'))::uuid,
       ('00000000-0000-0000-0001-' || lpad(o::text, 12, '0'))::uuid, 'operator', CASE WHEN o % 5 = 0 THEN 2 END
FROM generate_series(1, 50) o;
INSERT INTO conversation (id, visitor_id, team_id, status, created_at, last_activity, session_metadata)
SELECT 'c-' || c, 'v-' || c, team, 'closed', at, at,
       jsonb_build_object('url', 'https://shop.example/page-' || (c % 97) % (1 + c % 13) || '?ref=' || c % 7)
FROM gen;
INSERT INTO message (id, conversation_id, sender, operator_id, content, created_at)
SELECT 'm-' || c || '-' || m, 'c-' || c,
       CASE WHEN m % 2 = 1 OR c % 10 = 0 THEN 'visitor' WHEN c % 4 = 0 THEN 'ai' ELSE 'operator' END,
       CASE WHEN m % 2 = 0 AND c % 10 <> 0 AND c % 4 <> 0 THEN operator END,
       'message ' || m, at + m * (20 + c % 97) * interval '1 second'
FROM gen, generate_series(1, CAST(:messages AS int)) m;
INSERT INTO assignment (conversation_id, operator_id, team_id, reason, started_at, ended_at)
SELECT 'c-' || c, operator, team, 'routed', at + (30 + c % 113) * interval '1 second', at + interval '1 hour'
FROM gen WHERE c % 5 <> 0;
VACUUM ANALYZE;
"""

Metric = Callable[[Any, list[uuid.UUID], datetime, datetime, str], Awaitable[Any]]
# Each metric, and the tables its query reads (the count(*) baseline reads the same ones).
METRICS: dict[str, tuple[Metric, tuple[str, ...]]] = {
    "sessions_by_day": (services.sessions_by_day, ("conversation",)),
    "sessions_by_hour": (services.sessions_by_hour, ("conversation",)),
    "first_response": (services.first_response, ("conversation", "message")),
    "time_to_assignment": (services.time_to_assignment, ("conversation", "message", "assignment")),
    "replies": (services.replies, ("conversation", "message")),
    "top_pages": (services.top_pages, ("conversation",)),
    "peak_hours": (services.peak_hours, ("conversation",)),
    "operator_load": (services.operator_load, ("assignment", "team_member", "team", "message", "conversation")),
}


def count_sql(tables: tuple[str, ...]) -> str:
    return "SELECT " + " + ".join(f"(SELECT count(*) FROM {table})" for table in tables)


async def timed(engine: AsyncEngine, run: Callable[[Any], Awaitable[Any]]) -> float:
    async with engine.connect() as conn:
        started = time.perf_counter()
        await run(conn)
        return (time.perf_counter() - started) * 1000


def p(timings: list[float], q: int) -> float:
    return statistics.quantiles(timings, n=100, method="inclusive")[q - 1]


async def measure(
    engine: AsyncEngine, name: str, metric: Metric, tables: tuple[str, ...], args: tuple[Any, ...], repeat: int
) -> None:
    """One line: the metric's p50 and p99, the count(*) baseline's p50, and the ratio of the p50s."""

    async def query(conn: Any) -> Any:
        return await metric(conn, *args)

    async def baseline(conn: Any, sql: str = count_sql(tables)) -> Any:
        return (await conn.execute(sa.text(sql))).scalar_one()

    await timed(engine, query)
    await timed(engine, baseline)
    ours, theirs = [], []
    for _ in range(repeat):  # interleaved, so drift on a shared machine hits both alike
        ours.append(await timed(engine, query))
        theirs.append(await timed(engine, baseline))
    ratio = statistics.median(ours) / statistics.median(theirs)
    print(f"{name:20s} {p(ours, 50):9.1f} {p(ours, 99):9.1f}  {p(theirs, 50):12.1f}  {ratio:5.2f}  {', '.join(tables)}")


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--conversations", type=int, default=100_000)
    parser.add_argument("--messages", type=int, default=10)
    parser.add_argument("--repeat", type=int, default=20)
    parser.add_argument("--tz", default="Europe/Paris")
    args = parser.parse_args()
    async with scratch_database() as url:
        await asyncio.to_thread(upgrade, url)
        engine = create_async_engine(url.replace("postgresql://", "postgresql+asyncpg://"))
        started = time.perf_counter()
        async with engine.connect() as conn:
            await conn.execution_options(isolation_level="AUTOCOMMIT")  # VACUUM refuses a transaction
            params = {"conversations": args.conversations, "messages": args.messages, "start": START}
            for statement in filter(str.strip, SEED.split(";")):
                await conn.execute(sa.text(statement), params)
            counts = (
                await conn.execute(
                    sa.text("SELECT (SELECT count(*) FROM conversation), (SELECT count(*) FROM message)")
                )
            ).one()
            teams = list((await conn.execute(sa.text("SELECT id FROM team ORDER BY id"))).scalars())
        print(
            f"{counts[0]} conversations, {counts[1]} messages, {TEAMS} teams, {DAYS} days, tz {args.tz};"
            f" generated in {time.perf_counter() - started:.1f} s; {args.repeat} runs each (after one warm-up)"
        )
        scopes = {
            f"all {TEAMS} teams, {DAYS} days": (teams, START, START + timedelta(days=DAYS)),
            "1 team, 7 days": (teams[:1], START + timedelta(days=7), START + timedelta(days=14)),
        }
        for scope, (team_ids, start, end) in scopes.items():
            print(f"\n{scope}\n{'query':20s} {'p50 ms':>9s} {'p99 ms':>9s}  {'count(*) p50':>12s}  ratio  tables")
            for name, (metric, tables) in METRICS.items():
                await measure(engine, name, metric, tables, (team_ids, start, end, args.tz), args.repeat)
        await engine.dispose()


if __name__ == "__main__":
    asyncio.run(main())
