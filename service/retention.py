"""Retention: domain events, finished outbox rows (the webhook delivery log), audit rows, idempotency answers and the
event ids connected sites sent older than ``RETENTION_DAYS`` are deleted by the worker's daily cron."""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

# Rows deleted per statement, each in its own short transaction: a large backlog never holds long locks.
BATCH = 5000

# What each table keeps beyond its age. An event stays until every relay named has read it (a relay
# without a stored cursor yet has read nothing); an outbox row until it is delivered or dead.
_PRUNE = {
    "event": """
        created_at < :cutoff AND id <= (
            SELECT CASE WHEN count(*) = cardinality(CAST(:cursors AS text[])) THEN min(last_id) ELSE 0 END
            FROM event_cursor WHERE name = ANY(CAST(:cursors AS text[])))
    """,
    "outbox": "created_at < :cutoff AND (delivered_at IS NOT NULL OR dead_at IS NOT NULL)",
    "audit_event": "created_at < :cutoff",
    "idempotent_action": "created_at < :cutoff",
    # A site's event re-sent after this long is applied again: harmless, as each kind is idempotent by its own ids.
    "site_event": "applied_at < :cutoff",
}


async def prune(engine: AsyncEngine, days: int, cursors: Sequence[str]) -> dict[str, int]:
    """Delete what is older than ``days`` (``cursors``: the relays that read the event table); counts per table."""
    deleted: dict[str, int] = {}
    for table, condition in _PRUNE.items():
        statement = sa.text(
            f"DELETE FROM {table} WHERE ctid = ANY(ARRAY(SELECT ctid FROM {table} WHERE {condition} LIMIT {BATCH}))"
        )
        deleted[table] = 0
        while True:
            async with engine.begin() as conn:
                cutoff = await conn.scalar(sa.select(sa.func.now() - sa.func.make_interval(0, 0, 0, days)))
                count = (await conn.execute(statement, {"cutoff": cutoff, "cursors": list(cursors)})).rowcount
            deleted[table] += count
            if count < BATCH:
                break
    return deleted
