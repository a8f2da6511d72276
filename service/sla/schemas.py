"""SLA policy bodies under ``/api/v1/teams/{teamId}/sla-policies``."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Literal

from pydantic import Field, model_validator

from service.schemas import ApiModel

# Bounds, shared with docs/teams.md.
MAX_TARGET_SECONDS = 366 * 86_400
MAX_ESCALATION_STEPS = 10

TargetSeconds = Annotated[
    int | None, Field(ge=1, le=MAX_TARGET_SECONDS, description="Seconds of business time; null: not tracked")
]
AtRiskShare = Annotated[
    float | None,
    Field(gt=0, lt=1, description="Share of a target after which it is at risk; null: the SLA_AT_RISK_SHARE setting"),
]
Priority = Annotated[
    int | None,
    Field(ge=-1000, le=1000, description="The conversation priority it covers; null: every priority without its own"),
]


class EscalationStep(ApiModel):
    """One step, run at a clock's at-risk moment or breach: ``reassign``, ``tell_leads`` or ``overflow``."""

    on: Literal["at_risk", "breached"]
    action: Literal["reassign", "tell_leads", "overflow"]
    team_id: uuid.UUID | None = Field(None, description="The overflow team (overflow only)")

    @model_validator(mode="after")
    def _team_for_overflow(self) -> EscalationStep:
        if (self.action == "overflow") != (self.team_id is not None):
            raise ValueError("teamId is required for overflow and only for overflow")
        return self


Escalation = Annotated[list[EscalationStep], Field(max_length=MAX_ESCALATION_STEPS)]


class SlaPolicyCreate(ApiModel):
    priority: Priority = None
    first_response_seconds: TargetSeconds = None
    next_response_seconds: TargetSeconds = None
    resolution_seconds: TargetSeconds = None
    at_risk_share: AtRiskShare = None
    escalation: Escalation = []


class SlaPolicyUpdate(ApiModel):
    """Only the fields given change; null clears a target, the priority or the share."""

    priority: Priority = None
    first_response_seconds: TargetSeconds = None
    next_response_seconds: TargetSeconds = None
    resolution_seconds: TargetSeconds = None
    at_risk_share: AtRiskShare = None
    escalation: Escalation | None = None


class SlaPolicyPublic(ApiModel):
    id: uuid.UUID
    team_id: uuid.UUID
    priority: int | None
    first_response_seconds: int | None
    next_response_seconds: int | None
    resolution_seconds: int | None
    at_risk_share: float | None
    escalation: list[EscalationStep]
    created_at: datetime
    updated_at: datetime


class SlaPolicyList(ApiModel):
    items: list[SlaPolicyPublic]
