"""A team's routing rules: an ordered list, read whole and replaced whole (reordering included)."""

from __future__ import annotations

import uuid

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from service.audit import record_audit
from service.auth.principal import Principal
from service.db.tables import rule_t, team_t
from service.tags.services import check_team_tags
from service.teams.schemas import RuleList, RulePublic, RulesReplace
from service.teams.services import lock_team


async def list_rules(conn: AsyncConnection, team_id: uuid.UUID) -> RuleList:
    await lock_team(conn, team_id, lock=False)
    rows = await conn.execute(sa.select(rule_t).where(rule_t.c.team_id == team_id).order_by(rule_t.c.position))
    return RuleList(items=[RulePublic.model_validate(row) for row in rows])


async def replace_rules(conn: AsyncConnection, team_id: uuid.UUID, data: RulesReplace, actor: Principal) -> RuleList:
    """Delete the team's rules and insert the new list with positions 0..n-1, in one transaction."""
    await lock_team(conn, team_id)
    for position, rule in enumerate(data.rules):
        await check_team_tags(conn, team_id, rule.set_tags, f"rules.{position}.setTags")
    # Routing evaluates every team's rules together by position, then creation time: stamping the
    # team's own creation time keeps ties between teams in team-age order, however often a list is saved.
    created_at = await conn.scalar(sa.select(team_t.c.created_at).where(team_t.c.id == team_id))
    await conn.execute(sa.delete(rule_t).where(rule_t.c.team_id == team_id))
    stored = [
        {
            "id": uuid.uuid4(),
            "team_id": team_id,
            "position": position,
            "name": rule.name,
            "enabled": rule.enabled,
            "conditions": rule.conditions.model_dump(exclude_none=True),
            "set_priority": rule.set_priority,
            "required_skills": rule.required_skills,
            "set_tags": rule.set_tags,
            "created_at": created_at,
        }
        for position, rule in enumerate(data.rules)
    ]
    if stored:
        await conn.execute(sa.insert(rule_t), stored)
    audit = {"rules": [rule.model_dump(by_alias=True, exclude_none=True) for rule in data.rules]}
    await record_audit(conn, actor.operator_id, "team.rules_replaced", "team", team_id, audit)
    return await list_rules(conn, team_id)
