"""Queue order, longer: the race of tests/integration/routing/test_queue_order.py over more seeds and conversations.

Each seed gets a scratch database and Redis prefix; 4 routers route ``--conversations`` conversations while
operators flap (presence service, drains by 2 worker processes) and conversations close, then the assignment
history is replayed (``tests/support/queue_order.py``):

    .venv/bin/python bench/queue_order.py [--seeds 10] [--conversations 2000]

The run fails if any automatic assignment was made while a conversation of its team that comes first in queue
order, and that the operator could take, was waiting. The last line is ``out_of_order: N``.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import uuid
from pathlib import Path

import asyncpg
from redis.asyncio import Redis
from sqlalchemy.ext.asyncio import create_async_engine

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from service.db.migrate import upgrade
from service.settings import Settings
from tests.support.queue_order import out_of_order, race
from tests.support.redis_keys import delete_deployment_keys


async def one_seed(args: argparse.Namespace, seed: int) -> int:
    name = f"sb_bench_order_{uuid.uuid4().hex[:8]}"
    admin = await asyncpg.connect(args.admin_database_url)
    await admin.execute(f'CREATE DATABASE "{name}"')
    url = args.admin_database_url.rsplit("/", 1)[0] + f"/{name}"
    settings = Settings(
        database_url=url,
        redis_url=args.redis_url,
        secret_key="bench-secret-key-with-at-least-32-characters",
        redis_prefix=f"sbbench:{uuid.uuid4().hex[:8]}",
        log_level="WARNING",
    )
    engine = create_async_engine(url.replace("postgresql://", "postgresql+asyncpg://"))
    try:
        await asyncio.to_thread(upgrade, url)
        counts = await race(settings, engine, seed=seed, conversations=args.conversations)
        bad = await out_of_order(engine)
        print(f"seed {seed}: {dict(sorted(counts.items()))}, out of order: {len(bad)}")
        return len(bad)
    finally:
        await engine.dispose()
        redis = Redis.from_url(args.redis_url)
        await delete_deployment_keys(redis, settings.redis_prefix)
        await redis.aclose()
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()


async def run(args: argparse.Namespace) -> None:
    total = 0
    for seed in range(1, args.seeds + 1):
        total += await one_seed(args, seed)
    print(f"out_of_order: {total}")
    if total:
        raise SystemExit(1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, default=10)
    parser.add_argument("--conversations", type=int, default=2000)
    parser.add_argument(
        "--admin-database-url",
        default=os.environ.get("BENCH_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres"),
    )
    parser.add_argument("--redis-url", default=os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/0"))
    asyncio.run(run(parser.parse_args()))


if __name__ == "__main__":
    main()
