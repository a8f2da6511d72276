"""Migrations: a full round trip on an empty database, and models and migrations agree."""

from __future__ import annotations

import asyncio

import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy.ext.asyncio import create_async_engine

from service.db import metadata
from service.db.migrate import downgrade, upgrade
from tests.conftest import scratch_database


async def _tables(url: str) -> set[str]:
    engine = create_async_engine(url.replace("postgresql://", "postgresql+asyncpg://"))
    async with engine.connect() as conn:
        names = await conn.run_sync(lambda sync: set(sa.inspect(sync).get_table_names()))
    await engine.dispose()
    return names


async def _diff(url: str) -> list[object]:
    engine = create_async_engine(url.replace("postgresql://", "postgresql+asyncpg://"))
    async with engine.connect() as conn:
        diff = await conn.run_sync(
            lambda sync: compare_metadata(MigrationContext.configure(sync, opts={"compare_type": True}), metadata)
        )
    await engine.dispose()
    return diff


async def test_upgrade_downgrade_upgrade_round_trip() -> None:
    async with scratch_database("migrations") as url:
        expected = {table.name for table in metadata.sorted_tables} | {"alembic_version"}
        await asyncio.to_thread(upgrade, url)
        assert await _tables(url) == expected
        await asyncio.to_thread(downgrade, url)
        assert await _tables(url) == {"alembic_version"}
        await asyncio.to_thread(upgrade, url)
        assert await _tables(url) == expected
        assert await _diff(url) == []
