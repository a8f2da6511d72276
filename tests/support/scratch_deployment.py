"""A throwaway deployment for the long bench runs: its own migrated database and Redis prefix, removed afterwards."""

from __future__ import annotations

import argparse
import asyncio
import os
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import asyncpg
from redis.asyncio import Redis
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from service.db.migrate import upgrade
from service.settings import Settings
from tests.support.redis_keys import delete_deployment_keys


def add_server_arguments(parser: argparse.ArgumentParser) -> None:
    """``--admin-database-url`` and ``--redis-url``, defaulting to the local servers (or BENCH_* variables)."""
    parser.add_argument(
        "--admin-database-url",
        default=os.environ.get("BENCH_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres"),
    )
    parser.add_argument("--redis-url", default=os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/0"))


@asynccontextmanager
async def scratch_deployment(args: argparse.Namespace, label: str) -> AsyncIterator[tuple[Settings, AsyncEngine]]:
    """Settings and an engine for a new migrated database ``sb_bench_<label>_…``; database and keys dropped after."""
    name = f"sb_bench_{label}_{uuid.uuid4().hex[:8]}"
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
        yield settings, engine
    finally:
        await engine.dispose()
        redis = Redis.from_url(args.redis_url)
        await delete_deployment_keys(redis, settings.redis_prefix)
        await redis.aclose()
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()
