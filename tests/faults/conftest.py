"""The fault suite's servers: a PostgreSQL cluster and a Redis server of its own, which the tests may stop, kill and
restart (the shared servers other tests use are never touched), and a deployment on them."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest

from tests.support.faults import (
    Deployment,
    PrivatePostgres,
    PrivateRedis,
    deployment,
    private_postgres,
    private_redis,
)


@pytest.fixture(scope="session")
def cluster() -> Iterator[PrivatePostgres]:
    with private_postgres() as started:
        yield started


@pytest.fixture
async def redis_server() -> AsyncIterator[PrivateRedis]:
    async with private_redis() as server:
        yield server


@pytest.fixture
async def deployed(cluster: PrivatePostgres, redis_server: PrivateRedis) -> AsyncIterator[Deployment]:
    """Two api processes and two workers on a new migrated database of the cluster and the private Redis."""
    async with deployment(cluster, redis_server) as running:
        yield running
