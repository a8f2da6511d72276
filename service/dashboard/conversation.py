"""The conversation page's panels: transfer targets, AI state and "why was this routed here", in plain words."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection

from service.operators import services as operators
from service.routing.queries import decisions_for
from service.routing.schemas import CandidatePublic, RoutingDecisionPublic
from service.teams import services as teams
from service.teams.schemas import MemberPublic

# The "why" panel shows this many decisions, newest first; the REST API pages through all of them.
DECISIONS_SHOWN = 20

TRIGGERS = {
    "visitor_message": "the visitor wrote",
    "sweep": "periodic check",
    "claim": "claimed",
    "transfer": "transferred",
    "reopened": "reopened",
    "closed": "a slot freed when a conversation closed",
    "operator_online": "an operator came online",
    "membership": "team membership changed at sign-in",
    "member_added": "a member was added",
    "member_updated": "a member's capacity, role or skills changed",
    "team_settings": "the team's settings changed",
    "first_response_timeout": "nobody answered in time",
    "operator_offline": "the assignee went offline",
    "operator_deactivated": "the assignee was deactivated",
    "skill_relax": "it waited long enough for its skills to relax",
    "reoffer": "a timed-out operator may have it again",
    "sla_at_risk": "an SLA clock is at risk",
    "sla_breached": "an SLA deadline passed",
    "sla_escalation": "SLA escalation",
}
# How far the skill requirement had relaxed (docs/routing.md, "Skills").
SKILL_STEPS = {"relaxed": "skills a level lower", "any": "any member, whatever the skills"}


def trigger_words(trigger: str) -> str:
    return TRIGGERS.get(trigger, trigger.replace("_", " "))


def verdict_words(candidate: CandidatePublic) -> str:
    """Why the candidate was passed over, or their place in the ranking."""
    match candidate.excluded:
        case "not_member":
            return "not in the team"
        case "previous_assignee":
            return "it was taken from them earlier"
        case "offline":
            return "away" if candidate.status == "away" else "offline"
        case "missing_skill":
            if candidate.missing_skills:
                return "missing skill " + ", ".join(candidate.missing_skills)
            return "missing a required skill"
        case "at_capacity":
            return f"at capacity {candidate.open}/{candidate.capacity}"
    if candidate.busy:
        return "passed over: another assignment to them was in flight"
    if candidate.rank is None:
        return f"eligible, {candidate.open}/{candidate.capacity} open"
    return f"eligible, rank {candidate.rank + 1}, {candidate.open}/{candidate.capacity} open"


@dataclass(frozen=True)
class CandidateView:
    name: str
    verdict: str
    chosen: bool


@dataclass(frozen=True)
class DecisionView:
    """One routing decision as the panel words it."""

    created_at: datetime
    trigger: str
    policy: str
    outcome: str
    actor: str | None
    note: str | None
    candidates: list[CandidateView]
    # The rule that chose the team, when one did in this decision; the relaxed skill step, when not as asked.
    rule: str | None = None
    skill_step: str | None = None


def _shown_order(
    candidate: CandidatePublic, chosen: uuid.UUID | None, name: Callable[[uuid.UUID], str]
) -> tuple[int, int, str]:
    """The chosen operator first, then the others by rank, then the excluded ones by name."""
    if candidate.operator_id == chosen:
        return (0, 0, "")
    if candidate.rank is not None:
        return (1, candidate.rank, "")
    return (2, 0, name(candidate.operator_id))


async def decision_views(conn: AsyncConnection, conversation_id: str) -> list[DecisionView]:
    """The newest decisions about the conversation, newest first, with operators' names."""
    stored = await decisions_for(conn, conversation_id, limit=DECISIONS_SHOWN, newest_first=True)
    decisions = [RoutingDecisionPublic.model_validate(row) for row in stored]
    names = await operators.display_names(
        conn,
        [d.chosen_operator_id for d in decisions]
        + [d.actor_id for d in decisions]
        + [c.operator_id for d in decisions for c in d.candidates],
    )

    def name(operator_id: uuid.UUID) -> str:
        return names.get(operator_id, "former operator")

    return [
        DecisionView(
            created_at=d.created_at,
            trigger=trigger_words(d.trigger),
            policy=d.policy.replace("_", " "),
            outcome=f"assigned to {name(d.chosen_operator_id)}" if d.chosen_operator_id else "queued",
            actor=name(d.actor_id) if d.actor_id else None,
            note=d.reason,
            rule=d.rule_name,
            skill_step=SKILL_STEPS.get(d.skill_step or ""),
            candidates=[
                CandidateView(name(c.operator_id), verdict_words(c), c.operator_id == d.chosen_operator_id)
                for c in sorted(d.candidates, key=lambda c: _shown_order(c, d.chosen_operator_id, name))
            ],
        )
        for d in decisions
    ]


@dataclass(frozen=True)
class TransferTargets:
    """Who the conversation can go to: its team's members (with presence and load) and the other teams."""

    members: list[MemberPublic]
    teams: list[Any]


async def transfer_targets(conn: AsyncConnection, team_id: uuid.UUID | None) -> TransferTargets:
    """Every other team is a target: a transfer to a team is routed there by that team's policy."""
    members = await teams.list_members(conn, team_id) if team_id is not None else []
    return TransferTargets(members=members, teams=await teams.other_teams(conn, team_id))
