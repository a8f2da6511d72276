"""The development demo's team: the demo users' "Demo Support", the default team, with AI after a short wait."""

from __future__ import annotations

import asyncio

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncConnection, create_async_engine

from service.db.tables import team_t

DEMO_TEAM = "Demo Support"  # the team service.dev.DEMO_GROUP_MAP gives the demo users
AI_DELAY_SECONDS = 30
WELCOME = "Hi! This is the Switchboard demo. An operator will answer; if nobody does within 30 seconds, the AI will."
AI_PROMPT = "You answer visitors for Demo Support, the demonstration team of a Switchboard development install."


async def seed_demo_team(conn: AsyncConnection) -> None:
    """Create the demo team once, as the default team unless one exists; an existing team is left as it is."""
    has_default = await conn.scalar(sa.select(sa.exists().where(team_t.c.is_default)))
    await conn.execute(
        insert(team_t)
        .values(
            name=DEMO_TEAM,
            is_default=not has_default,
            routing_policy="round_robin",
            welcome_message=WELCOME,
            ai_enabled=True,
            ai_system_prompt=AI_PROMPT,
            ai_takeover_delay_seconds=AI_DELAY_SECONDS,
        )
        .on_conflict_do_nothing()
    )


def seed_demo(database_url: str) -> None:
    """``seed_demo_team`` in a transaction of its own (for the synchronous ``switchboard dev`` runner)."""

    async def run() -> None:
        _, rest = database_url.split("://", 1)
        engine = create_async_engine(f"postgresql+asyncpg://{rest}")
        try:
            async with engine.begin() as conn:
                await seed_demo_team(conn)
        finally:
            await engine.dispose()

    asyncio.run(run())
