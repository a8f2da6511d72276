"""Conversation list and search latency on a seeded database (``GET /api/v1/conversations``'s query).

Seeds a scratch PostgreSQL database with ``--conversations`` conversations over 5 teams and
``--messages`` messages each (one rare word in 1 conversation in 1000), then times each list
query through ``service.conversations.services.list_conversations`` for a team member:

    .venv/bin/python bench/conversations.py [--conversations 20000] [--messages 10] [--repeat 30]

Prints one line per query: median and p95 in milliseconds, and the rows returned.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import statistics
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable

import asyncpg
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import create_async_engine

from service.auth.principal import Principal
from service.conversations.services import ConversationFilters, list_conversations
from service.db.migrate import upgrade

SEED = """
INSERT INTO team (id, name) SELECT ('00000000-0000-0000-0000-00000000000' || t)::uuid, 'team ' || t
FROM generate_series(1, 5) t;
INSERT INTO operator (id, subject, display_name, email)
SELECT ('00000000-0000-0000-0001-' || lpad(o::text, 12, '0'))::uuid, 'sub-' || o, 'Op ' || o,
       'op' || o || '@example.test'
FROM generate_series(1, 50) o;
INSERT INTO conversation (id, visitor_id, team_id, assignee_id, status, created_at, last_activity, identity)
SELECT 'c-' || c, 'v-' || c, ('00000000-0000-0000-0000-00000000000' || (1 + c % 5))::uuid,
       CASE WHEN c % 3 = 0 THEN ('00000000-0000-0000-0001-' || lpad((1 + c % 50)::text, 12, '0'))::uuid END,
       CASE WHEN c % 3 = 0 THEN 'assigned' WHEN c % 3 = 1 THEN 'queued' ELSE 'closed' END,
       now() - c * interval '1 minute', now() - c * interval '1 minute',
       jsonb_build_object('email', 'visitor' || c || '@mail.example', 'name', 'Visitor ' || c)
FROM generate_series(1, :conversations) c;
INSERT INTO message (id, conversation_id, sender, content, created_at)
SELECT 'm-' || c || '-' || m, 'c-' || c, 'visitor',
       'hello I have a question about my order number ' || (c * 7 + m)
       || CASE WHEN c % 1000 = 0 AND m = 1 THEN ' zanzibar' ELSE '' END,
       now() - c * interval '1 minute' + m * interval '1 second'
FROM generate_series(1, :conversations) c, generate_series(1, :messages) m;
ANALYZE;
"""


SERVER = os.environ.get("TEST_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/test")


@contextlib.asynccontextmanager
async def scratch_database() -> AsyncIterator[str]:
    """An empty database on the test server, dropped afterwards."""
    name = f"sb_bench_{uuid.uuid4().hex[:8]}"
    admin = await asyncpg.connect(SERVER)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
        yield f"{SERVER.rpartition('/')[0]}/{name}"
    finally:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--conversations", type=int, default=20_000)
    parser.add_argument("--messages", type=int, default=10)
    parser.add_argument("--repeat", type=int, default=30)
    args = parser.parse_args()
    async with scratch_database() as url:
        await asyncio.to_thread(upgrade, url)
        engine = create_async_engine(url.replace("postgresql://", "postgresql+asyncpg://"))
        async with engine.begin() as conn:
            for statement in filter(str.strip, SEED.split(";")):
                await conn.execute(sa.text(statement), {"conversations": args.conversations, "messages": args.messages})
        team = uuid.UUID("00000000-0000-0000-0000-000000000001")
        operator = uuid.UUID("00000000-0000-0000-0001-000000000006")
        member = Principal(operator_id=operator, display_name="Op 6", is_admin=False, teams={team: "operator"})
        cases: dict[str, Callable[[], Awaitable[int]]] = {}

        def case(name: str, filters: ConversationFilters, pages: int = 1) -> None:
            async def run() -> int:
                cursor, count = None, 0
                async with engine.connect() as conn:
                    for _ in range(pages):
                        items, cursor = await list_conversations(conn, member, filters, cursor, 25)
                        count += len(items)
                return count

            cases[name] = run

        case("inbox: all of my teams, first page", ConversationFilters())
        case("inbox: assignee=me", ConversationFilters(assignee="me"))
        case("queue: status=queued&teamId", ConversationFilters(statuses=("queued",), team_id=team))
        case("10 pages with cursors", ConversationFilters(), pages=10)
        case("q=zanzibar (rare word in messages)", ConversationFilters(q="zanzibar"))
        case("q=question (word in every message)", ConversationFilters(q="question"))
        case("q=visitor2000@ (identity substring)", ConversationFilters(q="visitor2000@"))
        print(f"{args.conversations} conversations, {args.conversations * args.messages} messages")
        for name, run in cases.items():
            rows = await run()  # warm-up
            timings = []
            for _ in range(args.repeat):
                started = time.perf_counter()
                await run()
                timings.append((time.perf_counter() - started) * 1000)
            p95 = statistics.quantiles(timings, n=20)[-1]
            print(f"{name:42s} median {statistics.median(timings):7.2f} ms  p95 {p95:7.2f} ms  rows {rows}")
        await engine.dispose()


if __name__ == "__main__":
    asyncio.run(main())
