"""Queue transparency: a queued visitor is told their place in the team's queue and an estimated wait.

The estimate is ``position ÷ rate``, the rate being the team's assignments (any reason) over the last
``RATE_WINDOW_MINUTES``, counted as at least ``RATE_FLOOR_ASSIGNMENTS`` so a team that assigned nothing lately
still gives a finite figure; it is capped at ``MAX_WAIT_MINUTES``. A visitor gets one system message per stay in
the queue (since its last assignment ended), edited in place when the estimate has moved by
``MOVE_MINUTES`` or more since it was last told: never on every change of place.

``refresh`` reads the whole queue in one statement (positions by window function, the last notice of each
conversation), then writes at most ``MAX_NOTICES_PER_RUN`` notices, front of the queue first, in two
statements; whatever is left is told by the next run (the worker's sweep runs one for every team with a queue).
"""

from __future__ import annotations

import json
import math
import uuid
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

NOTICE_KIND = "queue_position"
RATE_WINDOW_MINUTES = 30
RATE_FLOOR_ASSIGNMENTS = 1
MAX_WAIT_MINUTES = 120
MOVE_MINUTES = 1.0
MAX_NOTICES_PER_RUN = 100

_TEAM = sa.text(
    f"""
    SELECT t.queue_notices AS enabled,
           (SELECT count(*) FROM assignment a
            WHERE a.team_id = t.id AND a.started_at > now() - interval '{RATE_WINDOW_MINUTES} minutes') AS recent
    FROM team t WHERE t.id = :team_id
    """
)

# Serializes notice runs of one team (two workers would both write a first notice); routing never takes it.
_LOCK = sa.text("SELECT pg_advisory_xact_lock(hashtextextended('queue-notices:' || CAST(:team_id AS text), 0))")

_QUEUE = sa.text(
    f"""
    WITH q AS (
        SELECT c.id, row_number() OVER (ORDER BY c.priority DESC, c.waiting_since, c.id) AS position
        FROM conversation c WHERE c.team_id = :team_id AND c.status = 'queued'
    )
    SELECT q.id, q.position, n.id AS notice_id, n.message_metadata AS told
    FROM q
    LEFT JOIN LATERAL (
        SELECT m.id, m.message_metadata FROM message m
        WHERE m.conversation_id = q.id AND m.sender = 'system' AND m.message_metadata ->> 'kind' = '{NOTICE_KIND}'
          AND m.created_at >= coalesce(
              (SELECT max(a.ended_at) FROM assignment a WHERE a.conversation_id = q.id), '-infinity')
        ORDER BY m.seq DESC LIMIT 1
    ) n ON true
    ORDER BY q.position
    """
)

_CREATE = sa.text(
    """
    INSERT INTO message (id, conversation_id, sender, content, created_at, message_metadata, status)
    -- Ids in the SDK's format: hex milliseconds, dash, random hex.
    SELECT to_hex(CAST(extract(epoch FROM now()) * 1000 AS bigint)) || '-' || substr(md5(random()::text), 1, 8),
           r.conversation_id, 'system', r.content, now(), r.metadata, 'sent'
    FROM jsonb_to_recordset(CAST(:rows AS jsonb)) AS r(conversation_id text, content text, metadata jsonb)
    RETURNING id
    """
)

_EDIT = sa.text(
    """
    UPDATE message m SET content = r.content, message_metadata = r.metadata, edited_at = now()
    FROM jsonb_to_recordset(CAST(:rows AS jsonb)) AS r(id text, content text, metadata jsonb)
    WHERE m.id = r.id
    """
)


def estimate_minutes(position: int, recent_assignments: int) -> float:
    """Minutes until ``position`` is served at the rate of ``recent_assignments`` per ``RATE_WINDOW_MINUTES``."""
    per_minute = max(recent_assignments, RATE_FLOOR_ASSIGNMENTS) / RATE_WINDOW_MINUTES
    return min(position / per_minute, MAX_WAIT_MINUTES)


def notice_text(position: int, estimate: float) -> str:
    """What the visitor reads: their place and the estimate, in whole minutes (rounded up, at least one)."""
    if estimate >= MAX_WAIT_MINUTES:
        wait = f"more than {MAX_WAIT_MINUTES // 60} hours"
    else:
        minutes = max(1, math.ceil(estimate))
        wait = f"about {minutes} minute{'' if minutes == 1 else 's'}"
    return f"You are number {position} in the queue. Estimated wait: {wait}."


def needs_telling(told: dict[str, Any] | None, estimate: float) -> bool:
    """A first notice, or an estimate that moved by ``MOVE_MINUTES`` or more since the last one."""
    return told is None or abs(estimate - float(told["estimate"])) >= MOVE_MINUTES


@dataclass
class Told:
    """The system messages a run wrote: ``created`` (new, by id) and ``edited`` (changed in place)."""

    created: list[str] = field(default_factory=list)
    edited: list[str] = field(default_factory=list)


async def refresh(conn: AsyncConnection, team_id: uuid.UUID) -> Told:
    """Tell the team's queued visitors whose estimate moved (or who were never told); a no-op when the team's
    ``queue_notices`` is off. Four statements, whatever the length of the queue."""
    team = (await conn.execute(_TEAM, {"team_id": team_id})).first()
    told = Told()
    if team is None or not team.enabled:
        return told
    await conn.execute(_LOCK, {"team_id": str(team_id)})
    created: list[dict[str, Any]] = []
    edited: list[dict[str, Any]] = []
    for row in await conn.execute(_QUEUE, {"team_id": team_id}):
        estimate = estimate_minutes(row.position, team.recent)
        if not needs_telling(row.told, estimate):
            continue
        metadata = {"kind": NOTICE_KIND, "position": row.position, "estimate": round(estimate, 3)}
        content = notice_text(row.position, estimate)
        if row.notice_id is None:
            created.append({"conversation_id": row.id, "content": content, "metadata": metadata})
        else:
            edited.append({"id": row.notice_id, "content": content, "metadata": metadata})
        if len(created) + len(edited) == MAX_NOTICES_PER_RUN:
            break
    if created:
        told.created = list((await conn.execute(_CREATE, {"rows": json.dumps(created)})).scalars())
    if edited:
        await conn.execute(_EDIT, {"rows": json.dumps(edited)})
        told.edited = [r["id"] for r in edited]
    return told


async def enabled(conn: AsyncConnection, team_id: uuid.UUID) -> bool:
    """Whether the team tells its queued visitors their place (``queueNotices``)."""
    return bool(await conn.scalar(sa.text("SELECT queue_notices FROM team WHERE id = :id"), {"id": team_id}))


async def teams_with_queue(conn: AsyncConnection) -> list[uuid.UUID]:
    """Teams that tell their queued visitors and have some (the sweep refreshes their estimates)."""
    result = await conn.execute(
        sa.text(
            "SELECT t.id FROM team t WHERE t.queue_notices AND EXISTS "
            "(SELECT 1 FROM conversation c WHERE c.team_id = t.id AND c.status = 'queued') ORDER BY t.id"
        )
    )
    return list(result.scalars())
