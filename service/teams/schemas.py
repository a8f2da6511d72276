"""API schemas for teams, memberships, routing rules and bridge settings (camelCase on the wire)."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BeforeValidator,
    ConfigDict,
    Field,
    StringConstraints,
    WithJsonSchema,
    field_validator,
)

from service.db.models import DEFAULT_ATTACHMENT_MAX_BYTES, DEFAULT_ATTACHMENT_TYPES, MAX_ATTACHMENT_BYTES
from service.hours import calendar
from service.schemas import ApiModel

# Bounds, shared with docs/teams.md.
MAX_CAPACITY = 1000
MAX_DELAY_SECONDS = 86_400  # one day: longer delays are configuration mistakes, not policies
MAX_SKILLS = 50
MAX_RULES = 100

Policy = Literal["round_robin", "least_busy", "manual"]
OfflinePolicy = Literal["keep", "requeue", "reassign"]
OutsideHours = Literal["wait", "overflow", "ai"]
Weekday = Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
Role = Literal["lead", "operator"]


def lowercase(value: Any) -> Any:
    return value.strip().lower() if isinstance(value, str) else value


def _unique(values: list[str]) -> list[str]:
    return list(dict.fromkeys(values))


def _no_nul(value: str) -> str:
    # PostgreSQL text and JSONB cannot hold NUL: refuse it here, naming the field, not with a 500.
    if "\x00" in value:
        raise ValueError("must not contain NUL characters")
    return value


NoNul = AfterValidator(_no_nul)


Skill = Annotated[str, BeforeValidator(lowercase), StringConstraints(pattern=r"^[a-z0-9][a-z0-9_.\-]{0,49}$")]
Skills = Annotated[list[Skill], Field(max_length=MAX_SKILLS), AfterValidator(_unique)]
TeamName = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=80), NoNul]
Capacity = Annotated[int, Field(ge=0, le=MAX_CAPACITY)]
Seconds = Annotated[int, Field(ge=1, le=MAX_DELAY_SECONDS)]
WelcomeMessage = Annotated[str, StringConstraints(min_length=1, max_length=2000), NoNul]
AiPrompt = Annotated[str, StringConstraints(min_length=1, max_length=20_000), NoNul]
QueueThreshold = Annotated[int, Field(ge=1, le=10_000)]
EditWindow = Annotated[int, Field(ge=0, le=MAX_DELAY_SECONDS)]
AttachmentBytes = Annotated[int, Field(ge=1, le=MAX_ATTACHMENT_BYTES)]
MimeType = Annotated[
    str, BeforeValidator(lowercase), StringConstraints(pattern=r"^[a-z0-9][a-z0-9.+-]*/[a-z0-9][a-z0-9.+-]*$")
]
AttachmentTypes = Annotated[list[MimeType], Field(max_length=50), AfterValidator(_unique)]


# --- Business hours: the JSON form of service.hours.calendar, checked by its parser -----------------------------


def _checked(parse: Any) -> Any:
    """A calendar parser as a pydantic validator: its error message, at the field pydantic is validating."""

    def validate(value: Any) -> Any:
        try:
            return parse(value)
        except calendar.ScheduleError as exc:
            raise ValueError(exc.detail) from None

    return AfterValidator(validate)


def _interval(text: str) -> str:
    parsed = calendar.parse_interval(text)
    if parsed is None:
        raise ValueError("must be 'HH:MM-HH:MM' (24:00 ends at midnight) with the start before the end")
    return calendar.format_interval(parsed)


def _day(intervals: list[str]) -> list[str]:
    return [calendar.format_interval(i) for i in calendar.parse_day("day", intervals)]


def _holidays(holidays: list[str]) -> list[str]:
    return calendar.holiday_texts(calendar.parse_holidays(holidays))


TimeZone = Annotated[str, StringConstraints(min_length=1, max_length=64), _checked(calendar.parse_zone)]
OpenInterval = Annotated[str, StringConstraints(max_length=11), AfterValidator(_interval)]
DayHours = Annotated[list[OpenInterval], Field(max_length=calendar.MAX_INTERVALS_PER_DAY), _checked(_day)]
Holidays = Annotated[list[Annotated[str, StringConstraints(max_length=21)]], _checked(_holidays)]


class BusinessHours(ApiModel):
    """A team's open hours: intervals per weekday in its time zone, and holidays (closed all day)."""

    model_config = ConfigDict(extra="forbid")

    time_zone: TimeZone = Field(description="IANA time zone, e.g. Europe/Paris")
    weekly: dict[Weekday, DayHours] = Field(
        default_factory=dict,
        description="Open intervals per weekday, 'HH:MM-HH:MM' local time, not overlapping; no intervals at all = "
        "open all day every day",
    )
    holidays: Holidays = Field(
        default_factory=list, description="Closed days: 'YYYY-MM-DD' or an inclusive range 'YYYY-MM-DD/YYYY-MM-DD'"
    )

    def document(self) -> dict[str, Any]:
        """The stored form (days in week order, intervals and holidays sorted)."""
        return calendar.schedule_document(self.schedule())

    def schedule(self) -> calendar.Schedule:
        """The calendar this describes."""
        return calendar.parse_schedule(self.model_dump(by_alias=True))


def not_null(value: Any) -> Any:
    """In a PATCH, ``null`` clears an optional setting; for a required one it is an error naming the field."""
    if value is None:
        raise ValueError("may not be null; leave the field out to keep its value")
    return value


class TeamSettings(ApiModel):
    """Every team setting with its default; ``TeamCreate`` takes them all, ``TeamUpdate`` any subset."""

    routing_policy: Policy = Field(default="manual", description="How queued conversations reach operators")
    default_capacity: Capacity = Field(
        default=5, description="Open conversations per member unless the membership overrides it; 0 = none"
    )
    welcome_message: WelcomeMessage | None = None
    ai_enabled: bool = False
    ai_system_prompt: AiPrompt | None = None
    ai_takeover_delay_seconds: Seconds = Field(default=120, description="Wait before the AI answers")
    first_response_timeout_seconds: Seconds | None = Field(
        default=None, description="Reassign when the assignee has not replied within this; null = never"
    )
    offline_policy: OfflinePolicy = Field(default="keep", description="What happens to an offline assignee's chats")
    offline_grace_seconds: Seconds = Field(default=300, description="How long an assignee may be offline first")
    queue_alert_threshold: QueueThreshold | None = Field(default=None, description="Alert when the queue is longer")
    message_edit_window_seconds: EditWindow = Field(
        default=900, description="How long operators may edit or delete their own messages; 0 = never"
    )
    csat_enabled: bool = Field(default=False, description="Ask the visitor for a rating when a conversation closes")
    attachment_max_bytes: AttachmentBytes = Field(
        default=DEFAULT_ATTACHMENT_MAX_BYTES, description="Largest file accepted in the team's conversations"
    )
    attachment_types: AttachmentTypes = Field(
        default_factory=lambda: list(DEFAULT_ATTACHMENT_TYPES),
        description="MIME types accepted, checked against the file's bytes; [] = no files",
    )
    auto_away_minutes: int | None = Field(
        default=None, ge=1, le=1440, description="Members' web and mobile clients idle this long count as away"
    )
    business_hours: BusinessHours | None = Field(default=None, description="When the team answers; null = 24/7")
    outside_hours: OutsideHours = Field(
        default="wait",
        description="New conversations while closed: wait in the queue, overflow to outsideHoursTeamId, or the AI",
    )
    outside_hours_team_id: uuid.UUID | None = Field(default=None, description="The overflow team outside hours")
    offline_message: WelcomeMessage | None = Field(
        default=None, description="What the widget says while the team is closed, instead of the welcome message"
    )


class TeamCreate(TeamSettings):
    name: TeamName
    is_default: bool = Field(default=False, description="Conversations no rule matches go here (one team)")


class TeamUpdate(ApiModel):
    """Change some settings; absent fields stay, ``null`` clears an optional one."""

    name: TeamName | None = None
    is_default: bool | None = None
    routing_policy: Policy | None = None
    default_capacity: Capacity | None = None
    welcome_message: WelcomeMessage | None = None
    ai_enabled: bool | None = None
    ai_system_prompt: AiPrompt | None = None
    ai_takeover_delay_seconds: Seconds | None = None
    first_response_timeout_seconds: Seconds | None = None
    offline_policy: OfflinePolicy | None = None
    offline_grace_seconds: Seconds | None = None
    queue_alert_threshold: QueueThreshold | None = None
    message_edit_window_seconds: EditWindow | None = None
    csat_enabled: bool | None = None
    attachment_max_bytes: AttachmentBytes | None = None
    attachment_types: AttachmentTypes | None = None
    auto_away_minutes: int | None = Field(default=None, ge=1, le=1440)
    business_hours: BusinessHours | None = None
    outside_hours: OutsideHours | None = None
    outside_hours_team_id: uuid.UUID | None = None
    offline_message: WelcomeMessage | None = None

    _required = field_validator(
        "name",
        "is_default",
        "routing_policy",
        "default_capacity",
        "ai_enabled",
        "ai_takeover_delay_seconds",
        "offline_policy",
        "offline_grace_seconds",
        "message_edit_window_seconds",
        "csat_enabled",
        "attachment_max_bytes",
        "attachment_types",
        "outside_hours",
    )(not_null)


class TeamPublic(TeamSettings):
    id: uuid.UUID
    name: str
    is_default: bool
    created_at: datetime
    member_count: int
    bridges: BridgesPublic | None = Field(
        default=None, description="Leads and admins only (null for other members); secrets are never returned"
    )


class TeamPage(ApiModel):
    """A page of teams by name; pass ``nextCursor`` as ``cursor`` for the next page."""

    items: list[TeamPublic]
    next_cursor: str | None


# --- Members --------------------------------------------------------------------------------------------------


class MemberCreate(ApiModel):
    operator_id: uuid.UUID
    role: Role = "operator"
    capacity: Capacity | None = Field(default=None, description="Overrides the team's defaultCapacity; null = default")
    skills: Skills = Field(default_factory=list)


class MemberUpdate(ApiModel):
    """Change some of a membership; ``capacity: null`` returns to the team default."""

    role: Role | None = None
    capacity: Capacity | None = None
    skills: Skills | None = None

    _required = field_validator("role", "skills")(not_null)


class MemberPublic(ApiModel):
    operator_id: uuid.UUID
    display_name: str
    email: str | None
    role: Role
    capacity: int | None
    effective_capacity: int = Field(description="capacity, or the team's defaultCapacity")
    skills: list[str]
    status: str
    status_changed_at: datetime | None = Field(description="Since when the member has had this status")
    open_conversations: int
    last_assigned_at: datetime | None
    created_at: datetime


class MemberList(ApiModel):
    items: list[MemberPublic]


# --- Routing rules --------------------------------------------------------------------------------------------
# The stored ``conditions`` JSON is exactly this shape; service/routing/policies.py evaluates it.


def _uppercase(value: Any) -> Any:
    return value.strip().upper() if isinstance(value, str) else value


def _as_list(value: Any) -> Any:
    return [value] if isinstance(value, str) else value


Language = Annotated[str, BeforeValidator(lowercase), StringConstraints(pattern=r"^[a-z]{2,3}(-[a-z0-9]{2,8})*$")]
Country = Annotated[str, BeforeValidator(_uppercase), StringConstraints(pattern=r"^[A-Z]{2}$")]
FieldName = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_.\-]{1,64}$")]


def _scalar(value: Any) -> Any:
    if isinstance(value, str) and len(value) > 500:
        raise ValueError("at most 500 characters")
    if isinstance(value, str):
        _no_nul(value)
    if not isinstance(value, str | bool | int | float):
        raise ValueError("must be a string (a glob), a number or a boolean")
    return value


FieldValue = Annotated[
    Any,
    AfterValidator(_scalar),
    WithJsonSchema({"oneOf": [{"type": "string", "maxLength": 500}, {"type": "number"}, {"type": "boolean"}]}),
]
FieldConditions = Annotated[dict[FieldName, FieldValue], Field(max_length=20)]


class RuleConditions(ApiModel):
    """All given conditions must hold; a rule with none matches every conversation."""

    model_config = ConfigDict(extra="forbid")

    url: Annotated[str, StringConstraints(min_length=1, max_length=2000), NoNul] | None = Field(
        default=None, description="Glob on the page URL (*, ?, [...]), e.g. https://shop.example/*"
    )
    language: Annotated[list[Language], BeforeValidator(_as_list), Field(min_length=1, max_length=20)] | None = Field(
        default=None, description="Any of these (lowercase); 'fr' also matches 'fr-ca'"
    )
    country: Annotated[list[Country], BeforeValidator(_as_list), Field(min_length=1, max_length=50)] | None = Field(
        default=None, description="Any of these ISO 3166-1 alpha-2 codes (uppercase)"
    )
    identity: FieldConditions | None = Field(
        default=None, description="Visitor identity fields: strings are globs, other values must be equal"
    )
    metadata: FieldConditions | None = Field(
        default=None, description="Session metadata fields: strings are globs, other values must be equal"
    )


class RuleCreate(ApiModel):
    model_config = ConfigDict(extra="forbid")

    name: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=100), NoNul]
    enabled: bool = True
    conditions: RuleConditions = Field(default_factory=RuleConditions)
    set_priority: Annotated[int, Field(ge=-1000, le=1000)] | None = Field(
        default=None, description="Queue priority of matched conversations (higher first); null keeps it"
    )
    required_skills: Skills = Field(default_factory=list, description="Added to the conversation's required skills")


class RulesReplace(ApiModel):
    """The team's complete rule list, in evaluation order."""

    rules: Annotated[list[RuleCreate], Field(max_length=MAX_RULES)]


class RulePublic(RuleCreate):
    id: uuid.UUID
    position: int = Field(description="0 is evaluated first")
    created_at: datetime


class RuleList(ApiModel):
    items: list[RulePublic]


# --- Bridge settings ------------------------------------------------------------------------------------------
# Secrets are write-only: absent keeps the stored one, null removes it, a string replaces it.

Secret = Annotated[str, StringConstraints(min_length=8, max_length=512, pattern=r"^[\x21-\x7e]+$")]
Snowflake = Annotated[str, StringConstraints(pattern=r"^\d{15,25}$")]


class TelegramUpdate(ApiModel):
    enabled: bool = False
    chat_id: Annotated[str, StringConstraints(pattern=r"^-?\d{1,20}$")] | None = Field(
        default=None, description="The group (forum) the team's conversations go to"
    )
    bot_token: Secret | None = Field(default=None, description="Write-only")
    webhook_secret: Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_-]{16,256}$")] | None = Field(
        default=None,
        description="Write-only: the secret_token given to Telegram's setWebhook; inbound updates without it get 401",
    )


class DiscordUpdate(ApiModel):
    enabled: bool = False
    channel_id: Snowflake | None = None
    application_id: Snowflake | None = None
    public_key: Annotated[str, StringConstraints(pattern=r"^[0-9a-f]{64}$")] | None = Field(
        default=None, description="The application's Ed25519 public key (hex); not a secret"
    )
    bot_token: Secret | None = Field(default=None, description="Write-only")


class SlackUpdate(ApiModel):
    enabled: bool = False
    channel_id: Annotated[str, StringConstraints(pattern=r"^[CGD][A-Z0-9]{6,20}$")] | None = None
    bot_token: Secret | None = Field(default=None, description="Write-only (xoxb-...)")
    signing_secret: Secret | None = Field(default=None, description="Write-only")


class BridgesUpdate(ApiModel):
    """Per bridge: absent leaves it as it is, ``null`` removes it, an object replaces its non-secret settings."""

    telegram: TelegramUpdate | None = None
    discord: DiscordUpdate | None = None
    slack: SlackUpdate | None = None


class TelegramPublic(ApiModel):
    enabled: bool
    chat_id: str | None
    bot_token_configured: bool
    webhook_secret_configured: bool


class DiscordPublic(ApiModel):
    enabled: bool
    channel_id: str | None
    application_id: str | None
    public_key: str | None
    bot_token_configured: bool


class SlackPublic(ApiModel):
    enabled: bool
    channel_id: str | None
    bot_token_configured: bool
    signing_secret_configured: bool


class BridgesPublic(ApiModel):
    """A team's bridges as stored; secrets appear only as ``...Configured`` flags."""

    telegram: TelegramPublic | None = None
    discord: DiscordPublic | None = None
    slack: SlackPublic | None = None


TeamPublic.model_rebuild()
