"""Routing: which team a conversation belongs to and where it waits (the team queue)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from arq.connections import ArqRedis
from sqlalchemy.ext.asyncio import AsyncConnection

from service.db.models import Conversation, RoutingDecision, Team

conversation_t = Conversation.__table__  # type: ignore[attr-defined]
team_t = Team.__table__  # type: ignore[attr-defined]
decision_t = RoutingDecision.__table__  # type: ignore[attr-defined]

DEFAULT_TEAM_NAME = "Support"


def route_job_id(conversation_id: str, revision: int) -> str:
    """Versioned job id: one routing job per conversation revision, however often it is enqueued."""
    return f"route:{conversation_id}:{revision}"


async def enqueue_route(arq: ArqRedis, conversation_id: str, revision: int, trigger: str) -> None:
    """Ask a worker to route the conversation at this revision."""
    await arq.enqueue_job(
        "route_conversation",
        conversation_id=conversation_id,
        revision=revision,
        trigger=trigger,
        _job_id=route_job_id(conversation_id, revision),
    )


async def default_team_id(conn: AsyncConnection) -> uuid.UUID:
    """The default team, created on first use so a fresh install routes somewhere."""
    found = await conn.scalar(sa.select(team_t.c.id).where(team_t.c.is_default))
    if found is not None:
        return found
    await conn.execute(
        sa.dialects.postgresql.insert(team_t)
        .values(id=uuid.uuid4(), name=DEFAULT_TEAM_NAME, is_default=True)
        .on_conflict_do_nothing()
    )
    return (await conn.execute(sa.select(team_t.c.id).where(team_t.c.is_default))).scalar_one()


@dataclass(frozen=True)
class RouteOutcome:
    """What a routing job did: ``queued``, or ``stale`` when the conversation moved on meanwhile."""

    outcome: str
    team_id: uuid.UUID | None = None


async def route_conversation(conn: AsyncConnection, conversation_id: str, revision: int, trigger: str) -> RouteOutcome:
    """Route one conversation in the caller's transaction; a no-op unless ``revision`` is current.

    The row is locked first, so concurrent jobs for the same conversation serialize and all
    but the first find a newer revision and stop.
    """
    row = (
        await conn.execute(
            sa.select(conversation_t.c.status, conversation_t.c.routing_revision, conversation_t.c.team_id)
            .where(conversation_t.c.id == conversation_id)
            .with_for_update()
        )
    ).first()
    if row is None or row.routing_revision != revision or row.status != "new":
        return RouteOutcome("stale")
    team_id = row.team_id or await default_team_id(conn)
    policy = await conn.scalar(sa.select(team_t.c.routing_policy).where(team_t.c.id == team_id))
    # Automatic policies arrive with the routing engine; until then every team queues (manual).
    await conn.execute(
        sa.update(conversation_t)
        .where(conversation_t.c.id == conversation_id)
        .values(status="queued", team_id=team_id, routing_revision=conversation_t.c.routing_revision + 1)
    )
    await conn.execute(
        sa.insert(decision_t).values(
            conversation_id=conversation_id,
            team_id=team_id,
            policy=policy,
            trigger=trigger,
            candidates=[],
            outcome="queued",
        )
    )
    return RouteOutcome("queued", team_id)


async def team_queue(conn: AsyncConnection, team_id: uuid.UUID, limit: int = 100) -> list[dict[str, Any]]:
    """The team's waiting conversations in service order: priority, then longest waiting."""
    result = await conn.execute(
        sa.select(conversation_t.c.id, conversation_t.c.priority, conversation_t.c.waiting_since)
        .where(conversation_t.c.team_id == team_id, conversation_t.c.status == "queued")
        .order_by(conversation_t.c.priority.desc(), conversation_t.c.waiting_since, conversation_t.c.id)
        .limit(limit)
    )
    return [dict(row._mapping) for row in result]


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
