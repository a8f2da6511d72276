"""API schemas for routing: claims, transfers, close/reopen results and routing decisions (camelCase)."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Literal

from pydantic import Field, model_validator

from service.schemas import ApiModel

ExclusionReason = Literal["not_member", "previous_assignee", "offline", "missing_skill", "at_capacity"]


class TransferCreate(ApiModel):
    """Hand a conversation to an operator of its team, or to another team; exactly one of the two."""

    operator_id: uuid.UUID | None = None
    team_id: uuid.UUID | None = None
    note: str | None = Field(
        default=None, min_length=1, max_length=10_000, description="Internal note; also the reason"
    )
    override_capacity: bool = Field(default=False, description="Leads only: assign even when the operator is full")

    @model_validator(mode="after")
    def _one_target(self) -> TransferCreate:
        if (self.operator_id is None) == (self.team_id is None):
            raise ValueError("give exactly one of operatorId and teamId")
        if self.override_capacity and self.operator_id is None:
            raise ValueError("overrideCapacity applies to a transfer to an operator")
        return self


class ConversationRoutingPublic(ApiModel):
    """A conversation's routing state after the action."""

    conversation_id: str
    status: Literal["new", "queued", "assigned", "closed"]
    team_id: uuid.UUID | None
    assignee_id: uuid.UUID | None
    routing_revision: int


class CandidatePublic(ApiModel):
    """One operator the decision considered: why they were excluded, or their rank (0 is best) and load."""

    operator_id: uuid.UUID
    status: str
    open: int
    capacity: int
    last_assigned_at: datetime | None = None
    excluded: ExclusionReason | None = None
    rank: int | None = None
    load: float | None = Field(default=None, description="open ÷ capacity (least_busy only)")
    busy: bool = Field(default=False, description="Passed over: another assignment to them was in flight")
    missing_skills: list[str] = Field(
        default_factory=list, description="The required skills they lack (missing_skill only)"
    )


class RoutingDecisionPublic(ApiModel):
    """One routing decision, as stored in the transaction that acted on it."""

    id: int
    team_id: uuid.UUID | None
    policy: str
    trigger: str
    outcome: Literal["assigned", "queued", "unchanged"] = Field(
        description="unchanged: an audit entry for a step that moved nothing (an SLA moment, leads told)"
    )
    chosen_operator_id: uuid.UUID | None
    actor_id: uuid.UUID | None
    reason: str | None
    candidates: list[CandidatePublic]
    skill_step: Literal["exact", "relaxed", "any"] | None = Field(
        default=None,
        description="How far the skill requirement had relaxed with the wait: as asked, a level lower, none",
    )
    rule_id: uuid.UUID | None = Field(default=None, description="The routing rule that chose the team, if one did here")
    rule_name: str | None = Field(default=None, description="That rule's name when it applied")
    created_at: datetime


class RoutingDecisionPage(ApiModel):
    """A page of decisions, oldest first; pass ``nextCursor`` as ``cursor`` for the next page."""

    items: list[RoutingDecisionPublic]
    next_cursor: str | None
