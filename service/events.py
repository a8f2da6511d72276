"""Domain events, recorded in the transaction that caused them (the realtime stream and webhooks read them)."""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from service.db.tables import event_t


async def record_event(
    conn: AsyncConnection,
    kind: str,
    *,
    team_id: uuid.UUID | None,
    conversation_id: str | None = None,
    operator_ids: Iterable[uuid.UUID] = (),
    data: dict[str, Any] | None = None,
) -> int:
    """Store one event in the caller's transaction, so it exists exactly when its cause does; returns its id.

    ``team_id`` decides who sees it (the team's members, leads and admins); ``operator_ids``
    adds people outside that audience (a mentioned operator, the previous assignee).
    """
    return int(
        await conn.scalar(
            sa.insert(event_t)
            .values(
                kind=kind,
                team_id=team_id,
                conversation_id=conversation_id,
                operator_ids=list(operator_ids),
                data=data or {},
            )
            .returning(event_t.c.id)
        )
    )
