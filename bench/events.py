"""Operator event stream latency across api instances: commit in one place, SSE receipt on another.

Starts two api instances (uvicorn, in this process) on a scratch database and the worker's
event relay, opens ``--streams`` SSE streams on instance B (half of them operators of the
event's team, half of another team, who must receive nothing), then records ``--events``
events one by one through instance A's engine, each in its own transaction, ``--interval``
seconds apart, and times commit → receipt on every stream of the team:

    .venv/bin/python bench/events.py [--streams 200] [--events 200] [--interval 0.02]

Prints p50/p95/p99/max in milliseconds over all (event, stream) receipts, and checks that every
team stream got every event exactly once, in order, and the other team's streams none.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import statistics
import time
import uuid
from collections.abc import AsyncIterator

import asyncpg
import httpx
import uvicorn
from sqlalchemy.ext.asyncio import create_async_engine

from service.app import create_app
from service.auth.principal import new_personal_token
from service.db.migrate import upgrade
from service.events import record_event
from service.realtime.relay import EventRelay
from service.settings import Settings


@contextlib.asynccontextmanager
async def serve(settings: Settings) -> AsyncIterator[tuple[str, object]]:
    app = create_app(settings)
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_config=None, lifespan="on"))
    task = asyncio.create_task(server.serve())
    while not server.started:  # noqa: ASYNC110  (uvicorn offers no event to wait on)
        await asyncio.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{server.servers[0].sockets[0].getsockname()[1]}", app
    finally:
        server.should_exit = True
        await task


async def listen(client: httpx.AsyncClient, token: str, ready: asyncio.Event, got: list[tuple[int, float]]) -> None:
    async with client.stream("GET", "/api/v1/events", headers={"Authorization": f"Bearer {token}"}) as response:
        async for line in response.aiter_lines():
            if line == ": connected":
                ready.set()
            elif line.startswith("data: "):
                got.append((json.loads(line[6:])["id"], time.perf_counter()))


async def seed(url: str, streams: int) -> tuple[uuid.UUID, list[str], list[str]]:
    conn = await asyncpg.connect(url)
    team, other = uuid.uuid4(), uuid.uuid4()
    await conn.execute("INSERT INTO team (id, name) VALUES ($1, 'bench'), ($2, 'other')", team, other)
    tokens: tuple[list[str], list[str]] = ([], [])
    for n in range(streams):
        operator = uuid.uuid4()
        member_of = team if n % 2 == 0 else other
        await conn.execute(
            "INSERT INTO operator (id, subject, display_name) VALUES ($1, $2, 'op')", operator, f"sub-{operator}"
        )
        await conn.execute("INSERT INTO team_member (team_id, operator_id) VALUES ($1, $2)", member_of, operator)
        secret, digest, prefix = new_personal_token()
        await conn.execute(
            "INSERT INTO api_token (id, operator_id, name, token_hash, prefix, scopes)"
            " VALUES ($1, $2, 'b', $3, $4, '{read}')",
            uuid.uuid4(),
            operator,
            digest,
            prefix,
        )
        tokens[n % 2].append(secret)
    await conn.close()
    return team, *tokens


async def run(args: argparse.Namespace) -> None:
    name = f"sb_bench_events_{uuid.uuid4().hex[:8]}"
    admin = await asyncpg.connect(args.admin_database_url)
    await admin.execute(f'CREATE DATABASE "{name}"')
    url = args.admin_database_url.rsplit("/", 1)[0] + f"/{name}"
    try:
        await asyncio.to_thread(upgrade, url)
        team, members, others = await seed(url, args.streams)
        settings = Settings(
            database_url=url,
            redis_url=args.redis_url,
            secret_key="bench-secret-key-with-at-least-32-characters",
            redis_prefix=f"sbbench:{uuid.uuid4().hex[:8]}",
            log_level="WARNING",
            events_poll_seconds=30,  # so the numbers are the Redis notification path's
        )
        async with serve(settings) as (_, app_a), serve(settings) as (url_b, _app_b):
            state = app_a.state  # type: ignore[attr-defined]
            relay = asyncio.create_task(EventRelay(state.engine, state.redis, settings).run())
            async with httpx.AsyncClient(base_url=url_b, timeout=None, limits=httpx.Limits(max_connections=None)) as b:
                received: dict[str, list[tuple[int, float]]] = {token: [] for token in members + others}
                readies = {token: asyncio.Event() for token in received}
                listeners = [asyncio.create_task(listen(b, t, readies[t], received[t])) for t in received]
                await asyncio.wait_for(asyncio.gather(*(e.wait() for e in readies.values())), 60)
                committed: dict[int, float] = {}
                engine = create_async_engine(settings.async_database_url)
                for _ in range(args.events):
                    async with engine.begin() as conn:
                        event_id = await record_event(conn, "conversation.queued", team_id=team, data={"n": 1})
                    committed[event_id] = time.perf_counter()
                    await asyncio.sleep(args.interval)
                await asyncio.sleep(2)
                await engine.dispose()
                for task in [*listeners, relay]:
                    task.cancel()
                await asyncio.gather(*listeners, relay, return_exceptions=True)
        latencies = [(at - committed[event_id]) * 1000 for t in members for event_id, at in received[t]]
        exact = all([event_id for event_id, _ in received[t]] == sorted(committed) for t in members)
        leaked = sum(len(received[t]) for t in others)
        q = statistics.quantiles(latencies, n=100)
        print(
            f"{args.events} events x {len(members)} team streams on instance B ({len(others)} other-team streams),"
            f" recorded on instance A, {args.interval * 1000:g} ms apart; {os.cpu_count()} cores"
        )
        print(
            f"commit → SSE receipt: p50 {q[49]:.1f} ms, p95 {q[94]:.1f} ms, p99 {q[98]:.1f} ms,"
            f" max {max(latencies):.1f} ms over {len(latencies)} receipts"
        )
        print(f"every team stream got every event once, in order: {exact}; other-team receipts: {leaked}")
        if not exact or leaked:
            raise SystemExit("FAILED")
    finally:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--streams", type=int, default=200, help="SSE streams on instance B (half of them the team's)")
    parser.add_argument("--events", type=int, default=200)
    parser.add_argument("--interval", type=float, default=0.02, help="seconds between events")
    parser.add_argument(
        "--admin-database-url",
        default=os.environ.get("BENCH_ADMIN_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres"),
    )
    parser.add_argument("--redis-url", default=os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/0"))
    asyncio.run(run(parser.parse_args()))


if __name__ == "__main__":
    main()
