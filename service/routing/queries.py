"""Reads of routing state for the API, the periodic sweep and tests."""

from __future__ import annotations

import uuid
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from service.auth.principal import Principal, requires_team_member
from service.db.tables import conversation_t, decision_t, team_t
from service.errors import NotFound
from service.routing.schemas import ConversationRoutingPublic


async def team_queue(conn: AsyncConnection, team_id: uuid.UUID, limit: int = 100) -> list[dict[str, Any]]:
    """The team's waiting conversations in service order: priority, then longest waiting."""
    result = await conn.execute(
        sa.select(conversation_t.c.id, conversation_t.c.priority, conversation_t.c.waiting_since)
        .where(conversation_t.c.team_id == team_id, conversation_t.c.status == "queued")
        .order_by(conversation_t.c.priority.desc(), conversation_t.c.waiting_since, conversation_t.c.id)
        .limit(limit)
    )
    return [dict(row._mapping) for row in result]


async def teams_with_queue(conn: AsyncConnection) -> list[uuid.UUID]:
    """Teams with an automatic policy and someone waiting (for the periodic sweep)."""
    result = await conn.execute(
        sa.select(team_t.c.id)
        .where(
            team_t.c.routing_policy.not_in(["manual", "pooled"]),
            sa.exists().where(conversation_t.c.team_id == team_t.c.id, conversation_t.c.status == "queued"),
        )
        .order_by(team_t.c.id)
    )
    return list(result.scalars())


async def unrouted_conversations(conn: AsyncConnection, older_than_seconds: float) -> list[tuple[str, int]]:
    """Conversations waiting for a routing job that may have been lost (for the sweep)."""
    result = await conn.execute(
        sa.select(conversation_t.c.id, conversation_t.c.routing_revision).where(
            conversation_t.c.status == "new",
            conversation_t.c.waiting_since.is_not(None),
            conversation_t.c.waiting_since
            < sa.func.now() - sa.func.make_interval(0, 0, 0, 0, 0, 0, older_than_seconds),
        )
    )
    return [(row.id, row.routing_revision) for row in result]


async def decisions_for(
    conn: AsyncConnection, conversation_id: str, *, after_id: int = 0, limit: int = 50, newest_first: bool = False
) -> list[dict[str, Any]]:
    """Routing decisions about the conversation after the decision ``after_id``, oldest first (or newest first)."""
    result = await conn.execute(
        sa.select(decision_t)
        .where(decision_t.c.conversation_id == conversation_id, decision_t.c.id > after_id)
        .order_by(decision_t.c.id.desc() if newest_first else decision_t.c.id)
        .limit(limit)
    )
    return [dict(row) for row in result.mappings()]


async def lock_for_member(conn: AsyncConnection, conversation_id: str, principal: Principal) -> Any:
    """Lock the conversation and check the caller belongs to its team (404 for anyone else)."""
    row = (
        await conn.execute(
            sa.select(conversation_t.c.team_id).where(conversation_t.c.id == conversation_id).with_for_update()
        )
    ).first()
    if row is None:
        raise NotFound("Conversation not found")
    requires_team_member(principal, row.team_id)
    return row.team_id


async def routing_state(conn: AsyncConnection, conversation_id: str) -> ConversationRoutingPublic:
    """Who holds the conversation now, at which routing revision."""
    row = (
        await conn.execute(
            sa.select(
                conversation_t.c.id.label("conversation_id"),
                conversation_t.c.status,
                conversation_t.c.team_id,
                conversation_t.c.assignee_id,
                conversation_t.c.routing_revision,
            ).where(conversation_t.c.id == conversation_id)
        )
    ).one()
    return ConversationRoutingPublic.model_validate(dict(row._mapping))
