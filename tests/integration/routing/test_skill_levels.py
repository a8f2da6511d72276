"""Skill levels against real PostgreSQL: a rule asks for a minimum level, members hold levels, decisions say which
rule chose the team and at which step the requirement matched."""

from __future__ import annotations

import uuid
from typing import Any

import httpx
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from service.db.transactions import in_transaction
from service.routing import placement
from service.routing.policies import merge_skills, next_skill_step, relaxed_skills, skill_ladder
from tests.factories import add_member, bearer, make_operator, make_team, personal_token
from tests.support.routing import make_conversation, rows


def test_levels_as_strings() -> None:
    assert skill_ladder(["fr:3", "billing"]) == {"fr", "fr:2", "fr:3", "billing"}
    assert merge_skills(["fr", "de:2"], ["fr:3", "de"]) == ("fr:3", "de:2")
    assert relaxed_skills(("fr:3", "de"), "exact") == ("fr:3", "de")
    assert relaxed_skills(("fr:3", "de"), "relaxed") == ("fr:2", "de")
    assert relaxed_skills(("fr:3", "de"), "any") == ()
    assert next_skill_step("exact", 60, 120) == ("relaxed", 60)
    assert next_skill_step("relaxed", 60, 120) == ("any", 120)
    assert next_skill_step("exact", None, 120) == ("any", 120)
    assert next_skill_step("exact", 120, 120) == ("any", 120)  # nothing to relax before any member may take it
    assert next_skill_step("exact", 60, None) == ("relaxed", 60)
    assert next_skill_step("relaxed", 60, None) is None
    assert next_skill_step("any", 60, 120) is None


async def add_rule(engine: AsyncEngine, team_id: uuid.UUID, name: str, skills: list[str], **conditions: Any) -> str:
    rule_id = uuid.uuid4()
    async with engine.begin() as conn:
        await conn.execute(
            sa.text(
                "INSERT INTO routing_rule (id, team_id, position, name, conditions, required_skills) "
                "VALUES (:id, :team, 0, :name, :conditions, :skills)"
            ).bindparams(sa.bindparam("conditions", type_=sa.JSON)),
            {"id": rule_id, "team": team_id, "name": name, "conditions": conditions, "skills": skills},
        )
    return str(rule_id)


async def test_a_rule_asks_for_a_minimum_level_and_the_decision_names_it(
    clean_db: AsyncEngine, http: httpx.AsyncClient
) -> None:
    team_id = await make_team(clean_db, routing_policy="round_robin")
    novice = await make_operator(clean_db, "Novice", status="online")
    expert = await make_operator(clean_db, "Expert", status="online")
    await add_member(clean_db, team_id, novice, skills=["fr:2", "billing"])
    await add_member(clean_db, team_id, expert, skills=["fr:4"])
    rule_id = await add_rule(clean_db, team_id, "French billing", ["fr:3"], language="fr")
    conversation_id, _ = await make_conversation(clean_db, session_metadata={"language": "fr"})
    outcome = await in_transaction(clean_db, lambda c: placement.route_conversation(c, conversation_id, 1, "test"))
    assert outcome == placement.RouteOutcome("assigned", team_id, expert)
    [decision] = await rows(clean_db, "SELECT skill_step, rule_id, rule_name, candidates FROM routing_decision")
    assert (decision["skill_step"], str(decision["rule_id"]), decision["rule_name"]) == (
        "exact",
        rule_id,
        "French billing",
    )
    by_id = {c["operatorId"]: c for c in decision["candidates"]}
    assert (by_id[str(novice)]["excluded"], by_id[str(novice)]["missingSkills"]) == ("missing_skill", ["fr:3"])
    assert by_id[str(expert)]["rank"] == 0
    response = await http.get(
        f"/api/v1/conversations/{conversation_id}/routing-decisions",
        headers=bearer(await personal_token(clean_db, expert)),
    )
    [public] = response.json()["items"]
    assert (public["skillStep"], public["ruleId"], public["ruleName"]) == ("exact", rule_id, "French billing")
    panel = await http.get(
        f"/app/conversations/{conversation_id}/routing", headers=bearer(await personal_token(clean_db, expert))
    )
    assert "Team chosen by the rule “French billing”." in panel.text
    assert "Matched at:" not in panel.text  # as asked
    [conv] = await rows(clean_db, "SELECT required_skills, skill_requirement, skill_step FROM conversation")
    assert conv == {"required_skills": ["fr:3"], "skill_requirement": ["fr:3"], "skill_step": "exact"}


async def test_a_plain_skill_is_level_one_in_sql_too(clean_db: AsyncEngine) -> None:
    async with clean_db.connect() as conn:
        ladder = await conn.scalar(sa.text("SELECT skill_ladder(ARRAY['fr:3', 'billing', 'de:1'])"))
    assert (
        sorted(ladder) == sorted(skill_ladder(["fr:3", "billing", "de:1"])) == ["billing", "de", "fr", "fr:2", "fr:3"]
    )
