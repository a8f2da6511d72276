"""Shared fixtures: a fresh PostgreSQL database per run, clean tables and Redis keys per test, real servers."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import tempfile
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from ipaddress import IPv4Network
from typing import Any

import asyncpg
import httpx
import pytest
import sqlalchemy as sa
import uvicorn
from redis.asyncio import Redis
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from service.app import create_app
from service.db import metadata
from service.db.migrate import upgrade
from service.dev import free_port
from service.settings import Settings
from tests.standins import DiscordStandIn, SlackStandIn, TelegramStandIn
from tests.support.oidc import wait_for_issuer
from tests.support.redis_keys import delete_deployment_keys

TEST_DATABASE_URL = os.environ.get("TEST_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/test")
TEST_REDIS_URL = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
# One metrics directory for the run, read by every Settings here and inherited by worker subprocesses (whatever
# DATA_DIR a test sets): a worker's metrics reach the test's /metrics, and no run adds to another's.
if os.environ.get("PYTEST_XDIST_WORKER") or "METRICS_DIR" not in os.environ:
    # Each xdist process too: they inherit the controller's environment, and would add to each other's metrics.
    os.environ["METRICS_DIR"] = tempfile.mkdtemp(prefix="switchboard-metrics-")
SECRET = "test-secret-key-with-at-least-32-characters"


def _server_url(database: str) -> str:
    base, _, _ = TEST_DATABASE_URL.rpartition("/")
    return f"{base}/{database}"


@asynccontextmanager
async def scratch_database(label: str) -> AsyncIterator[str]:
    """Create an empty database on the test server; drop it afterwards."""
    name = f"sb_{label}_{uuid.uuid4().hex[:8]}"
    admin = await asyncpg.connect(TEST_DATABASE_URL.replace("+asyncpg", ""))
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
        yield _server_url(name)
    finally:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()


@pytest.fixture(scope="session")
async def database_url() -> AsyncIterator[str]:
    """One migrated database for the whole run; tests empty its tables instead of recreating it."""
    async with scratch_database("test") as url:
        await asyncio.to_thread(upgrade, url)
        yield url


@pytest.fixture(scope="session")
async def engine(database_url: str) -> AsyncIterator[AsyncEngine]:
    engine = create_async_engine(database_url.replace("postgresql://", "postgresql+asyncpg://"))
    yield engine
    await engine.dispose()


@pytest.fixture
async def clean_db(engine: AsyncEngine) -> AsyncEngine:
    """Every table empty before the test."""
    tables = ", ".join(f'"{t.name}"' for t in metadata.sorted_tables)
    async with engine.begin() as conn:
        await conn.execute(sa.text(f"TRUNCATE {tables} RESTART IDENTITY CASCADE"))
    return engine


@pytest.fixture
async def settings(database_url: str, clean_db: AsyncEngine) -> AsyncIterator[Settings]:
    """Settings for one test: clean tables, and a Redis key prefix (channels, queue, limits) of its own."""
    prefix = f"sbtest:{uuid.uuid4().hex[:12]}"
    yield Settings(
        database_url=database_url,
        redis_url=TEST_REDIS_URL,
        secret_key=SECRET,
        environment="test",
        redis_prefix=prefix,
        log_json=False,
        log_level="WARNING",
        db_pool_size=5,
        # Test receivers (webhooks, bridge stand-ins) listen on loopback; only 127.0.0.1 is allowed, so other
        # loopback addresses stay refused for the SSRF guard's tests.
        webhook_allowed_cidrs=[IPv4Network("127.0.0.1/32")],
    )
    # Only this test's keys: another run on the same Redis database keeps its own.
    redis = Redis.from_url(TEST_REDIS_URL)
    await delete_deployment_keys(redis, prefix)
    await redis.aclose()


@pytest.fixture
async def redis() -> AsyncIterator[Redis]:
    client = Redis.from_url(TEST_REDIS_URL)
    yield client
    await client.aclose()


class RunningApi:
    """An api instance served by uvicorn on a loopback port, as in production."""

    def __init__(self, server: uvicorn.Server, app: Any) -> None:
        self.server = server
        self.app = app
        port = server.servers[0].sockets[0].getsockname()[1]
        self.url = f"http://127.0.0.1:{port}"
        self.ws_url = f"ws://127.0.0.1:{port}"

    def client(self) -> httpx.AsyncClient:
        return httpx.AsyncClient(base_url=self.url, timeout=10)


@asynccontextmanager
async def run_api(settings: Settings, extra_handlers: tuple[Any, ...] = (), port: int = 0) -> AsyncIterator[RunningApi]:
    """Start ``create_app(settings)`` (plus any test-only handlers) under uvicorn on ``port`` (0: any free one)."""
    app = create_app(settings)
    for handler in extra_handlers:
        app.register(handler)
    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_config=None, lifespan="on", ws="websockets-sansio")
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    while not server.started:
        if task.done():
            task.result()
        await asyncio.sleep(0.01)
    try:
        yield RunningApi(server, app)
    finally:
        server.should_exit = True
        await task


@pytest.fixture
async def api(settings: Settings) -> AsyncIterator[RunningApi]:
    async with run_api(settings) as running:
        yield running


@pytest.fixture
async def http(api: RunningApi) -> AsyncIterator[httpx.AsyncClient]:
    async with api.client() as client:
        yield client


@contextmanager
def oidc_provider(*options: str) -> Iterator[str]:
    """A real oidc-provider-mock process on loopback (its own process: it imports the deprecated authlib.jose)."""
    issuer = f"http://127.0.0.1:{free_port()}"
    argv = [sys.executable, "-m", "oidc_provider_mock", "--port", issuer.rpartition(":")[2], *options]
    process = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for_issuer(issuer, process, name="oidc-provider-mock", seconds=20)
        yield issuer
    finally:
        process.terminate()
        process.wait(timeout=10)


@pytest.fixture(scope="session")
def oidc_issuer() -> Iterator[str]:
    with oidc_provider() as issuer:
        yield issuer


@pytest.fixture(scope="session")
def expired_issuer() -> Iterator[str]:
    """A second real provider whose tokens are born expired (max age -1 h), signed with its real key."""
    with oidc_provider("--token-max-age", "-3600") as issuer:
        yield issuer


# Chat platform stand-ins (tests/standins): real HTTP servers on loopback recording every call.


@pytest.fixture
def telegram_api() -> Iterator[TelegramStandIn]:
    with TelegramStandIn() as server:
        yield server


@pytest.fixture
def slack_api() -> Iterator[SlackStandIn]:
    with SlackStandIn() as server:
        yield server


@pytest.fixture
def discord_api() -> Iterator[DiscordStandIn]:
    with DiscordStandIn() as server:
        yield server
