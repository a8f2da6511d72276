"""Simulation request and response bodies (camelCase on the wire)."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any, Literal

from pydantic import Field

from service.schemas import ApiModel
from service.teams.schemas import MAX_DELAY_SECONDS, BusinessHours, Capacity, Skills

# Policies a replay can run: under ``manual`` people claim, and history cannot say whom they would have.
SimulatedPolicy = Literal["round_robin", "least_busy"]
MAX_DRAFT_MEMBERS = 1000


class MemberDraft(ApiModel):
    """One member's draft settings; a field left out keeps the member's current value."""

    operator_id: uuid.UUID
    # null: the draft's defaultCapacity (as a member's null capacity means the team default).
    capacity: Capacity | None = None
    skills: Skills | None = None


class Draft(ApiModel):
    """The team settings to replay the period against; anything left out is the team's current setting."""

    routing_policy: SimulatedPolicy | None = None
    default_capacity: Capacity | None = None
    members: list[MemberDraft] = Field(default_factory=list, max_length=MAX_DRAFT_MEMBERS)
    first_response_target_seconds: int | None = Field(
        default=None, ge=1, le=MAX_DELAY_SECONDS, description="SLA target: assigned within this many seconds"
    )
    business_hours: BusinessHours | None = Field(
        default=None,
        description="Hours to replay with (as the team setting; no intervals: 24/7); outside them the queue waits",
    )
    # SLA policies are not replayed yet; a draft naming them is refused, naming the field.
    sla: Any = Field(default=None, description="Not simulated yet: must be left out")


class SimulationCreate(ApiModel):
    """A period of the team's history, ``[from, to)``, and the draft to replay it against."""

    start: datetime = Field(alias="from", description="Start of the period (inclusive); no offset: UTC")
    end: datetime = Field(alias="to", description="End of the period (exclusive); no offset: UTC")
    draft: Draft = Field(default_factory=Draft)


class MemberSettings(ApiModel):
    """A member's settings as replayed (draft over current)."""

    operator_id: uuid.UUID
    display_name: str
    capacity: int
    skills: list[str]


class DraftResolved(ApiModel):
    """The settings the replay ran with: the draft, filled in from the team's current settings."""

    routing_policy: str
    default_capacity: int
    first_response_target_seconds: int | None
    business_hours: dict[str, Any] | None = Field(description="The hours replayed; null: open 24/7")
    members: list[MemberSettings]


class Waits(ApiModel):
    """Seconds from the visitor's first message to the first assignment, over the conversations assigned."""

    answered: int
    average_seconds: float | None
    p50_seconds: float | None
    p90_seconds: float | None
    p99_seconds: float | None


class OperatorFigures(ApiModel):
    """Conversations one operator was given (first assignments in the team) and their capacity."""

    operator_id: uuid.UUID
    display_name: str
    assignments: int
    capacity: int | None
    assignments_per_slot: float | None


class Figures(ApiModel):
    """One side of the comparison: what happened, or what the draft would have done."""

    arrivals: int
    waits: Waits
    sla_attainment: float | None = Field(description="Share of arrivals assigned within the target; null without one")
    abandoned: int = Field(description="Visitors who left before anyone was assigned")
    abandonment_rate: float | None
    unanswered: int = Field(description="Still waiting at the end of the period")
    operators: list[OperatorFigures]
    jain_index: float | None = Field(
        description="Jain's fairness index of assignments per capacity slot: 1 = even, 1/n = one operator took all"
    )


class SimulationPublic(ApiModel):
    """The draft's figures beside the real ones for the same arrivals, presence and handling times."""

    team_id: uuid.UUID
    start: datetime = Field(serialization_alias="from")
    end: datetime = Field(serialization_alias="to")
    draft: DraftResolved
    real: Figures
    simulated: Figures
