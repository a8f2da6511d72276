"""Engine and session factory; one engine per process, built from settings."""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker, create_async_engine

from service.settings import Settings


def create_engine(settings: Settings) -> AsyncEngine:
    """An asyncpg engine sized from settings; statements are prepared and cached per connection."""
    return create_async_engine(
        settings.async_database_url,
        pool_size=settings.db_pool_size,
        max_overflow=settings.db_pool_size,
        pool_pre_ping=False,
        pool_recycle=1800,
    )


def create_session_factory(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    """Sessions that keep loaded objects usable after commit."""
    return async_sessionmaker(engine, expire_on_commit=False)


async def ping(engine: AsyncEngine) -> None:
    """One round trip to PostgreSQL; raises when the database does not answer."""
    async with engine.connect() as conn:
        await conn.execute(sa.text("SELECT 1"))
