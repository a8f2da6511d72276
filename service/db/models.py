"""SQLModel tables for the whole routing domain (PostgreSQL is the source of truth)."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import ARRAY, JSONB
from sqlmodel import Field, SQLModel

TZ = sa.DateTime(timezone=True)
NOW = {"server_default": sa.func.now(), "nullable": False}


def _in(column: str, values: tuple[str, ...]) -> str:
    quoted = ", ".join(f"'{v}'" for v in values)
    return f"{column} IN ({quoted})"


OPERATOR_STATUSES = ("online", "away", "offline")
ROLES = ("lead", "operator")
POLICIES = ("round_robin", "least_busy", "manual", "pooled")
# How far a conversation's skill requirement has relaxed with its waiting time (docs/routing.md, "Skills").
SKILL_STEPS = ("exact", "relaxed", "any")
OFFLINE_POLICIES = ("keep", "requeue", "reassign")
# What a closed team does with a new conversation: keep it queued, send it to another team, or let the AI answer.
OUTSIDE_HOURS = ("wait", "overflow", "ai")
# new: a session that has not asked for help yet; it is routed on its first visitor message.
CONVERSATION_STATUSES = ("new", "queued", "assigned", "closed")
SENDERS = ("visitor", "operator", "ai", "system")
MESSAGE_STATUSES = ("sending", "sent", "delivered", "read")
# hours_open: a team's hours begin (its queue is routed); sla: an SLA clock's at-risk or breach moment;
# reoffer: an exclusion expires; skill_relax: a conversation's skill requirement steps down.
TIMER_KINDS = (
    "first_response",
    "offline_grace",
    "ai_takeover",
    "csat_request",
    "presence_lapse",
    "hours_open",
    "sla",
    "reoffer",
    "skill_relax",
)
CLIENT_KINDS = ("web", "mobile", "bridge", "api")
CLIENT_STATUSES = ("online", "away")
CHOSEN_STATUSES = ("away", "offline")
TIMER_STATES = ("pending", "fired", "cancelled")
ATTACHMENT_STATUSES = ("pending", "uploading", "ready", "failed")
# A team's attachment limits unless it sets its own: PocketPing's (10 MiB; images, PDF, text, CSV).
DEFAULT_ATTACHMENT_MAX_BYTES = 10 * 1024 * 1024
# No team may accept larger files (an upload is read into memory whole).
MAX_ATTACHMENT_BYTES = 100 * 1024 * 1024
DEFAULT_ATTACHMENT_TYPES = ("image/jpeg", "image/png", "image/gif", "image/webp", "application/pdf", "text/plain")
# pending: asked, not taken up yet; uploading: the widget got its upload URL; done: the image is stored.
SCREENSHOT_STATUSES = ("pending", "uploading", "done")
MACRO_ACTIONS = ("none", "assign", "transfer", "close")
# Who put a tag on a conversation: an operator (dashboard or API), a routing rule, a macro.
TAG_SOURCES = ("operator", "rule", "macro")


class Operator(SQLModel, table=True):
    """A person who answers conversations; created at first SSO sign-in."""

    __table_args__ = (
        sa.CheckConstraint(_in("status", OPERATOR_STATUSES), name="status"),
        sa.CheckConstraint(_in("chosen_status", CHOSEN_STATUSES), name="chosen_status"),
    )

    id: uuid.UUID = Field(default_factory=uuid.uuid4, primary_key=True)
    subject: str = Field(unique=True, description="OIDC 'sub' at the issuer")
    email: str | None = Field(default=None, index=True)
    display_name: str
    is_admin: bool = Field(default=False, sa_column_kwargs={"server_default": sa.false()})
    # What routing reads: the operator's clients' presence, unless ``chosen_status`` says otherwise.
    status: str = Field(default="offline", sa_column_kwargs={"server_default": "offline"})
    status_changed_at: datetime | None = Field(default=None, sa_type=TZ)
    # away or offline as the operator chose it: holds, whatever their clients do, until they choose online.
    chosen_status: str | None = Field(default=None)
    last_heartbeat_at: datetime | None = Field(default=None, sa_type=TZ)
    # Open assigned conversations; changed only in the same transaction as the assignment so
    # a conditional UPDATE on this row is the capacity check.
    open_conversations: int = Field(default=0, sa_column_kwargs={"server_default": "0"})
    created_at: datetime | None = Field(default=None, sa_type=TZ, sa_column_kwargs=NOW)
    deactivated_at: datetime | None = Field(default=None, sa_type=TZ)
    # The SCIM User the identity provider provisioned (docs/scim.md); None for operators it never sent.
    scim: dict[str, Any] | None = Field(default=None, sa_type=JSONB)
    # Its userName, lower-cased: SCIM userNames are unique whatever their case.
    scim_user_name: str | None = Field(default=None, unique=True)


class IdempotentAction(SQLModel, table=True):
    """The answer a routing action (claim, transfer, close) gave under an operator's ``Idempotency-Key``.

    Written in the action's own transaction, so a retry after a lost answer finds exactly what was done.
    """

    __tablename__ = "idempotent_action"

    operator_id: uuid.UUID = Field(foreign_key="operator.id", ondelete="CASCADE", primary_key=True)
    key: str = Field(primary_key=True, max_length=255)
    # The operation, conversation and body the key was first used for; another use of it is a 409.
    request_hash: str = Field(max_length=64)
    response: dict[str, Any] = Field(sa_type=JSONB)
    created_at: datetime | None = Field(default=None, sa_type=TZ, sa_column_kwargs=NOW)


class PresenceClient(SQLModel, table=True):
    """One client of an operator (a dashboard tab, a mobile app, a chat bridge account, a script): a presence session.

    The operator is online while some live client is online; a client with ``expires_at`` lives while it is
    renewed (an open event stream, heartbeats), one without it until it is ended (bridge, api).
    """

    __tablename__ = "presence_client"
    __table_args__ = (
        sa.CheckConstraint(_in("kind", CLIENT_KINDS), name="kind"),
        sa.CheckConstraint(_in("status", CLIENT_STATUSES), name="status"),
    )

    operator_id: uuid.UUID = Field(foreign_key="operator.id", ondelete="CASCADE", primary_key=True)
    client_id: str = Field(primary_key=True, max_length=100)
    kind: str
    status: str = Field(default="online")
    # The browser session (a hash of its cookie) of a web client: signing out ends its clients.
    session_key: str | None = None
    # The event stream holding the client, so a stream closing after a newer one opened ends nothing.
    connection_id: str | None = None
    created_at: datetime | None = Field(default=None, sa_type=TZ, sa_column_kwargs=NOW)
    last_seen_at: datetime | None = Field(default=None, sa_type=TZ, sa_column_kwargs=NOW)
    last_active_at: datetime | None = Field(default=None, sa_type=TZ, sa_column_kwargs=NOW)
    expires_at: datetime | None = Field(default=None, sa_type=TZ, index=True)


class Team(SQLModel, table=True):
    """A support team with its routing, AI and offline configuration."""

    __table_args__ = (
        sa.CheckConstraint(_in("routing_policy", POLICIES), name="routing_policy"),
        sa.CheckConstraint(_in("offline_policy", OFFLINE_POLICIES), name="offline_policy"),
        sa.CheckConstraint(_in("outside_hours", OUTSIDE_HOURS), name="outside_hours"),
        # At most one default team.
        sa.Index("uq_team_default", "is_default", unique=True, postgresql_where=sa.text("is_default")),
    )

    id: uuid.UUID = Field(default_factory=uuid.uuid4, primary_key=True)
    name: str = Field(unique=True)
    # The externalId the identity provider gave the team's SCIM Group.
    scim_external_id: str | None = None
    is_default: bool = Field(default=False, sa_column_kwargs={"server_default": sa.false()})
    routing_policy: str = Field(default="manual", sa_column_kwargs={"server_default": "manual"})
    default_capacity: int = Field(default=5, sa_column_kwargs={"server_default": "5"})
    welcome_message: str | None = None
    ai_enabled: bool = Field(default=False, sa_column_kwargs={"server_default": sa.false()})
    ai_system_prompt: str | None = None
    ai_takeover_delay_seconds: int = Field(default=120, sa_column_kwargs={"server_default": "120"})
    first_response_timeout_seconds: int | None = None
    # A waiting conversation's skill levels drop by one after this long, and any member may take it after the
    # other; null = never.
    skill_relax_after_seconds: int | None = None
    skill_any_member_after_seconds: int | None = None
    # An operator a first-response timeout took a conversation from may be offered it again after this; null = never.
    reoffer_after_seconds: int | None = None
    offline_policy: str = Field(default="keep", sa_column_kwargs={"server_default": "keep"})
    offline_grace_seconds: int = Field(default=300, sa_column_kwargs={"server_default": "300"})
    queue_alert_threshold: int | None = None
    # How long an operator may edit or delete their own message after sending it; 0 = never.
    message_edit_window_seconds: int = Field(default=900, sa_column_kwargs={"server_default": "900"})
    # Ask the visitor for a rating when a conversation closes.
    csat_enabled: bool = Field(default=False, sa_column_kwargs={"server_default": sa.false()})
    # Tell queued visitors their position and estimated wait (service/routing/queue_notices.py).
    queue_notices: bool = Field(default=True, sa_column_kwargs={"server_default": sa.true()})
    # A member's web and mobile clients without activity for this long count as away; null = never.
    auto_away_minutes: int | None = None
    bridge_settings: dict[str, Any] = Field(
        default_factory=dict, sa_type=JSONB, sa_column_kwargs={"server_default": "{}"}
    )
    # Files in this team's conversations: at most this many bytes each, of these (sniffed) types.
    attachment_max_bytes: int = Field(
        default=DEFAULT_ATTACHMENT_MAX_BYTES, sa_column_kwargs={"server_default": str(DEFAULT_ATTACHMENT_MAX_BYTES)}
    )
    attachment_types: list[str] = Field(
        default_factory=lambda: list(DEFAULT_ATTACHMENT_TYPES),
        sa_type=ARRAY(sa.Text),
        sa_column_kwargs={"server_default": "{" + ",".join(DEFAULT_ATTACHMENT_TYPES) + "}"},
    )
    # Business hours as the API shows them ({timeZone, weekly, holidays}, service.hours.calendar); null = 24/7.
    business_hours: dict[str, Any] | None = Field(default=None, sa_type=JSONB)
    outside_hours: str = Field(default="wait", sa_column_kwargs={"server_default": "wait"})
    outside_hours_team_id: uuid.UUID | None = Field(default=None, foreign_key="team.id", ondelete="SET NULL")
    # What the widget says while the team is closed (the welcome message's stand-in).
    offline_message: str | None = None
    created_at: datetime | None = Field(default=None, sa_type=TZ, sa_column_kwargs=NOW)


class TeamMember(SQLModel, table=True):
    """Membership of an operator in a team, with role, capacity override and skills."""

    __tablename__ = "team_member"
    __table_args__ = (sa.CheckConstraint(_in("role", ROLES), name="role"),)

    team_id: uuid.UUID = Field(foreign_key="team.id", primary_key=True, ondelete="CASCADE")
    operator_id: uuid.UUID = Field(foreign_key="operator.id", primary_key=True, ondelete="CASCADE", index=True)
    role: str = Field(default="operator", sa_column_kwargs={"server_default": "operator"})
    capacity: int | None = Field(default=None, description="Overrides the team's default capacity")
    skills: list[str] = Field(default_factory=list, sa_type=ARRAY(sa.Text), sa_column_kwargs={"server_default": "{}"})
    last_assigned_at: datetime | None = Field(default=None, sa_type=TZ)
    created_at: datetime | None = Field(default=None, sa_type=TZ, sa_column_kwargs=NOW)


class RoutingRule(SQLModel, table=True):
    """An ordered rule choosing a team; conditions match page URL, language, country, identity, metadata."""

    __tablename__ = "routing_rule"

    id: uuid.UUID = Field(default_factory=uuid.uuid4, primary_key=True)
    team_id: uuid.UUID = Field(foreign_key="team.id", ondelete="CASCADE", index=True)
    position: int = Field(index=True)
    name: str
    conditions: dict[str, Any] = Field(default_factory=dict, sa_type=JSONB)
    set_priority: int | None = None
    required_skills: list[str] = Field(
        default_factory=list, sa_type=ARRAY(sa.Text), sa_column_kwargs={"server_default": "{}"}
    )
    enabled: bool = Field(default=True, sa_column_kwargs={"server_default": sa.true()})
    # Tags of the rule's team put on a conversation this rule places in that team.
    set_tags: list[uuid.UUID] = Field(
        default_factory=list, sa_type=ARRAY(sa.Uuid), sa_column_kwargs={"server_default": "{}"}
    )
    created_at: datetime | None = Field(default=None, sa_type=TZ, sa_column_kwargs=NOW)


class Conversation(SQLModel, table=True):
    """A PocketPing session plus its routing state (team, assignee, queue position, AI state)."""

    __table_args__ = (
        sa.CheckConstraint(_in("status", CONVERSATION_STATUSES), name="status"),
        sa.CheckConstraint(_in("skill_step", SKILL_STEPS), name="skill_step"),
        # The team queue: priority first, then who has waited longest.
        sa.Index(
            "ix_conversation_queue",
            "team_id",
            sa.text("priority DESC"),
            "waiting_since",
            postgresql_where=sa.text("status = 'queued'"),
        ),
        # Inboxes: an operator's open conversations, newest activity first.
        sa.Index(
            "ix_conversation_assignee_open",
            "assignee_id",
            sa.text("last_activity DESC"),
            postgresql_where=sa.text("status = 'assigned'"),
        ),
        sa.Index("ix_conversation_team_status", "team_id", "status", sa.text("last_activity DESC")),
        sa.Index("ix_conversation_visitor", "visitor_id", sa.text("last_activity DESC")),
    )

    id: str = Field(primary_key=True, description="The PocketPing session id")
    visitor_id: str
    team_id: uuid.UUID | None = Field(default=None, foreign_key="team.id", ondelete="SET NULL")
    # The team the routing rules chose when the widget connected (again on identify), while ``team_id``
    # is not set yet: its welcome, availability and AI are the visitor's, and routing places it there.
    selected_team_id: uuid.UUID | None = Field(default=None, foreign_key="team.id", ondelete="SET NULL")
    assignee_id: uuid.UUID | None = Field(default=None, foreign_key="operator.id", ondelete="SET NULL")
    status: str = Field(default="new", sa_column_kwargs={"server_default": "new"})
    priority: int = Field(default=0, sa_column_kwargs={"server_default": "0"})
    # What routing matches now: ``skill_requirement`` as asked, or relaxed by its waiting time (``skill_step``).
    required_skills: list[str] = Field(
        default_factory=list, sa_type=ARRAY(sa.Text), sa_column_kwargs={"server_default": "{}"}
    )
    skill_requirement: list[str] = Field(
        default_factory=list, sa_type=ARRAY(sa.Text), sa_column_kwargs={"server_default": "{}"}
    )
    skill_step: str = Field(default="exact", sa_column_kwargs={"server_default": "exact"})
    waiting_since: datetime | None = Field(default=None, sa_type=TZ)
    # Operators automatic routing must not give it back to (reassigned away on timeout); cleared on close.
    excluded_operators: list[uuid.UUID] = Field(
        default_factory=list, sa_type=ARRAY(sa.Uuid), sa_column_kwargs={"server_default": "{}"}
    )
    assigned_at: datetime | None = Field(default=None, sa_type=TZ)
    first_response_at: datetime | None = Field(default=None, sa_type=TZ)
    closed_at: datetime | None = Field(default=None, sa_type=TZ)
    last_visitor_message_at: datetime | None = Field(default=None, sa_type=TZ)
    visitor_left_at: datetime | None = Field(default=None, sa_type=TZ)
    # Bumped whenever routing state changes, so stale routing jobs can tell they are stale.
    routing_revision: int = Field(default=0, sa_column_kwargs={"server_default": "0"})
    ai_active: bool = Field(default=False, sa_column_kwargs={"server_default": sa.false()})
    ai_paused: bool = Field(default=False, sa_column_kwargs={"server_default": sa.false()})
    operator_online: bool = Field(default=False, sa_column_kwargs={"server_default": sa.false()})
    created_at: datetime = Field(sa_type=TZ, index=True)
    last_activity: datetime = Field(sa_type=TZ)
    session_metadata: dict[str, Any] | None = Field(default=None, sa_type=JSONB)
    identity: dict[str, Any] | None = Field(default=None, sa_type=JSONB)
    user_phone: str | None = None
    user_phone_country: str | None = None
    # The SDK's SessionCsat (pending, requested_at, score, comment, responded_at), written by service/csat only.
    csat: dict[str, Any] | None = Field(default=None, sa_type=JSONB)
    # Who a rating counts for: the assignee when the conversation closed and the rating was asked.
    csat_operator_id: uuid.UUID | None = Field(default=None, foreign_key="operator.id", ondelete="SET NULL")
    # The connected site (docs/connect.md) whose own PocketPing holds the visitor; null for the hosted widget.
    site_id: uuid.UUID | None = Field(default=None, foreign_key="site.id", ondelete="SET NULL", index=True)


class Site(SQLModel, table=True):
    """A connected backend: the customer's own PocketPing, sending its sessions here (docs/connect.md).

    Only the key's SHA-256 is kept; callbacks are signed with a secret derived from the key (stored encrypted).
    """

    id: uuid.UUID = Field(default_factory=uuid.uuid4, primary_key=True)
    name: str
    key_hash: str = Field(max_length=64, unique=True)
    key_prefix: str = Field(max_length=16)
    scopes: list[str] = Field(
        default_factory=lambda: ["ingest"], sa_type=ARRAY(sa.Text), sa_column_kwargs={"server_default": "{ingest}"}
    )
    callback_url: str | None = None
    callback_secret_encrypted: str
    # The team its conversations are routed to; null: the routing rules choose, as for the hosted widget.
    team_id: uuid.UUID | None = Field(default=None, foreign_key="team.id", ondelete="SET NULL")
    revoked_at: datetime | None = Field(default=None, sa_type=TZ)
    key_rotated_at: datetime | None = Field(default=None, sa_type=TZ)
    created_at: datetime | None = Field(default=None, sa_type=TZ, sa_column_kwargs=NOW)


class SiteEvent(SQLModel, table=True):
    """An event of a site applied once: its id, so a re-sent event is acknowledged and not applied again."""

    __tablename__ = "site_event"

    site_id: uuid.UUID = Field(foreign_key="site.id", ondelete="CASCADE", primary_key=True)
    event_id: str = Field(max_length=64, primary_key=True)
    applied_at: datetime | None = Field(default=None, sa_type=TZ, sa_column_kwargs=NOW)


class Message(SQLModel, table=True):
    """One chat message; the PocketPing storage and the operator API share this table."""

    __table_args__ = (
        sa.CheckConstraint(_in("sender", SENDERS), name="sender"),
        sa.CheckConstraint(_in("status", MESSAGE_STATUSES), name="status"),
        sa.Index("ix_message_conversation_seq", "conversation_id", "seq"),
        sa.Index("ix_message_created_at", "created_at"),
        sa.Index(
            "ix_message_telegram",
            "telegram_message_id",
            postgresql_where=sa.text("telegram_message_id IS NOT NULL"),
        ),
        sa.Index(
            "ix_message_discord",
            "discord_message_id",
            postgresql_where=sa.text("discord_message_id IS NOT NULL"),
        ),
        sa.Index("ix_message_slack", "slack_message_ts", postgresql_where=sa.text("slack_message_ts IS NOT NULL")),
        # Conversation search: words of every message ('simple': no stemming, any language).
        sa.Index("ix_message_content_fts", sa.text("to_tsvector('simple', content)"), postgresql_using="gin"),
    )

    id: str = Field(primary_key=True)
    # Insertion order: the SDK pages with "after message id", which needs a total order.
    seq: int | None = Field(default=None, sa_column=sa.Column(sa.BigInteger, sa.Identity(), nullable=False))
    conversation_id: str = Field(foreign_key="conversation.id", ondelete="CASCADE")
    sender: str
    operator_id: uuid.UUID | None = Field(default=None, foreign_key="operator.id", ondelete="SET NULL")
    content: str
    created_at: datetime = Field(sa_type=TZ)
    reply_to: str | None = None
    message_metadata: dict[str, Any] | None = Field(default=None, sa_type=JSONB)
    status: str = Field(default="sent", sa_column_kwargs={"server_default": "sent"})
    delivered_at: datetime | None = Field(default=None, sa_type=TZ)
    read_at: datetime | None = Field(default=None, sa_type=TZ)
    edited_at: datetime | None = Field(default=None, sa_type=TZ)
    deleted_at: datetime | None = Field(default=None, sa_type=TZ)
    telegram_message_id: int | None = Field(default=None, sa_type=sa.BigInteger)
    discord_message_id: str | None = None
    slack_message_ts: str | None = None


class Attachment(SQLModel, table=True):
    """A file attached to a message: uploaded by a visitor or an operator, or received from a chat platform.

    ``pending`` rows are uploads announced but not yet received (swept after ``expires_at``);
    ``uploading`` ones have their bytes stored, checked, and wait for the widget's completion.
    """

    __table_args__ = (
        sa.CheckConstraint(_in("status", ATTACHMENT_STATUSES), name="status"),
        sa.Index("ix_attachment_unfinished", "expires_at", postgresql_where=sa.text("message_id IS NULL")),
    )

    id: str = Field(primary_key=True)
    # No foreign key: the SDK links an upload to its message id before it saves the message.
    message_id: str | None = Field(default=None, index=True)
    conversation_id: str | None = Field(default=None, foreign_key="conversation.id", ondelete="CASCADE", index=True)
    filename: str
    # Sniffed from the bytes once they arrived (the client's claim until then).
    mime_type: str
    size: int
    # Where the file came from when Switchboard does not hold it; a signed URL is given out for stored ones.
    url: str | None = None
    thumbnail_url: str | None = None
    status: str = Field(default="ready", sa_column_kwargs={"server_default": "ready"})
    uploaded_from: str | None = None
    bridge_file_id: str | None = None
    # The object's key in the file store (local folder or S3 bucket); None: not stored by Switchboard.
    storage_key: str | None = None
    operator_id: uuid.UUID | None = Field(default=None, foreign_key="operator.id", ondelete="SET NULL")
    expires_at: datetime | None = Field(default=None, sa_type=TZ)
    created_at: datetime = Field(sa_type=TZ)


class Screenshot(SQLModel, table=True):
    """A capture of the visitor's page an operator asked the widget for; the image is stored here once uploaded.

    A request not done by ``expires_at`` is expired (read as such; nothing rewrites it).
    """

    __table_args__ = (
        sa.CheckConstraint(_in("status", SCREENSHOT_STATUSES), name="status"),
        sa.CheckConstraint("(status = 'done') = (content IS NOT NULL)", name="content_when_done"),
        sa.Index("ix_screenshot_conversation", "conversation_id", "requested_at"),
        sa.Index(
            "ix_screenshot_upload_key", "upload_key", unique=True, postgresql_where=sa.text("upload_key IS NOT NULL")
        ),
    )

    id: uuid.UUID = Field(primary_key=True, description="The widget's requestId")
    conversation_id: str = Field(foreign_key="conversation.id", ondelete="CASCADE")
    requested_by: uuid.UUID | None = Field(default=None, foreign_key="operator.id", ondelete="SET NULL")
    requested_at: datetime = Field(sa_type=TZ, sa_column_kwargs={"server_default": sa.func.now()})
    expires_at: datetime = Field(sa_type=TZ)
    status: str = Field(default="pending", sa_column_kwargs={"server_default": "pending"})
    # When a poll handed it to the widget: a poll hands each request out once.
    offered_at: datetime | None = Field(default=None, sa_type=TZ)
    # The secret part of the upload URL (the widget's attachmentId), given when the widget starts uploading.
    upload_key: str | None = None
    mime_type: str | None = None
    size: int | None = None
    content: bytes | None = Field(default=None, sa_type=sa.LargeBinary)
    captured_at: datetime | None = Field(default=None, sa_type=TZ)


class Assignment(SQLModel, table=True):
    """History of who held a conversation, from when, until when and why."""

    __table_args__ = (
        sa.Index("ix_assignment_conversation", "conversation_id", "started_at"),
        sa.Index("ix_assignment_operator", "operator_id", "started_at"),
        # The team's recent assignment rate (queue wait estimates).
        sa.Index("ix_assignment_team_started", "team_id", "started_at"),
        # A conversation has at most one current holder, whatever runs concurrently.
        sa.Index("uq_assignment_open", "conversation_id", unique=True, postgresql_where=sa.text("ended_at IS NULL")),
    )

    id: int | None = Field(default=None, primary_key=True, sa_type=sa.BigInteger)
    conversation_id: str = Field(foreign_key="conversation.id", ondelete="CASCADE")
    operator_id: uuid.UUID = Field(foreign_key="operator.id", ondelete="CASCADE")
    team_id: uuid.UUID | None = Field(default=None, foreign_key="team.id", ondelete="SET NULL")
    reason: str = Field(description="routed, claimed, transferred, timeout_reassigned, offline_reassigned, ...")
    actor_id: uuid.UUID | None = Field(default=None, foreign_key="operator.id", ondelete="SET NULL")
    started_at: datetime = Field(sa_type=TZ, sa_column_kwargs=NOW)
    ended_at: datetime | None = Field(default=None, sa_type=TZ)
    end_reason: str | None = None
    # The capacity this assignment was checked against (NULL when a lead overrode it) and the
    # operator's open conversations including this one, read under the operator's row lock.
    capacity: int | None = None
    open_after: int | None = None


class RoutingDecision(SQLModel, table=True):
    """One routing decision: policy, every candidate with its exclusion reason or score, the outcome."""

    __tablename__ = "routing_decision"
    __table_args__ = (sa.Index("ix_routing_decision_conversation", "conversation_id", "created_at"),)

    id: int | None = Field(default=None, primary_key=True, sa_type=sa.BigInteger)
    conversation_id: str = Field(foreign_key="conversation.id", ondelete="CASCADE")
    team_id: uuid.UUID | None = Field(default=None, foreign_key="team.id", ondelete="SET NULL")
    policy: str
    trigger: str
    candidates: list[dict[str, Any]] = Field(default_factory=list, sa_type=JSONB)
    chosen_operator_id: uuid.UUID | None = Field(default=None, foreign_key="operator.id", ondelete="SET NULL")
    outcome: str = Field(description="assigned, queued or unchanged")
    actor_id: uuid.UUID | None = Field(default=None, foreign_key="operator.id", ondelete="SET NULL")
    reason: str | None = Field(default=None, description="Why a person moved it (transfer, requeue)")
    # The skill requirement's step when it was decided, and the rule that chose the team (when one did, here).
    skill_step: str | None = None
    # No foreign key: a team's rules are replaced whole, and the decision keeps naming the rule that applied.
    rule_id: uuid.UUID | None = None
    rule_name: str | None = None
    created_at: datetime | None = Field(default=None, sa_type=TZ, sa_column_kwargs=NOW)


class CannedResponse(SQLModel, table=True):
    """A reusable reply, owned by a team or by one operator; shortcut unique per owner."""

    __tablename__ = "canned_response"
    __table_args__ = (
        sa.CheckConstraint("(team_id IS NULL) <> (owner_id IS NULL)", name="one_owner"),
        sa.Index(
            "uq_canned_team_shortcut",
            "team_id",
            "shortcut",
            unique=True,
            postgresql_where=sa.text("team_id IS NOT NULL"),
        ),
        sa.Index(
            "uq_canned_owner_shortcut",
            "owner_id",
            "shortcut",
            unique=True,
            postgresql_where=sa.text("owner_id IS NOT NULL"),
        ),
    )

    id: uuid.UUID = Field(default_factory=uuid.uuid4, primary_key=True)
    team_id: uuid.UUID | None = Field(default=None, foreign_key="team.id", ondelete="CASCADE")
    owner_id: uuid.UUID | None = Field(default=None, foreign_key="operator.id", ondelete="CASCADE")
    shortcut: str
    title: str
    body: str
    created_at: datetime | None = Field(default=None, sa_type=TZ, sa_column_kwargs=NOW)
    updated_at: datetime | None = Field(default=None, sa_type=TZ, sa_column_kwargs=NOW)


class Tag(SQLModel, table=True):
    """A label of one team's, put on that team's conversations; its name is unique in the team whatever its case."""

    __table_args__ = (sa.Index("uq_tag_team_name", "team_id", sa.text("lower(name)"), unique=True),)

    id: uuid.UUID = Field(default_factory=uuid.uuid4, primary_key=True)
    team_id: uuid.UUID = Field(foreign_key="team.id", ondelete="CASCADE")
    name: str
    # A CSS colour (#rrggbb) the dashboard draws the tag in; None: the default.
    color: str | None = None
    created_at: datetime | None = Field(default=None, sa_type=TZ, sa_column_kwargs=NOW)


class ConversationTag(SQLModel, table=True):
    """A tag on a conversation: who or what put it there (an operator, a routing rule, a macro)."""

    __tablename__ = "conversation_tag"
    __table_args__ = (sa.CheckConstraint(_in("source", TAG_SOURCES), name="source"),)

    conversation_id: str = Field(foreign_key="conversation.id", ondelete="CASCADE", primary_key=True)
    tag_id: uuid.UUID = Field(foreign_key="tag.id", ondelete="CASCADE", primary_key=True, index=True)
    added_by: uuid.UUID | None = Field(default=None, foreign_key="operator.id", ondelete="SET NULL")
    source: str
    created_at: datetime | None = Field(default=None, sa_type=TZ, sa_column_kwargs=NOW)


class Macro(SQLModel, table=True):
    """A team's one-click action: a canned reply, tags put on and taken off, then assign, transfer or close."""

    __table_args__ = (
        sa.CheckConstraint(_in("action", MACRO_ACTIONS), name="action"),
        sa.Index("uq_macro_team_name", "team_id", sa.text("lower(name)"), unique=True),
    )

    id: uuid.UUID = Field(default_factory=uuid.uuid4, primary_key=True)
    team_id: uuid.UUID = Field(foreign_key="team.id", ondelete="CASCADE", index=True)
    name: str
    # The team canned response sent first; a response a macro uses cannot be deleted (NO ACTION: checked at the
    # end of the statement, so deleting the team deletes both).
    canned_id: uuid.UUID | None = Field(default=None, foreign_key="canned_response.id")
    add_tags: list[uuid.UUID] = Field(
        default_factory=list, sa_type=ARRAY(sa.Uuid), sa_column_kwargs={"server_default": "{}"}
    )
    remove_tags: list[uuid.UUID] = Field(
        default_factory=list, sa_type=ARRAY(sa.Uuid), sa_column_kwargs={"server_default": "{}"}
    )
    # The routing step after the reply and tags: none, assign (to the caller), transfer (team or operator), close.
    action: str = Field(default="none", sa_column_kwargs={"server_default": "none"})
    transfer_team_id: uuid.UUID | None = Field(default=None, foreign_key="team.id", ondelete="SET NULL")
    transfer_operator_id: uuid.UUID | None = Field(default=None, foreign_key="operator.id", ondelete="SET NULL")
    created_at: datetime | None = Field(default=None, sa_type=TZ, sa_column_kwargs=NOW)
    updated_at: datetime | None = Field(default=None, sa_type=TZ, sa_column_kwargs=NOW)


class InternalNote(SQLModel, table=True):
    """A note between operators on a conversation; never sent to the visitor."""

    __tablename__ = "internal_note"
    __table_args__ = (sa.Index("ix_internal_note_conversation", "conversation_id", "created_at"),)

    id: uuid.UUID = Field(default_factory=uuid.uuid4, primary_key=True)
    conversation_id: str = Field(foreign_key="conversation.id", ondelete="CASCADE")
    author_id: uuid.UUID | None = Field(default=None, foreign_key="operator.id", ondelete="SET NULL")
    body: str
    mentions: list[uuid.UUID] = Field(
        default_factory=list, sa_type=ARRAY(sa.Uuid), sa_column_kwargs={"server_default": "{}"}
    )
    created_at: datetime | None = Field(default=None, sa_type=TZ, sa_column_kwargs=NOW)


class Timer(SQLModel, table=True):
    """A durable deadline; jobs are only triggers and act only if the revision still matches."""

    __table_args__ = (
        sa.CheckConstraint(_in("kind", TIMER_KINDS), name="kind"),
        sa.CheckConstraint(_in("state", TIMER_STATES), name="state"),
        sa.Index("ix_timer_due", "due_at", postgresql_where=sa.text("state = 'pending'")),
        # One live timer of a kind per subject; rescheduling bumps its revision.
        sa.Index("uq_timer_subject", "kind", "subject", unique=True),
    )

    id: int | None = Field(default=None, primary_key=True, sa_type=sa.BigInteger)
    kind: str
    subject: str = Field(description="conversation id or operator id the timer is about")
    due_at: datetime = Field(sa_type=TZ)
    revision: int = Field(default=1, sa_column_kwargs={"server_default": "1"})
    state: str = Field(default="pending", sa_column_kwargs={"server_default": "pending"})
    fired_at: datetime | None = Field(default=None, sa_type=TZ)
    updated_at: datetime | None = Field(default=None, sa_type=TZ, sa_column_kwargs=NOW)


class Outbox(SQLModel, table=True):
    """Work to deliver outside the database transaction (widget messages, webhooks, bridge work), retried until done."""

    __table_args__ = (sa.Index("ix_outbox_pending", "available_at", postgresql_where=sa.text("delivered_at IS NULL")),)

    id: int | None = Field(default=None, primary_key=True, sa_type=sa.BigInteger)
    kind: str
    payload: dict[str, Any] = Field(default_factory=dict, sa_type=JSONB)
    webhook_endpoint_id: uuid.UUID | None = Field(
        default=None, foreign_key="webhook_endpoint.id", ondelete="CASCADE", index=True
    )
    dedupe_key: str | None = Field(default=None, unique=True)
    attempts: int = Field(default=0, sa_column_kwargs={"server_default": "0"})
    available_at: datetime | None = Field(default=None, sa_type=TZ, sa_column_kwargs=NOW)
    delivered_at: datetime | None = Field(default=None, sa_type=TZ)
    # Given up (too many tries, too old, or refused for good): never tried again.
    dead_at: datetime | None = Field(default=None, sa_type=TZ)
    # Waiting, untried, for its cause to release it (a disabled webhook endpoint enabled again).
    held_at: datetime | None = Field(default=None, sa_type=TZ)
    last_error: str | None = None
    # The receiver's HTTP status on the latest attempt (webhooks), for the delivery log.
    status_code: int | None = None
    created_at: datetime | None = Field(default=None, sa_type=TZ, sa_column_kwargs=NOW)


class ApiToken(SQLModel, table=True):
    """A personal access token; only its SHA-256 is stored."""

    __tablename__ = "api_token"

    id: uuid.UUID = Field(default_factory=uuid.uuid4, primary_key=True)
    operator_id: uuid.UUID = Field(foreign_key="operator.id", ondelete="CASCADE", index=True)
    name: str
    token_hash: str = Field(unique=True)
    prefix: str
    scopes: list[str] = Field(default_factory=list, sa_type=ARRAY(sa.Text), sa_column_kwargs={"server_default": "{}"})
    created_at: datetime | None = Field(default=None, sa_type=TZ, sa_column_kwargs=NOW)
    expires_at: datetime | None = Field(default=None, sa_type=TZ)
    last_used_at: datetime | None = Field(default=None, sa_type=TZ)
    revoked_at: datetime | None = Field(default=None, sa_type=TZ)


class WebhookEndpoint(SQLModel, table=True):
    """A team's outbound webhook receiver; the signing secret is stored encrypted."""

    __tablename__ = "webhook_endpoint"

    id: uuid.UUID = Field(default_factory=uuid.uuid4, primary_key=True)
    team_id: uuid.UUID = Field(foreign_key="team.id", ondelete="CASCADE", index=True)
    url: str
    secret_encrypted: str
    events: list[str] = Field(default_factory=list, sa_type=ARRAY(sa.Text), sa_column_kwargs={"server_default": "{}"})
    enabled: bool = Field(default=True, sa_column_kwargs={"server_default": sa.true()})
    # Since when every delivery has failed (null after a success); past WEBHOOK_DISABLE_AFTER_SECONDS it is disabled.
    failing_since: datetime | None = Field(default=None, sa_type=TZ)
    disabled_at: datetime | None = Field(default=None, sa_type=TZ)
    disabled_reason: str | None = None
    created_at: datetime | None = Field(default=None, sa_type=TZ, sa_column_kwargs=NOW)


class AuditEvent(SQLModel, table=True):
    """Who did what to which object, for leads and admins."""

    __tablename__ = "audit_event"
    __table_args__ = (sa.Index("ix_audit_event_subject", "subject_type", "subject_id", "created_at"),)

    id: int | None = Field(default=None, primary_key=True, sa_type=sa.BigInteger)
    actor_id: uuid.UUID | None = Field(default=None, foreign_key="operator.id", ondelete="SET NULL")
    action: str
    subject_type: str
    subject_id: str
    data: dict[str, Any] = Field(default_factory=dict, sa_type=JSONB, sa_column_kwargs={"server_default": "{}"})
    ip: str | None = None
    created_at: datetime | None = Field(default=None, sa_type=TZ, sa_column_kwargs=NOW, index=True)


class Event(SQLModel, table=True):
    """A domain event (assignment, message, note, transfer, presence, AI takeover), written in the
    transaction that caused it; the realtime stream and outbound webhooks read from here."""

    __table_args__ = (sa.Index("ix_event_team", "team_id", "id"),)

    id: int | None = Field(default=None, primary_key=True, sa_type=sa.BigInteger)
    kind: str = Field(description="e.g. conversation.assigned, message.created, note.created, presence.changed")
    team_id: uuid.UUID | None = Field(default=None, foreign_key="team.id", ondelete="CASCADE")
    conversation_id: str | None = Field(default=None, foreign_key="conversation.id", ondelete="CASCADE")
    # Operators who see the event whatever their teams (the mentioned, the previous assignee).
    operator_ids: list[uuid.UUID] = Field(
        default_factory=list, sa_type=ARRAY(sa.Uuid), sa_column_kwargs={"server_default": "{}"}
    )
    data: dict[str, Any] = Field(default_factory=dict, sa_type=JSONB, sa_column_kwargs={"server_default": "{}"})
    created_at: datetime | None = Field(default=None, sa_type=TZ, sa_column_kwargs=NOW)


class EventCursor(SQLModel, table=True):
    """How far a consumer of the event table (the webhook relay) has read, so a restart resumes there."""

    __tablename__ = "event_cursor"

    name: str = Field(primary_key=True)
    last_id: int = Field(default=0, sa_type=sa.BigInteger)


BRIDGE_PLATFORMS = ("telegram", "discord", "slack")


class BridgeLink(SQLModel, table=True):
    """An operator's account on a chat platform, linked with a one-time code; replies from it are theirs."""

    __tablename__ = "bridge_link"
    __table_args__ = (
        sa.CheckConstraint(_in("platform", BRIDGE_PLATFORMS), name="platform"),
        sa.UniqueConstraint("platform", "external_user_id"),
        sa.UniqueConstraint("operator_id", "platform"),
    )

    id: uuid.UUID = Field(default_factory=uuid.uuid4, primary_key=True)
    operator_id: uuid.UUID = Field(foreign_key="operator.id", ondelete="CASCADE", index=True)
    platform: str
    external_user_id: str = Field(description="Telegram user id, Discord user id or Slack user id")
    external_name: str | None = None
    # Where the bot writes to this operator directly (Telegram private chat, Slack/Discord DM channel).
    direct_chat_id: str | None = None
    created_at: datetime | None = Field(default=None, sa_type=TZ, sa_column_kwargs=NOW)


class BridgeThread(SQLModel, table=True):
    """Where a conversation lives in a team's chat: Telegram forum topic, Slack thread ts, Discord thread id."""

    __tablename__ = "bridge_thread"
    __table_args__ = (
        sa.CheckConstraint(_in("platform", BRIDGE_PLATFORMS), name="platform"),
        sa.UniqueConstraint("team_id", "platform", "thread_ref"),
    )

    conversation_id: str = Field(foreign_key="conversation.id", ondelete="CASCADE", primary_key=True)
    team_id: uuid.UUID = Field(foreign_key="team.id", ondelete="CASCADE", primary_key=True)
    platform: str = Field(primary_key=True)
    thread_ref: str
    created_at: datetime | None = Field(default=None, sa_type=TZ, sa_column_kwargs=NOW)


OAUTH_TOKEN_KINDS = ("access", "refresh")


class OAuthGrant(SQLModel, table=True):
    """One native-app sign-in (a refresh-token family): revoking it ends every token it issued."""

    __tablename__ = "oauth_grant"

    id: uuid.UUID = Field(default_factory=uuid.uuid4, primary_key=True)
    operator_id: uuid.UUID = Field(foreign_key="operator.id", ondelete="CASCADE", index=True)
    client_id: str
    scopes: list[str] = Field(default_factory=list, sa_type=ARRAY(sa.Text), sa_column_kwargs={"server_default": "{}"})
    created_at: datetime | None = Field(default=None, sa_type=TZ, sa_column_kwargs=NOW)
    revoked_at: datetime | None = Field(default=None, sa_type=TZ)
    # Why it was revoked: 'revoked' (RFC 7009), 'reuse' (a rotated refresh token came back) or 'deactivated'.
    revoked_reason: str | None = None


class OAuthToken(SQLModel, table=True):
    """An access or refresh token of a grant; only its SHA-256 is stored."""

    __tablename__ = "oauth_token"
    __table_args__ = (sa.CheckConstraint(_in("kind", OAUTH_TOKEN_KINDS), name="kind"),)

    id: uuid.UUID = Field(default_factory=uuid.uuid4, primary_key=True)
    grant_id: uuid.UUID = Field(foreign_key="oauth_grant.id", ondelete="CASCADE", index=True)
    kind: str
    token_hash: str = Field(unique=True)
    created_at: datetime | None = Field(default=None, sa_type=TZ, sa_column_kwargs=NOW)
    expires_at: datetime = Field(sa_type=TZ)
    # A refresh token is used once: this is set when it is exchanged for the next one.
    rotated_at: datetime | None = Field(default=None, sa_type=TZ)


PUSH_PLATFORMS = ("apns", "fcm", "webpush")


class PushDevice(SQLModel, table=True):
    """A device (phone app, browser) of an operator's that receives push notifications.

    ``token`` is the APNs device token, the FCM registration token or the Web Push endpoint; one token is one
    device, so registering it again (by anyone) updates the same row.
    """

    __tablename__ = "push_device"
    __table_args__ = (
        sa.CheckConstraint(_in("platform", PUSH_PLATFORMS), name="platform"),
        sa.UniqueConstraint("platform", "token"),
    )

    id: uuid.UUID = Field(default_factory=uuid.uuid4, primary_key=True)
    operator_id: uuid.UUID = Field(foreign_key="operator.id", ondelete="CASCADE", index=True)
    platform: str
    token: str
    # Web Push only: the subscription's p256dh and auth keys (base64url), which encrypt the payload.
    keys: dict[str, Any] | None = Field(default=None, sa_type=JSONB)
    # APNs topic (the app's bundle id) or the FCM app's package name.
    app_id: str | None = None
    name: str | None = None
    created_at: datetime | None = Field(default=None, sa_type=TZ, sa_column_kwargs=NOW)
    registered_at: datetime | None = Field(default=None, sa_type=TZ, sa_column_kwargs=NOW)


SLA_TARGETS = ("first_response", "next_response", "resolution")
SLA_MOMENTS = ("at_risk", "breached")
SLA_ACTIONS = ("reassign", "tell_leads", "overflow")


class SlaPolicy(SQLModel, table=True):
    """A team's SLA targets for one priority (``priority`` NULL: every priority without a policy of its own).

    Targets are seconds of business time (the team's hours; none stored: around the clock); a NULL target is
    not tracked. ``escalation`` is a list of steps ``{"on": "at_risk" | "breached", "action": "reassign" |
    "tell_leads" | "overflow", "teamId": <overflow team>}``, run in order at that moment of any target.
    """

    __tablename__ = "sla_policy"
    __table_args__ = (
        sa.CheckConstraint("at_risk_share IS NULL OR (at_risk_share > 0 AND at_risk_share < 1)", name="at_risk_share"),
        sa.Index("uq_sla_policy_team_priority", "team_id", "priority", unique=True, postgresql_nulls_not_distinct=True),
    )

    id: uuid.UUID = Field(default_factory=uuid.uuid4, primary_key=True)
    team_id: uuid.UUID = Field(foreign_key="team.id", ondelete="CASCADE")
    priority: int | None = None
    first_response_seconds: int | None = None
    next_response_seconds: int | None = None
    resolution_seconds: int | None = None
    # Share of a target after which its clock is at risk; NULL: the SLA_AT_RISK_SHARE setting.
    at_risk_share: float | None = None
    escalation: list[dict[str, Any]] = Field(
        default_factory=list, sa_type=JSONB, sa_column_kwargs={"server_default": "[]"}
    )
    created_at: datetime | None = Field(default=None, sa_type=TZ, sa_column_kwargs=NOW)
    updated_at: datetime | None = Field(default=None, sa_type=TZ, sa_column_kwargs=NOW)


class SlaClock(SQLModel, table=True):
    """One SLA clock of a conversation (first response, next response, resolution) and where it stands.

    ``due_at`` and ``at_risk_at`` are wall-clock moments with the team's closed hours already skipped, so the
    inbox shows time left as ``due_at - now()`` with no calendar at hand; NULL while the worker has yet to
    compute them. ``stopped_at`` ends the current cycle (NULL: running); the next-response clock starts again at
    the visitor's next message (``cycles`` counts them), and ``ever_breached`` keeps a missed cycle for analytics.
    """

    __tablename__ = "sla_clock"
    __table_args__ = (sa.CheckConstraint(_in("target", SLA_TARGETS), name="target"),)

    conversation_id: str = Field(foreign_key="conversation.id", ondelete="CASCADE", primary_key=True)
    target: str = Field(primary_key=True)
    team_id: uuid.UUID | None = Field(default=None, foreign_key="team.id", ondelete="SET NULL", index=True)
    policy_id: uuid.UUID | None = Field(default=None, foreign_key="sla_policy.id", ondelete="SET NULL")
    target_seconds: int | None = None
    started_at: datetime = Field(sa_type=TZ)
    at_risk_at: datetime | None = Field(default=None, sa_type=TZ)
    due_at: datetime | None = Field(default=None, sa_type=TZ)
    stopped_at: datetime | None = Field(default=None, sa_type=TZ)
    at_risk_reported_at: datetime | None = Field(default=None, sa_type=TZ)
    breached_at: datetime | None = Field(default=None, sa_type=TZ)
    ever_breached: bool = Field(default=False, sa_column_kwargs={"server_default": sa.false()})
    cycles: int = Field(default=1, sa_column_kwargs={"server_default": "1"})
