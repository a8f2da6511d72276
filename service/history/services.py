"""Paged reads of the audit log and of a team's assignments, newest first by id (keyset cursors)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from service.db.tables import assignment_t, audit_t
from service.history.schemas import AssignmentPage, AssignmentPublic, AuditEventPage, AuditEventPublic
from service.pagination import decode_cursor, page


@dataclass(frozen=True)
class Window:
    """Rows created in [since, until), a page of ``limit`` after ``cursor``."""

    since: datetime | None
    until: datetime | None
    cursor: str | None
    limit: int


def _paged(table: sa.Table, time_column: sa.Column[Any], window: Window, *conditions: Any) -> sa.Select[Any]:
    query = sa.select(table).where(*conditions).order_by(table.c.id.desc()).limit(window.limit + 1)
    if window.since is not None:
        query = query.where(time_column >= window.since)
    if window.until is not None:
        query = query.where(time_column < window.until)
    if window.cursor is not None:
        (last_id,) = decode_cursor(window.cursor, 1, int)
        query = query.where(table.c.id < last_id)
    return query


async def audit_events(
    conn: AsyncConnection,
    window: Window,
    *,
    action: str | None = None,
    subject_type: str | None = None,
    subject_id: str | None = None,
    actor_id: uuid.UUID | None = None,
) -> AuditEventPage:
    """The audit log, filtered by whichever of action, subject and actor are given."""
    wanted = {"action": action, "subject_type": subject_type, "subject_id": subject_id, "actor_id": actor_id}
    conditions = [audit_t.c[name] == value for name, value in wanted.items() if value is not None]
    rows = (await conn.execute(_paged(audit_t, audit_t.c.created_at, window, *conditions))).all()
    items, next_cursor = page(rows, window.limit, AuditEventPublic.model_validate, lambda item: (item.id,))
    return AuditEventPage(items=items, next_cursor=next_cursor)


async def team_assignments(
    conn: AsyncConnection,
    team_id: uuid.UUID,
    window: Window,
    *,
    operator_id: uuid.UUID | None = None,
    conversation_id: str | None = None,
) -> AssignmentPage:
    """Assignments made in the team (by start time), optionally of one operator or one conversation."""
    conditions = [assignment_t.c.team_id == team_id]
    if operator_id is not None:
        conditions.append(assignment_t.c.operator_id == operator_id)
    if conversation_id is not None:
        conditions.append(assignment_t.c.conversation_id == conversation_id)
    rows = (await conn.execute(_paged(assignment_t, assignment_t.c.started_at, window, *conditions))).all()
    items, next_cursor = page(rows, window.limit, AssignmentPublic.model_validate, lambda item: (item.id,))
    return AssignmentPage(items=items, next_cursor=next_cursor)
