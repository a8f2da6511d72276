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


async def test_skill_levels_and_pooled_teams_migrate_down_to_what_the_previous_schema_holds() -> None:
    """0024 down keeps each skill at level 1, a relaxed requirement as asked, a pooled team manual; up again works."""
    async with scratch_database("migrations_0024") as url:
        await asyncio.to_thread(upgrade, url)
        engine = create_async_engine(url.replace("postgresql://", "postgresql+asyncpg://"))
        statements = (
            "INSERT INTO team (id, name, routing_policy) VALUES (gen_random_uuid(), 'Pool', 'pooled')",
            "INSERT INTO operator (id, subject, display_name) VALUES (gen_random_uuid(), 's', 'Ada')",
            "INSERT INTO team_member (team_id, operator_id, skills) SELECT t.id, o.id, '{fr:3,billing}' "
            "FROM team t, operator o",
            "INSERT INTO conversation (id, visitor_id, team_id, status, created_at, last_activity, required_skills, "
            "skill_requirement, skill_step) SELECT 'c1', 'v1', id, 'queued', now(), now(), '{fr:2}', '{fr:3}', "
            "'relaxed' FROM team",
        )
        async with engine.begin() as conn:
            for statement in statements:
                await conn.execute(sa.text(statement))
        await asyncio.to_thread(downgrade, url, "0024-1")
        async with engine.connect() as conn:
            found = (
                await conn.execute(
                    sa.text(
                        "SELECT t.routing_policy, m.skills, c.required_skills FROM team t "
                        "JOIN team_member m ON m.team_id = t.id JOIN conversation c ON c.team_id = t.id"
                    )
                )
            ).one()
        assert (found.routing_policy, sorted(found.skills), found.required_skills) == (
            "manual",
            ["billing", "fr"],
            ["fr"],
        )
        await asyncio.to_thread(upgrade, url)
        async with engine.connect() as conn:
            assert await conn.scalar(sa.text("SELECT skill_ladder(skills) FROM team_member")) == ["billing", "fr"]
        await engine.dispose()
