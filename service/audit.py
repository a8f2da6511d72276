"""Audit trail: who changed which configuration, recorded in the transaction that changed it."""

from __future__ import annotations

import uuid
from typing import Any

import sqlalchemy as sa
from pydantic_core import to_jsonable_python
from sqlalchemy.ext.asyncio import AsyncConnection

from service.db.tables import audit_t


async def record_audit(
    conn: AsyncConnection,
    actor_id: uuid.UUID | None,
    action: str,
    subject_type: str,
    subject_id: object,
    data: dict[str, Any] | None = None,
    ip: str | None = None,
) -> None:
    """One audit row (e.g. ``team.updated`` on ``team``/<id>); ``data`` holds the changed fields, never secrets."""
    await conn.execute(
        sa.insert(audit_t).values(
            actor_id=actor_id,
            action=action,
            subject_type=subject_type,
            subject_id=str(subject_id),
            data=to_jsonable_python(data or {}),
            ip=ip,
        )
    )
