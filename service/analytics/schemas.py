"""Analytics response bodies: one model per metric, and the report that holds them all."""

from __future__ import annotations

import uuid
from datetime import datetime
from enum import StrEnum

from pydantic import Field

from service.schemas import ApiModel


class Metric(StrEnum):
    """The metric one CSV export holds (one table per file)."""

    SESSIONS_BY_DAY = "sessionsByDay"
    SESSIONS_BY_HOUR = "sessionsByHour"
    FIRST_RESPONSE = "firstResponse"
    TIME_TO_ASSIGNMENT = "timeToAssignment"
    REPLIES = "replies"
    TOP_PAGES = "topPages"
    PEAK_HOURS = "peakHours"
    OPERATOR_LOAD = "operatorLoad"
    FAIRNESS = "fairness"
    CSAT = "csat"
    CSAT_BY_TEAM = "csatByTeam"
    CSAT_BY_OPERATOR = "csatByOperator"
    SLA = "sla"
    SLA_BY_TEAM = "slaByTeam"


class SessionBucket(ApiModel):
    """Sessions started in one day or hour of the requested time zone (empty buckets included)."""

    start: datetime
    label: str  # the bucket's wall-clock start in the requested zone: "2026-11-24" or "2026-11-24T13:00"
    sessions: int


class DurationStats(ApiModel):
    """Seconds from a visitor's first message to an event (first reply, first assignment)."""

    conversations: int  # conversations with at least one visitor message
    measured: int  # of those, how many reached the event
    average_seconds: float | None
    p50_seconds: float | None
    p90_seconds: float | None


class ReplySplit(ApiModel):
    """Reply messages by sender: operators (human) against the AI."""

    human: int
    ai: int
    human_share: float | None
    ai_share: float | None


class PageCount(ApiModel):
    """A page (URL without query string or fragment) and how many sessions opened the chat there."""

    page: str
    sessions: int


class HeatmapCell(ApiModel):
    """Sessions started on an ISO weekday (1 = Monday) at an hour (0-23) of the requested zone."""

    weekday: int
    hour: int
    sessions: int


class OperatorLoad(ApiModel):
    """One operator's share of the work in the period."""

    operator_id: uuid.UUID
    display_name: str
    assignments: int
    conversations: int
    messages: int
    capacity: int | None  # the largest capacity among the selected teams; None when no longer a member
    assignments_per_slot: float | None


class Fairness(ApiModel):
    """How evenly assignments were spread (0 = perfectly even)."""

    operators: int
    mean_assignments: float | None
    coefficient_of_variation: float | None
    gini: float | None
    gini_per_slot: float | None


class LoadReport(ApiModel):
    """Per-operator load and the fairness of assignment across them."""

    operators: list[OperatorLoad]
    fairness: Fairness


class CsatStats(ApiModel):
    """Ratings asked for in the period (when conversations closed) and how many of them were given."""

    requested: int
    rated: int
    average_score: float | None  # of the given ratings, 1 to 5
    response_rate: float | None  # rated / requested


class CsatTeam(ApiModel):
    """One selected team's ratings (its conversations asked in the period)."""

    team_id: uuid.UUID
    name: str
    requested: int
    rated: int
    average_score: float | None
    response_rate: float | None


class CsatOperator(ApiModel):
    """The ratings that count for one operator: asked when a conversation they held closed."""

    operator_id: uuid.UUID
    display_name: str
    requested: int
    rated: int
    average_score: float | None
    response_rate: float | None


class CsatReport(ApiModel):
    """Visitor satisfaction: overall, per team and per operator."""

    overall: CsatStats
    teams: list[CsatTeam]
    operators: list[CsatOperator]


class SlaStats(ApiModel):
    """One SLA target's clocks (of conversations begun in the period) and the share that met it."""

    target: str
    tracked: int  # clocks started (a next-response clock once the visitor wrote after a reply)
    met: int  # stopped without ever passing the deadline
    missed: int  # past the deadline at least once (a next-response clock: in any cycle)
    running: int  # not stopped, not breached yet: not counted either way
    attainment: float | None  # met / (met + missed)


class SlaTeamStats(SlaStats):
    """One selected team's clocks of one target (the team that measured them)."""

    team_id: uuid.UUID
    name: str


class SlaReport(ApiModel):
    """SLA attainment per target, overall and per team."""

    overall: list[SlaStats]
    teams: list[SlaTeamStats]


class AnalyticsReport(ApiModel):
    """Every metric for the selected teams and period."""

    team_ids: list[uuid.UUID]
    tag_id: uuid.UUID | None = Field(description="Only conversations with this tag; null: all of them")
    start: datetime
    end: datetime
    tz: str
    sessions_by_day: list[SessionBucket]
    sessions_by_hour: list[SessionBucket]
    first_response: DurationStats
    time_to_assignment: DurationStats
    replies: ReplySplit
    top_pages: list[PageCount]
    peak_hours: list[HeatmapCell]
    operator_load: LoadReport
    csat: CsatReport
    sla: SlaReport
