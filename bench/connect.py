"""Connected mode: the customer's own app (FastAPI + PocketPing, MemoryStorage) with and without the connector.

The same example app (docs/examples/connect_app.py) runs twice, side by side, under uvicorn: unconnected
(``bridges=[]``) and connected to a Switchboard api (its own scratch database) through ``SwitchboardBridge``.
wrk posts visitor messages to each in turn, ``--rounds`` times, interleaved, so drift on a shared machine
hits both alike; the connected app's sender meanwhile posts its batches to Switchboard in the background.

    .venv/bin/python bench/connect.py [--rounds 3] [--duration 8] [--connections 32] [--threads 2]

Checks (any failure exits non-zero): no non-2xx and no socket error from either app; after the runs, every
message the connected app holds reaches Switchboard, exactly once (the same ids), in the app's order per session.
With ``--pin`` (the default on two or more CPUs) Switchboard's api gets the last CPU and the customer apps the
others, as if Switchboard ran on another machine (wrk and PostgreSQL are not pinned). Besides the rates it prints
the customer app's CPU per message with and without the connector: the connector's own cost, which the machine's
other load moves less than the rates. The last line is ``ratio: X.XX`` (median msgs/s connected / unconnected;
the goal is at least 0.9).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import statistics
import sys
import tempfile
import time
import uuid
from collections import defaultdict
from pathlib import Path

import asyncpg
import httpx
from ingest import (
    BenchError,
    Measurement,
    Server,
    _admin,
    add_wrk_arguments,
    api_env,
    cleanup_redis,
    create_sessions,
    fresh_database,
    http_server,
    measure,
    report,
    run_wrk,
)
from redis import Redis

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE_APP = ["--app-dir", str(ROOT / "docs" / "examples"), "--factory", "connect_app:create_app"]
SECRET_KEY = "bench-connect-secret-key-with-32-plus-characters"
# How long the connected app's buffer may take to reach Switchboard after the last run.
DRAIN_SECONDS = 120


async def create_site(database_url: str, redis_url: str) -> str:
    """A site, as ``POST /api/v1/sites`` makes it; its key."""
    from sqlalchemy.ext.asyncio import create_async_engine

    from service.settings import Settings
    from service.sites.schemas import SiteCreate
    from service.sites.services import create_site as create

    engine = create_async_engine(database_url.replace("postgresql://", "postgresql+asyncpg://"))
    try:
        async with engine.begin() as conn:
            created = await create(
                conn,
                SiteCreate(name="bench"),
                Settings(database_url=database_url, redis_url=redis_url, secret_key=SECRET_KEY),
            )
    finally:
        await engine.dispose()
    return created.key


def customer_history(url: str, sessions: list[str]) -> dict[str, list[str]]:
    """Every message id the customer app holds, per session, in its order (``GET /pocketping/messages``, paged)."""
    held: dict[str, list[str]] = {}
    with httpx.Client(base_url=url, timeout=30) as client:
        for session_id in sessions:
            ids: list[str] = []
            after: str | None = None
            while True:
                params = {"sessionId": session_id, "limit": "100", **({"after": after} if after else {})}
                page = client.get("/pocketping/messages", params=params).json()
                ids += [m["id"] for m in page["messages"]]
                if not page["hasMore"] or not page["messages"]:
                    break
                after = page["messages"][-1]["id"]
            held[session_id] = ids
    return held


def switchboard_history(database_url: str) -> dict[str, list[str]]:
    async def read() -> dict[str, list[str]]:
        conn = await asyncpg.connect(database_url)
        try:
            rows = await conn.fetch("SELECT conversation_id, id FROM message WHERE sender = 'visitor' ORDER BY seq")
        finally:
            await conn.close()
        held: dict[str, list[str]] = defaultdict(list)
        for row in rows:
            held[row["conversation_id"]].append(row["id"])
        return dict(held)

    return asyncio.run(read())


def total_behind(customer: Server, sessions: list[str], database_url: str) -> int:
    """Messages the connected app holds that Switchboard does not hold yet."""
    held = sum(len(ids) for ids in customer_history(customer.url, sessions).values())
    return held - sum(len(ids) for ids in switchboard_history(database_url).values())


def check_arrived(customer: Server, sessions: list[str], database_url: str) -> int:
    """Wait until Switchboard holds every message of the connected app, once each, in the app's order."""
    expected = customer_history(customer.url, sessions)
    total = sum(len(ids) for ids in expected.values())
    deadline = time.monotonic() + DRAIN_SECONDS
    while True:
        stored = switchboard_history(database_url)
        count = sum(len(ids) for ids in stored.values())
        if count >= total or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    if stored != expected:
        missing = total - count
        raise BenchError(
            f"Switchboard holds {count:,} messages of the app's {total:,} ({missing:,} missing), or not in its order"
        )
    return total


def pin(server: Server, args: argparse.Namespace, *, switchboard_side: bool) -> None:
    """With ``--pin``: Switchboard's api on the last CPU, the customer apps on the others.

    In production Switchboard runs elsewhere; on one small machine its ingest would otherwise take CPU from the
    customer app and the ratio would measure the machine, not the connector. wrk and PostgreSQL are not pinned.
    """
    cpus = sorted(os.sched_getaffinity(0))
    if not args.pin or len(cpus) < 2:
        return
    os.sched_setaffinity(server.pgid, {cpus[-1]} if switchboard_side else set(cpus[:-1]))


def run(args: argparse.Namespace, workdir: Path) -> float:
    database = args.database
    database_url = fresh_database(args.admin_database_url, database)
    prefix = f"bench-connect-{uuid.uuid4().hex[:8]}"
    redis = Redis.from_url(args.redis_url)
    try:
        key = asyncio.run(create_site(database_url, args.redis_url))
        env = {**api_env(database_url, args.redis_url, prefix), "SECRET_KEY": SECRET_KEY}
        customer_env = {"PYTHONPATH": str(ROOT), "SWITCHBOARD_URL": "", "SWITCHBOARD_SITE_KEY": ""}
        with http_server(["--factory", "service.app:create_app"], env, "/healthz") as switchboard:
            pin(switchboard, args, switchboard_side=True)
            connected_env = {
                **customer_env,
                "SWITCHBOARD_URL": switchboard.url,
                "SWITCHBOARD_SITE_KEY": key,
                # wrk's bursts outrun one Switchboard core's ingest: the buffer holds them until it catches up.
                "SWITCHBOARD_MAX_BUFFER": str(args.max_buffer),
            }
            with (
                http_server(EXAMPLE_APP, customer_env, "/pocketping/presence") as plain,
                http_server(EXAMPLE_APP, connected_env, "/pocketping/presence") as connected,
            ):
                targets = {"without the connector": plain, "with SwitchboardBridge": connected}
                for server in targets.values():
                    pin(server, args, switchboard_side=False)
                files, sessions = {}, {}
                for name, server in targets.items():
                    sessions[name] = create_sessions(server.url, args.sessions)
                    files[name] = workdir / f"{name.replace(' ', '-')}.txt"
                    files[name].write_text("\n".join(sessions[name]) + "\n")
                    run_wrk(server.url, files[name], args, args.warmup)
                results: dict[str, list[Measurement]] = {name: [] for name in targets}
                for _ in range(args.rounds):
                    for name, server in targets.items():
                        results[name].append(measure(f"customer app {name}", server, files[name], args))
                began, behind = (
                    time.monotonic(),
                    total_behind(connected, sessions["with SwitchboardBridge"], database_url),
                )
                total = check_arrived(connected, sessions["with SwitchboardBridge"], database_url)
                drained = time.monotonic() - began
        for measurements in results.values():
            for measurement in measurements:
                print(report(measurement))
        print(
            f"checked: all {total:,} messages of the connected app in Switchboard, once each, in order per session"
            f" ({args.sessions} sessions); {behind:,} were still buffered after the last run, drained in"
            f" {drained:.1f} s ({behind / drained if drained else 0:,.0f} msgs/s into Switchboard)"
        )
        rates = {name: statistics.median(m.wrk.rate for m in ms) for name, ms in results.items()}
        # The customer app's own CPU time per message answered (its process only).
        costs = {
            name: statistics.median(m.cpu["server"] / m.wrk.rate * 1e6 for m in ms) for name, ms in results.items()
        }
        for name, rate in rates.items():
            print(f"median {name}: {rate:,.0f} msgs/s, customer app CPU {costs[name]:.0f} us per message")
        return rates["with SwitchboardBridge"] / rates["without the connector"]
    finally:
        cleanup_redis(redis, prefix, [])
        redis.close()
        asyncio.run(_admin(args.admin_database_url, f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)'))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=float, default=8, help="measured seconds per run (default 8)")
    parser.add_argument("--rounds", type=int, default=3, help="runs per app, interleaved (default 3)")
    parser.add_argument("--warmup", type=float, default=2, help="warm-up seconds per app (default 2)")
    parser.add_argument("--sessions", type=int, default=50, help="pre-created sessions per app (default 50)")
    parser.add_argument(
        "--max-buffer", type=int, default=500_000, help="the connected app's event buffer (default 500000)"
    )
    parser.add_argument(
        "--pin",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="Switchboard's api on its own CPU, apart from the customer apps (default on; see pin())",
    )
    add_wrk_arguments(parser, database="switchboard_bench_connect")
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        sys.exit("wrk is not installed (apt-get install wrk)")
    try:
        with tempfile.TemporaryDirectory() as workdir:
            ratio = run(args, Path(workdir))
    except BenchError as exc:
        sys.exit(f"FAILED: {exc}")
    print(f"ratio: {ratio:.2f}")


if __name__ == "__main__":
    main()
