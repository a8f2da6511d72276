"""A team's SLA policies: create, read, change, delete (leads and admins), each audited."""

from __future__ import annotations

import uuid
from typing import Any

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from service.audit import record_audit
from service.db.tables import sla_policy_t, team_t
from service.errors import NotFound, field_conflict, field_invalid, unique_violation
from service.sla.schemas import EscalationStep, SlaPolicyCreate, SlaPolicyList, SlaPolicyPublic, SlaPolicyUpdate

_TAKEN = "The team already has a policy for this priority"


async def _team_exists(conn: AsyncConnection, team_id: uuid.UUID) -> None:
    # An admin passes the lead check for any id: an unknown team is a 404 here.
    if await conn.scalar(sa.select(team_t.c.id).where(team_t.c.id == team_id)) is None:
        raise NotFound("Team not found")


async def list_policies(conn: AsyncConnection, team_id: uuid.UUID) -> SlaPolicyList:
    """The team's policies, by priority (the catch-all last)."""
    await _team_exists(conn, team_id)
    rows = await conn.execute(
        sa.select(sla_policy_t)
        .where(sla_policy_t.c.team_id == team_id)
        .order_by(sla_policy_t.c.priority.is_(None), sla_policy_t.c.priority)
    )
    return SlaPolicyList(items=[SlaPolicyPublic.model_validate(row) for row in rows])


async def get_policy(conn: AsyncConnection, team_id: uuid.UUID, policy_id: uuid.UUID) -> SlaPolicyPublic:
    row = (
        await conn.execute(
            sa.select(sla_policy_t).where(sla_policy_t.c.id == policy_id, sla_policy_t.c.team_id == team_id)
        )
    ).first()
    if row is None:
        raise NotFound("SLA policy not found")
    return SlaPolicyPublic.model_validate(row)


async def _check_steps(conn: AsyncConnection, team_id: uuid.UUID, steps: list[EscalationStep]) -> list[dict[str, Any]]:
    """The steps as stored; an overflow team must be another existing team (422 naming the step's field)."""
    for index, step in enumerate(steps):
        if step.team_id is None:
            continue
        field = f"escalation.{index}.teamId"
        if step.team_id == team_id:
            raise field_invalid(field, "An overflow team must be another team")
        if await conn.scalar(sa.select(team_t.c.id).where(team_t.c.id == step.team_id)) is None:
            raise field_invalid(field, "No such team")
    return [step.model_dump(mode="json", by_alias=True, exclude_none=True) for step in steps]


async def _write(conn: AsyncConnection, statement: Any) -> uuid.UUID:
    try:
        async with conn.begin_nested():
            return uuid.UUID(str(await conn.scalar(statement)))
    except IntegrityError as exc:
        if unique_violation(exc) == "uq_sla_policy_team_priority":
            raise field_conflict("priority", _TAKEN) from None
        raise


async def create_policy(
    conn: AsyncConnection, team_id: uuid.UUID, data: SlaPolicyCreate, actor_id: uuid.UUID | None
) -> SlaPolicyPublic:
    await _team_exists(conn, team_id)
    values = data.model_dump(exclude={"escalation"})
    values["escalation"] = await _check_steps(conn, team_id, data.escalation)
    policy_id = await _write(
        conn, sa.insert(sla_policy_t).values(team_id=team_id, **values).returning(sla_policy_t.c.id)
    )
    await record_audit(conn, actor_id, "sla_policy.created", "sla_policy", policy_id, {"teamId": team_id, **values})
    return await get_policy(conn, team_id, policy_id)


async def update_policy(
    conn: AsyncConnection, team_id: uuid.UUID, policy_id: uuid.UUID, data: SlaPolicyUpdate, actor_id: uuid.UUID | None
) -> SlaPolicyPublic:
    """Change the fields given. Running clocks keep the deadlines they have; new clocks use the new targets."""
    await get_policy(conn, team_id, policy_id)
    values: dict[str, Any] = {name: getattr(data, name) for name in data.model_fields_set if name != "escalation"}
    if data.escalation is not None:
        values["escalation"] = await _check_steps(conn, team_id, data.escalation)
    if values:
        await _write(
            conn,
            sa.update(sla_policy_t)
            .where(sla_policy_t.c.id == policy_id)
            .values(**values, updated_at=sa.func.now())
            .returning(sla_policy_t.c.id),
        )
        await record_audit(conn, actor_id, "sla_policy.updated", "sla_policy", policy_id, values)
    return await get_policy(conn, team_id, policy_id)


async def delete_policy(
    conn: AsyncConnection, team_id: uuid.UUID, policy_id: uuid.UUID, actor_id: uuid.UUID | None
) -> None:
    """Remove it; clocks it measured stop being kept at their next refresh (a breach stays counted)."""
    await get_policy(conn, team_id, policy_id)
    await conn.execute(sa.delete(sla_policy_t).where(sla_policy_t.c.id == policy_id))
    await record_audit(conn, actor_id, "sla_policy.deleted", "sla_policy", policy_id, {"teamId": team_id})
