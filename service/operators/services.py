"""Operator administration: list, read, rename, grant or revoke admin, deactivate and reactivate."""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from typing import Any

import sqlalchemy as sa
from redis.asyncio import Redis
from sqlalchemy.dialects.postgresql import aggregate_order_by
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from service.audit import record_audit
from service.auth.principal import Principal
from service.auth.services import revoke_credentials
from service.auth.sessions import end_operator_sessions
from service.db.tables import conversation_t, member_t, operator_t
from service.db.transactions import in_transaction
from service.errors import NotFound, field_invalid
from service.operators.schemas import OperatorPage, OperatorPublic, OperatorUpdate
from service.pagination import decode_cursor, page
from service.push.devices import delete_devices
from service.routing.handoff import requeue
from service.settings import Settings

_teams = (
    sa.select(
        sa.func.coalesce(
            sa.func.jsonb_agg(
                aggregate_order_by(
                    sa.func.jsonb_build_object("teamId", member_t.c.team_id, "role", member_t.c.role),
                    member_t.c.team_id,
                )
            ),
            sa.text("'[]'::jsonb"),
        )
    )
    .where(member_t.c.operator_id == operator_t.c.id)
    .scalar_subquery()
)
_COLUMNS = [c for c in operator_t.c if c.name not in ("status_changed_at", "last_heartbeat_at")]


def _public(row: Any) -> OperatorPublic:
    return OperatorPublic.model_validate(dict(row._mapping))


async def display_names(conn: AsyncConnection, operator_ids: Iterable[uuid.UUID | None]) -> dict[uuid.UUID, str]:
    """The display names of these operators (deactivated ones too), by id."""
    wanted = {operator_id for operator_id in operator_ids if operator_id is not None}
    if not wanted:
        return {}
    rows = await conn.execute(sa.select(operator_t.c.id, operator_t.c.display_name).where(operator_t.c.id.in_(wanted)))
    return {row.id: row.display_name for row in rows}


async def list_operators(
    conn: AsyncConnection, *, include_deactivated: bool, cursor: str | None, limit: int
) -> OperatorPage:
    query = (
        sa.select(*_COLUMNS, _teams.label("teams"))
        .order_by(operator_t.c.display_name, operator_t.c.id)
        .limit(limit + 1)
    )
    if not include_deactivated:
        query = query.where(operator_t.c.deactivated_at.is_(None))
    if cursor is not None:
        name, last_id = decode_cursor(cursor, 2)
        query = query.where(sa.tuple_(operator_t.c.display_name, sa.cast(operator_t.c.id, sa.Text)) > (name, last_id))
    rows = (await conn.execute(query)).all()
    items, next_cursor = page(rows, limit, _public, lambda item: (item.display_name, item.id))
    return OperatorPage(items=items, next_cursor=next_cursor)


async def get_operator(conn: AsyncConnection, operator_id: uuid.UUID) -> OperatorPublic:
    row = (
        await conn.execute(sa.select(*_COLUMNS, _teams.label("teams")).where(operator_t.c.id == operator_id))
    ).first()
    if row is None:
        raise NotFound("Operator not found")
    return _public(row)


async def update_operator(
    conn: AsyncConnection, operator_id: uuid.UUID, data: OperatorUpdate, actor: Principal
) -> OperatorPublic:
    """Apply the change; admins cannot demote or deactivate themselves (so someone can always administer)."""
    current = (
        await conn.execute(sa.select(operator_t).where(operator_t.c.id == operator_id).with_for_update())
    ).first()
    if current is None:
        raise NotFound("Operator not found")
    if operator_id == actor.operator_id and data.is_admin is False:
        raise field_invalid("isAdmin", "You cannot remove your own administrator role")
    if operator_id == actor.operator_id and data.deactivated:
        raise field_invalid("deactivated", "You cannot deactivate yourself")
    changes: dict[str, Any] = {}
    if data.display_name is not None and data.display_name != current.display_name:
        changes["display_name"] = data.display_name
    if data.is_admin is not None and data.is_admin != current.is_admin:
        changes["is_admin"] = data.is_admin
    if data.deactivated is not None and data.deactivated != (current.deactivated_at is not None):
        # A deactivated operator is offline: routing skips them and their credentials stop working.
        if data.deactivated:
            changes |= {"deactivated_at": sa.func.now(), "status": "offline"}
            await revoke_credentials(conn, operator_id)
            await delete_devices(conn, operator_id)  # no push reaches a deactivated operator's phone
        else:
            changes["deactivated_at"] = None
    if changes:
        await conn.execute(sa.update(operator_t).where(operator_t.c.id == operator_id).values(**changes))
        audit = data.model_dump(by_alias=True, exclude_unset=True)
        await record_audit(conn, actor.operator_id, "operator.updated", "operator", operator_id, audit)
    return await get_operator(conn, operator_id)


async def requeue_held(engine: AsyncEngine, operator_id: uuid.UUID, actor_id: uuid.UUID) -> int:
    """Give a deactivated operator's open conversations back to their teams (each routed again at once).

    Runs after the deactivation committed, one conversation per transaction (the routing lock order
    starts at the conversation); routing already skips the operator, so nothing new reaches them.
    """
    async with engine.connect() as conn:
        held = await conn.scalars(
            sa.select(conversation_t.c.id).where(
                conversation_t.c.assignee_id == operator_id, conversation_t.c.status == "assigned"
            )
        )
        conversation_ids = list(held)
    moved = 0
    for conversation_id in conversation_ids:

        async def work(conn: AsyncConnection, conversation_id: str = conversation_id) -> bool:
            current = await conn.scalar(
                sa.select(conversation_t.c.assignee_id)
                .where(conversation_t.c.id == conversation_id, conversation_t.c.status == "assigned")
                .with_for_update()
            )
            if current != operator_id:  # closed or moved meanwhile
                return False
            await requeue(conn, conversation_id, reason="operator_deactivated", actor_id=actor_id)
            return True

        moved += await in_transaction(engine, work)
    return moved


async def finish_deactivation(
    engine: AsyncEngine, redis: Redis, settings: Settings, operator_id: uuid.UUID, actor_id: uuid.UUID
) -> int:
    """What follows a committed deactivation: browser sessions end, open conversations go back to their teams.

    Safe to repeat: a retried request finishes what an interrupted one started. Returns the conversations moved.
    """
    await end_operator_sessions(redis, settings, operator_id)
    return await requeue_held(engine, operator_id, actor_id)
