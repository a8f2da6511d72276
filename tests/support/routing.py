"""Helpers for routing tests: conversations written straight to PostgreSQL, and reads of the routing state."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from service.db.models import Conversation


async def make_conversation(
    engine: AsyncEngine | AsyncConnection, team_id: uuid.UUID | None = None, **values: Any
) -> tuple[str, int]:
    """A conversation waiting for routing (``new``, revision 1), as the gateway leaves it; returns (id, revision)."""
    conversation_id = values.pop("id", f"c-{uuid.uuid4().hex[:12]}")
    now = datetime.now(UTC)
    row = {
        "id": conversation_id,
        "visitor_id": f"v-{conversation_id}",
        "team_id": team_id,
        "status": "new",
        "routing_revision": 1,
        "waiting_since": now,
        "created_at": now,
        "last_activity": now,
        **values,
    }
    statement = sa.insert(Conversation.__table__).values(**row)  # type: ignore[attr-defined]
    if isinstance(engine, AsyncConnection):
        await engine.execute(statement)
    else:
        async with engine.begin() as conn:
            await conn.execute(statement)
    return conversation_id, int(row["routing_revision"])


async def rows(engine: AsyncEngine, sql: str, **params: Any) -> list[dict[str, Any]]:
    async with engine.connect() as conn:
        return [dict(r) for r in (await conn.execute(sa.text(sql), params)).mappings()]


async def state(engine: AsyncEngine, conversation_id: str) -> dict[str, Any]:
    """Status, team and assignee of one conversation."""
    [row] = await rows(
        engine, "SELECT status, team_id, assignee_id FROM conversation WHERE id = :id", id=conversation_id
    )
    return row


async def set_values(engine: AsyncEngine, table: str, where: dict[str, Any], **values: Any) -> None:
    """UPDATE one table in its own transaction (presence, capacity changes as their owners will make them)."""
    sets = ", ".join(f"{k} = :set_{k}" for k in values)
    conds = " AND ".join(f"{k} = :where_{k}" for k in where)
    params = {f"set_{k}": v for k, v in values.items()} | {f"where_{k}": v for k, v in where.items()}
    async with engine.begin() as conn:
        await conn.execute(sa.text(f"UPDATE {table} SET {sets} WHERE {conds}"), params)
