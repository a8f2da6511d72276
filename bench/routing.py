"""Routing decisions per second and their latency, against a pgbench claim on the same database, same run.

Switchboard: ``route_conversation`` (the worker's path: lock the conversation while reading the rules
and the team's members, rank them, then the capacity-checked assignment with its decision row, event
and first-response timer) in one transaction per conversation, run by worker-like processes, each
with its own connections. Every
conversation must end up assigned (capacities are large), otherwise the run fails.

pgbench: the DESIGN's raw-SQL claim, one ``UPDATE ... WHERE id = (SELECT ... FOR UPDATE SKIP LOCKED)``
plus one ``INSERT`` per transaction, on tables of its own in the same database.

    .venv/bin/python bench/routing.py [--duration 5] [--concurrency 1,4,16] [--processes 4] [--rounds 2]

Concurrency N means N transactions in flight: N pgbench clients, or N routing tasks spread over
``min(N, --processes)`` processes (each task has its own connection). Levels and systems are measured
in turn, ``--rounds`` times; the medians are reported. The last line is ``ratio: X.XX``: Switchboard
assignments per second over pgbench claims per second, at concurrency 4.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import asyncpg

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

DATABASE = "switchboard_bench_routing"
CLAIM_SQL = """\
\\set op random(1, 20)
UPDATE bench_claim_queue SET status = 'assigned' WHERE id = (
    SELECT id FROM bench_claim_queue WHERE status = 'queued' ORDER BY id LIMIT 1 FOR UPDATE SKIP LOCKED
) RETURNING id \\gset
INSERT INTO bench_claim_log (item, operator) VALUES (:id, :op);
"""


class BenchError(Exception):
    """A failed check: the numbers would not mean what they say."""


def server_url(base: str, database: str) -> str:
    return f"{base.rpartition('/')[0]}/{database}"


async def prepare(url: str, conversations: int, operators: int) -> None:
    """Empty tables, one default least_busy team whose online members never fill up, conversations to route."""
    conn = await asyncpg.connect(url)
    try:
        await conn.execute(
            "TRUNCATE event, routing_decision, assignment, conversation, team_member, operator, team, routing_rule "
            "RESTART IDENTITY CASCADE"
        )
        team = uuid.uuid4()
        await conn.execute(
            "INSERT INTO team (id, name, is_default, routing_policy, default_capacity) "
            "VALUES ($1, 'Support', true, 'least_busy', 1000000)",
            team,
        )
        ops = [uuid.uuid4() for _ in range(operators)]
        await conn.executemany(
            "INSERT INTO operator (id, subject, display_name, status) VALUES ($1, $2, $3, 'online')",
            [(o, f"sub-{o}", f"op-{n}") for n, o in enumerate(ops)],
        )
        await conn.executemany(
            "INSERT INTO team_member (team_id, operator_id) VALUES ($1, $2)", [(team, o) for o in ops]
        )
        await conn.execute(
            "INSERT INTO conversation (id, visitor_id, status, routing_revision, waiting_since, created_at, "
            "last_activity, session_metadata) "
            "SELECT 'c' || n, 'v' || n, 'new', 1, now(), now(), now(), '{\"url\": \"https://shop.test/\"}' "
            "FROM generate_series(1, $1) AS n",
            conversations,
        )
        await conn.execute(
            "DROP TABLE IF EXISTS bench_claim_queue, bench_claim_log;"
            "CREATE TABLE bench_claim_queue (id bigserial PRIMARY KEY, status text NOT NULL);"
            "CREATE TABLE bench_claim_log (id bigserial PRIMARY KEY, item bigint NOT NULL, operator int NOT NULL,"
            " at timestamptz NOT NULL DEFAULT now());"
        )
        await conn.execute(
            "INSERT INTO bench_claim_queue (status) SELECT 'queued' FROM generate_series(1, $1)", conversations
        )
        await conn.execute("VACUUM ANALYZE")
    finally:
        await conn.close()


def run_pgbench(url: str, clients: int, duration: float) -> float:
    """Claims per second (pgbench's tps, excluding connection time)."""
    with tempfile.NamedTemporaryFile("w", suffix=".sql") as script:
        script.write(CLAIM_SQL)
        script.flush()
        out = subprocess.run(
            ["pgbench", "-n", "-c", str(clients), "-j", str(min(clients, 2)), "-T", str(int(duration)),
             "-f", script.name, url],
            capture_output=True, text=True, check=True,
        ).stdout  # fmt: skip
    if re.search(r"number of failed transactions: [1-9]", out):
        raise BenchError(f"pgbench transactions failed:\n{out}")
    found = re.search(r"tps = ([\d.]+) \(without initial connection time\)", out)
    if found is None:
        raise BenchError(f"no tps in pgbench output:\n{out}")
    return float(found.group(1))


async def child(url: str, tasks: int, duration: float, ids: list[str]) -> None:
    """One router process: ``tasks`` concurrent routers over its conversation ids, until the deadline."""
    from service.db.engine import create_engine
    from service.db.transactions import in_transaction
    from service.routing import placement
    from service.settings import Settings

    settings = Settings(database_url=url, redis_url="redis://127.0.0.1:6379/0", secret_key="x" * 32, db_pool_size=tasks)
    engine = create_engine(settings)
    latencies: list[float] = []
    pending = iter(ids)
    outcomes: dict[str, int] = {}

    async def router() -> None:
        for conversation_id in pending:
            if time.perf_counter() >= deadline:
                return
            started = time.perf_counter()
            outcome = await in_transaction(
                engine, lambda c, cid=conversation_id: placement.route_conversation(c, cid, 1, "bench")
            )
            latencies.append(time.perf_counter() - started)
            outcomes[outcome.outcome] = outcomes.get(outcome.outcome, 0) + 1

    # Warm the pool and the prepared-statement caches outside the measured window.
    async with engine.connect() as conn:
        await conn.exec_driver_sql("SELECT 1")
    deadline = time.perf_counter() + duration
    started = time.perf_counter()
    await asyncio.gather(*(router() for _ in range(tasks)))
    elapsed = time.perf_counter() - started
    await engine.dispose()
    print(json.dumps({"elapsed": elapsed, "latencies": latencies, "outcomes": outcomes}))


def run_switchboard(url: str, concurrency: int, processes: int, duration: float, per_level: int) -> dict[str, float]:
    """Assignments per second and decision latency percentiles over all processes."""
    count = min(concurrency, processes)
    shares = [concurrency // count + (1 if n < concurrency % count else 0) for n in range(count)]
    children = []
    for n, tasks in enumerate(shares):
        ids = [f"c{i}" for i in range(n + 1, per_level + 1, count)]
        children.append(
            subprocess.Popen(
                [sys.executable, __file__, "--child", url, str(tasks), str(duration)],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                text=True,
            )
        )
        assert children[-1].stdin is not None
        children[-1].stdin.write(json.dumps(ids))
        children[-1].stdin.close()
    results = [json.loads(c.stdout.read()) for c in children if c.stdout is not None]
    if any(c.wait() for c in children):
        raise BenchError("a router process failed")
    outcomes: dict[str, int] = {}
    for result in results:
        for key, value in result["outcomes"].items():
            outcomes[key] = outcomes.get(key, 0) + value
    if set(outcomes) != {"assigned"}:
        raise BenchError(f"every routing must assign: {outcomes}")
    latencies = sorted(x for r in results for x in r["latencies"])
    elapsed = max(r["elapsed"] for r in results)
    return {
        "rate": len(latencies) / elapsed,
        "p50": latencies[len(latencies) // 2] * 1000,
        "p99": latencies[int(len(latencies) * 0.99)] * 1000,
        "done": len(latencies),
    }


async def verify(url: str, expected: int) -> None:
    """Every routed conversation has exactly one open assignment and a decision, and counters agree."""
    conn = await asyncpg.connect(url)
    try:
        assigned = await conn.fetchval("SELECT count(*) FROM conversation WHERE status = 'assigned'")
        open_assignments = await conn.fetchval("SELECT count(*) FROM assignment WHERE ended_at IS NULL")
        decisions = await conn.fetchval("SELECT count(*) FROM routing_decision WHERE outcome = 'assigned'")
        counters = await conn.fetchval("SELECT sum(open_conversations) FROM operator")
    finally:
        await conn.close()
    if not assigned == open_assignments == decisions == counters == expected:
        raise BenchError(f"inconsistent: {assigned=} {open_assignments=} {decisions=} {counters=} {expected=}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--database-url", default="postgresql://postgres@127.0.0.1:5432/postgres")
    parser.add_argument("--duration", type=float, default=5.0)
    parser.add_argument("--concurrency", default="1,4,16")
    parser.add_argument("--processes", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--operators", type=int, default=20)
    parser.add_argument("--child", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        url, tasks, duration = args.child
        asyncio.run(child(url, int(tasks), float(duration), json.loads(sys.stdin.read())))
        return

    from service.db.migrate import upgrade

    url = server_url(args.database_url, DATABASE)
    subprocess.run(["psql", "-q", args.database_url, "-c", f'DROP DATABASE IF EXISTS "{DATABASE}"'], check=True)
    subprocess.run(["psql", "-q", args.database_url, "-c", f'CREATE DATABASE "{DATABASE}"'], check=True)
    try:
        upgrade(url)
        levels = [int(c) for c in args.concurrency.split(",")]
        # Enough conversations that no level runs out: a generous upper bound on the rate.
        per_level = int(6000 * args.duration)
        results: dict[int, dict[str, list[float]]] = {
            c: {"pgbench": [], "rate": [], "p50": [], "p99": []} for c in levels
        }
        for round_ in range(args.rounds):
            for concurrency in levels:
                asyncio.run(prepare(url, per_level, args.operators))
                results[concurrency]["pgbench"].append(run_pgbench(url, concurrency, args.duration))
                measured = run_switchboard(url, concurrency, args.processes, args.duration, per_level)
                asyncio.run(verify(url, int(measured["done"])))
                for key in ("rate", "p50", "p99"):
                    results[concurrency][key].append(measured[key])
                claims = results[concurrency]["pgbench"][-1]
                print(
                    f"round {round_ + 1} concurrency {concurrency:2d}: pgbench {claims:7.0f}/s  switchboard"
                    f" {measured['rate']:6.0f}/s  p50 {measured['p50']:5.1f} ms  p99 {measured['p99']:6.1f} ms",
                    flush=True,
                )
        print()
        print("concurrency  pgbench claims/s  switchboard assignments/s  p50 ms  p99 ms  ratio")
        for concurrency in levels:
            r = {k: statistics.median(v) for k, v in results[concurrency].items()}
            print(
                f"{concurrency:11d}  {r['pgbench']:16.0f}  {r['rate']:25.0f}  {r['p50']:6.1f}  {r['p99']:6.1f}"
                f"  {r['rate'] / r['pgbench']:5.2f}"
            )
        four = results[4] if 4 in results else results[levels[0]]
        print(f"ratio: {statistics.median(four['rate']) / statistics.median(four['pgbench']):.2f}")
    finally:
        subprocess.run(["psql", "-q", args.database_url, "-c", f'DROP DATABASE IF EXISTS "{DATABASE}" WITH (FORCE)'])


if __name__ == "__main__":
    main()
