"""API schemas for the audit log and the assignment history (camelCase on the wire)."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from service.schemas import ApiModel


class AuditEventPublic(ApiModel):
    """Who changed what: ``action`` on ``subjectType``/``subjectId``; ``data`` holds the changed fields."""

    id: int
    actor_id: uuid.UUID | None
    action: str
    subject_type: str
    subject_id: str
    data: dict[str, Any]
    ip: str | None
    created_at: datetime


class AuditEventPage(ApiModel):
    """A page of audit events, newest first; pass ``nextCursor`` as ``cursor`` for older ones."""

    items: list[AuditEventPublic]
    next_cursor: str | None


class AssignmentPublic(ApiModel):
    """One holding of a conversation: who, from when until when, why it started and why it ended."""

    id: int
    conversation_id: str
    operator_id: uuid.UUID
    team_id: uuid.UUID | None
    reason: str
    actor_id: uuid.UUID | None
    started_at: datetime
    ended_at: datetime | None
    end_reason: str | None
    capacity: int | None


class AssignmentPage(ApiModel):
    """A page of assignments, newest first; pass ``nextCursor`` as ``cursor`` for older ones."""

    items: list[AssignmentPublic]
    next_cursor: str | None
