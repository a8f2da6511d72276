"""Reading the event table in id order without skipping a row whose transaction commits late.

Event ids come from a sequence, taken when the row is inserted, while the row becomes visible
only when its transaction commits: id 7 can be visible before id 6. A reader that moved its
cursor past 6 on seeing 7 would never deliver 6. So a reader stops at the first missing id (a
gap) and waits until the gap can no longer fill: every write transaction of this database that
was running when the gap was first seen has ended (``pg_stat_activity.backend_xid``: other
databases of the cluster cannot hold our ids, so their long transactions do not hold us up),
and ``settle_seconds`` have passed (a transaction takes its xid a moment after its first
sequence number). Then the id is given up as rolled back. Events are therefore delivered
strictly in id order, and an event id is a complete resume cursor.
"""

from __future__ import annotations

import time
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

# One statement: the running transactions are listed before the rows are read, so a
# transaction missing from the list had ended (committed: its rows are read; or aborted).
_READ = sa.text(
    """
    SELECT s.running, e.id, e.kind, e.team_id, e.conversation_id, e.operator_ids, e.data, e.created_at
    FROM (
        SELECT coalesce(array_agg(backend_xid::text), '{}') AS running
        FROM pg_stat_activity
        WHERE datname = current_database() AND backend_xid IS NOT NULL
    ) AS s
    LEFT JOIN LATERAL (SELECT * FROM event WHERE id > :after ORDER BY id LIMIT :limit) AS e ON true
    """
)


class EventTail:
    """A cursor over the event table: the next events in id order, never skipping one that may still commit."""

    def __init__(self, after: int, settle_seconds: float = 1.0) -> None:
        self.watermark = after
        self._settle = settle_seconds
        # missing id -> (transactions running, monotonic time) at the read that first saw it missing
        self._gaps: dict[int, tuple[frozenset[str], float]] = {}

    @property
    def waiting(self) -> bool:
        """True while a gap holds later events back (the caller should read again soon)."""
        return bool(self._gaps)

    def advance_to(self, event_id: int) -> None:
        """Another reader already handled everything up to ``event_id``."""
        if event_id > self.watermark:
            self.watermark = event_id
            self._gaps = {gap: seen for gap, seen in self._gaps.items() if gap > event_id}

    async def read(self, conn: AsyncConnection, limit: int = 500) -> tuple[list[Any], bool]:
        """The events after the watermark that are safe to hand out, and whether more may be waiting."""
        result = (await conn.execute(_READ, {"after": self.watermark, "limit": limit})).all()
        running = frozenset(result[0].running)
        rows = [row for row in result if row.id is not None]
        now = time.monotonic()
        ready: list[Any] = []
        for row in rows:
            while self.watermark + 1 < row.id:
                gap = self.watermark + 1
                seen_running, seen_at = self._gaps.setdefault(gap, (running, now))
                if seen_running & running or now - seen_at < self._settle:
                    return ready, False
                del self._gaps[gap]  # rolled back: it will never commit
                self.watermark = gap
            self._gaps.pop(row.id, None)
            ready.append(row)
            self.watermark = row.id
        return ready, len(rows) == limit
