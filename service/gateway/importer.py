"""Load an existing PocketPing storage (any ``Storage``) into Switchboard; running it again adds only what is new."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from pocketping.models import Message, Session
from pocketping.storage import Storage
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncEngine

from service.db.tables import attachment_t, conversation_t, message_t
from service.gateway.storage import attachment_values, message_to_row, session_to_row

# Rows per INSERT: well under PostgreSQL's 32767 bind parameters at 13 columns a message.
BATCH = 500


@dataclass
class ImportReport:
    """What one run read from the source and what it added (the rest was there already)."""

    sessions_read: int = 0
    sessions_added: int = 0
    messages_read: int = 0
    messages_added: int = 0
    attachments_added: int = 0


def conversation_row(session: Session, team_id: uuid.UUID | None) -> dict[str, Any]:
    """An imported session is history: closed at its last activity; the visitor writing again routes it anew."""
    return {**session_to_row(session), "team_id": team_id, "status": "closed", "closed_at": session.last_activity}


async def session_messages(source: Storage, session_id: str, page_size: int = BATCH) -> list[Message]:
    """Every message of the session, oldest first, paged by the last message id as the SDK's storages page."""
    messages: list[Message] = []
    seen: set[str] = set()
    after: str | None = None
    while True:
        page = [m for m in await source.get_messages(session_id, after=after, limit=page_size) if m.id not in seen]
        # A page with nothing new ends it, also for a storage that ignores ``after``.
        if not page:
            return messages
        messages.extend(page)
        seen.update(m.id for m in page)
        if len(page) < page_size:
            return messages
        after = page[-1].id


async def _insert_new(conn: Any, table: sa.Table, rows: Sequence[dict[str, Any]]) -> int:
    """Insert the rows whose id is not there yet; how many were."""
    added = 0
    for start in range(0, len(rows), BATCH):
        statement = insert(table).values(list(rows[start : start + BATCH]))
        statement = statement.on_conflict_do_nothing(index_elements=["id"])
        added += len((await conn.execute(statement.returning(table.c.id))).all())
    return added


async def import_storage(engine: AsyncEngine, source: Storage, *, team_id: uuid.UUID | None = None) -> ImportReport:
    """Copy every session and message of ``source`` that Switchboard does not hold yet (by id), a session at a time.

    A session's transaction holds its conversation and all its messages, so a run cut short leaves whole
    sessions, and the next run picks up the rest: ids already present are skipped, never changed.
    """
    report = ImportReport()
    for session in await source.list_sessions():
        messages = await session_messages(source, session.id)
        rows = [message_to_row(m, session.id) for m in messages]
        attachments = [
            {**attachment_values(a.model_copy(update={"message_id": m.id})), "conversation_id": session.id}
            for m in messages
            for a in m.attachments or []
        ]
        async with engine.begin() as conn:
            report.sessions_added += await _insert_new(conn, conversation_t, [conversation_row(session, team_id)])
            report.messages_added += await _insert_new(conn, message_t, rows)
            report.attachments_added += await _insert_new(conn, attachment_t, attachments)
        report.sessions_read += 1
        report.messages_read += len(messages)
    return report
