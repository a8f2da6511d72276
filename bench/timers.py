"""Timer lateness: how long after its due time each of 10,000 pending durable timers fires.

Creates ``--timers`` timer rows in a scratch database, due uniformly over ``--spread`` seconds
starting ``--lead`` seconds ahead, each with its versioned arq trigger (as ``schedule_timer``
inside ``triggers`` does), then starts ``--workers`` ``switchboard worker`` processes (default
settings: ``WORKER_POLL_DELAY=0.05``, ``TIMER_BATCH_SIZE=1000``) and waits until every timer has
fired. Lateness is measured to the commit of the firing transaction (a deferred trigger of the
scratch database records ``clock_timestamp()`` then, so an action is counted when it is visible),
and to the claim (``fired_at - due_at``, what the ``switchboard_timer_lateness_seconds`` metric sees):

    .venv/bin/python bench/timers.py [--timers 10000] [--spread 30] [--workers 1]

The timers are ``first_response`` timers of conversations that do not exist, so each firing is
the whole trigger path (job, subject lock, conditional UPDATE, commit) with an action that
finds nothing to do: this measures the timer machinery, not routing. The run fails if any timer
is left pending or not fired exactly once (one committed firing per timer, counted by that
trigger). ``per_worker_per_s`` is firings per second and worker from the first due time to the
last commit: the capacity only when they fall due faster than the workers fire them (``--spread 1``).
The last line is ``p99_ms: N`` (to the commit).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import asyncpg
from arq import create_pool
from redis.asyncio import Redis

from service.db.migrate import upgrade
from service.queue import Trigger, enqueue_trigger
from service.resources import redis_settings
from service.settings import Settings

ROOT = Path(__file__).resolve().parent.parent
SWITCHBOARD = ROOT / ".venv" / "bin" / "switchboard"


class BenchError(Exception):
    """A failed check: the numbers would not mean what they say."""


# Each committed firing, counted at its commit: a deferred trigger runs then (one rolled back, or undone in a
# savepoint, is never counted), and counts it only if the timer is still fired at that moment.
COUNT_FIRINGS = """
CREATE TABLE bench_firing (timer_id bigint NOT NULL, committed_at timestamptz NOT NULL);
CREATE FUNCTION bench_fired() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF EXISTS (SELECT 1 FROM timer WHERE id = NEW.id AND state = 'fired') THEN
        INSERT INTO bench_firing VALUES (NEW.id, clock_timestamp());
    END IF;
    RETURN NULL;
END $$;
CREATE CONSTRAINT TRIGGER bench_fired AFTER UPDATE ON timer DEFERRABLE INITIALLY DEFERRED
    FOR EACH ROW WHEN (OLD.state = 'pending' AND NEW.state = 'fired') EXECUTE FUNCTION bench_fired();
"""


def percentile(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=1000, method="inclusive")[int(q * 1000) - 1]


async def schedule(settings: Settings, url: str, count: int, lead: float, spread: float) -> None:
    """Insert the timer rows in one statement, then enqueue one trigger per row."""
    start = datetime.now(UTC) + timedelta(seconds=lead)
    due = [start + timedelta(seconds=spread * n / count) for n in range(count)]
    conn = await asyncpg.connect(url)
    await conn.execute(COUNT_FIRINGS)
    rows = await conn.fetch(
        "INSERT INTO timer (kind, subject, due_at) SELECT 'first_response', s, d "
        "FROM unnest($1::text[], $2::timestamptz[]) AS t(s, d) RETURNING id, revision, due_at",
        [f"bench-{n}" for n in range(count)],
        due,
    )
    await conn.close()
    arq = await create_pool(redis_settings(settings), default_queue_name=settings.queue_name)
    for chunk in range(0, len(rows), 500):
        await asyncio.gather(
            *(enqueue_trigger(arq, Trigger(r["id"], r["revision"], r["due_at"])) for r in rows[chunk : chunk + 500])
        )
    await arq.aclose()
    if datetime.now(UTC) > start:
        raise BenchError(f"scheduling took longer than --lead {lead} s; raise it")


async def run(args: argparse.Namespace) -> None:
    name = f"sb_bench_timers_{uuid.uuid4().hex[:8]}"
    admin = await asyncpg.connect(args.admin_database_url)
    await admin.execute(f'CREATE DATABASE "{name}"')
    url = args.admin_database_url.rsplit("/", 1)[0] + f"/{name}"
    prefix = f"sbbench:{uuid.uuid4().hex[:8]}"
    settings = Settings(
        database_url=url,
        redis_url=args.redis_url,
        secret_key="bench-secret-key-with-at-least-32-characters",
        redis_prefix=prefix,
    )
    workers: list[asyncio.subprocess.Process] = []
    try:
        await asyncio.to_thread(upgrade, url)
        await schedule(settings, url, args.timers, args.lead, args.spread)
        env = {
            **os.environ,
            "DATABASE_URL": url,
            "REDIS_URL": args.redis_url,
            "REDIS_PREFIX": prefix,
            "SECRET_KEY": settings.secret_key,
            "LOG_LEVEL": "WARNING",
        }
        workers = [
            await asyncio.create_subprocess_exec(str(SWITCHBOARD), "worker", env=env, stdout=asyncio.subprocess.DEVNULL)
            for _ in range(args.workers)
        ]
        conn = await asyncpg.connect(url)
        deadline = time.monotonic() + args.lead + args.spread + 60
        while await conn.fetchval("SELECT count(*) FROM timer WHERE state = 'pending'"):
            if time.monotonic() > deadline:
                raise BenchError("timers still pending a minute after the last was due")
            await asyncio.sleep(0.5)
        found = await conn.fetch(
            "SELECT t.revision, t.state, extract(epoch FROM t.fired_at - t.due_at) AS late, "
            "extract(epoch FROM min(f.committed_at) - t.due_at) AS committed, count(f.timer_id) AS firings "
            "FROM timer t LEFT JOIN bench_firing f ON f.timer_id = t.id GROUP BY t.id"
        )
        elapsed = await conn.fetchval(
            "SELECT extract(epoch FROM (SELECT max(committed_at) FROM bench_firing) - (SELECT min(due_at) FROM timer))"
        )
        await conn.close()
        if len(found) != args.timers or any(r["revision"] != 1 or r["state"] != "fired" for r in found):
            raise BenchError("a timer was not fired at revision 1")
        if any(r["firings"] != 1 for r in found):
            raise BenchError(f"{sum(r['firings'] != 1 for r in found)} timers were not fired exactly once")
        late_ms = [float(r["late"]) * 1000 for r in found]
        committed_ms = [float(r["committed"]) * 1000 for r in found]
        if min(late_ms) < 0:
            raise BenchError(f"a timer fired {-min(late_ms):.1f} ms early")
        print(f"timers: {args.timers} due over {args.spread} s, workers: {args.workers}, poll_delay: 0.05 s")
        print(f"per_worker_per_s: {args.timers / float(elapsed) / args.workers:.0f}")
        print(f"claim_p50_ms: {percentile(late_ms, 0.5):.1f}")
        print(f"claim_p99_ms: {percentile(late_ms, 0.99):.1f}")
        print(f"p50_ms: {percentile(committed_ms, 0.5):.1f}")
        print(f"max_ms: {max(committed_ms):.1f}")
        print(f"p99_ms: {percentile(committed_ms, 0.99):.1f}")
    finally:
        for worker in workers:
            worker.terminate()
        for worker in workers:
            await asyncio.wait_for(worker.wait(), 30)
        redis = Redis.from_url(args.redis_url)
        keys = [k async for k in redis.scan_iter(match=f"{prefix}:*", count=1000)]
        keys += [k async for k in redis.scan_iter(match=f"arq:*:{prefix}:queue:*", count=1000)]
        if keys:
            await redis.delete(*keys)
        await redis.aclose()
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--timers", type=int, default=10_000)
    parser.add_argument("--spread", type=float, default=30.0, help="seconds over which the timers fall due")
    parser.add_argument("--lead", type=float, default=10.0, help="seconds before the first is due")
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument(
        "--admin-database-url",
        default=os.environ.get("BENCH_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres"),
    )
    parser.add_argument("--redis-url", default=os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/0"))
    try:
        asyncio.run(run(parser.parse_args()))
    except BenchError as exc:
        print(f"FAILED: {exc}", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
