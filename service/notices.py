"""What the operators' notices say (chat bridges' direct messages, push notifications), read at delivery time.

Both consumers of the event table that tell operators of their work (``service/bridges/notify.py``,
``service/push/notify.py``) pick the same events: an assignment not claimed, an @mention in a note,
a queue longer than the team's ``queue_alert_threshold`` (at most once per ``QUEUE_ALERT_QUIET_SECONDS``),
the leads told of a conversation (``leads.alerted``: an SLA escalation, the AI handing back); push adds the
visitor's messages. They read the texts' facts here, so both say the same.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

QUEUE_ALERT_QUIET_SECONDS = 600
ASSIGNED_TITLE = "New conversation assigned to you"

_CONVERSATION = sa.text(
    """
    SELECT c.id, c.team_id, c.status, c.assignee_id, c.visitor_id, c.identity, c.session_metadata,
           (SELECT m.content FROM message m WHERE m.conversation_id = c.id AND m.sender = 'visitor'
            ORDER BY m.seq DESC LIMIT 1) AS last_message
    FROM conversation c WHERE c.id = :id
    """
)

_NOTE = sa.text(
    "SELECT n.body, coalesce(o.display_name, 'Someone') AS author FROM internal_note n "
    "LEFT JOIN operator o ON o.id = n.author_id WHERE n.id = :id"
)

_QUEUE = sa.text(
    "SELECT t.name, t.queue_alert_threshold AS threshold, "
    "(SELECT count(*) FROM conversation c WHERE c.team_id = t.id AND c.status = 'queued') AS waiting "
    "FROM team t WHERE t.id = :id"
)


async def conversation(conn: AsyncConnection, conversation_id: str) -> Any:
    """The conversation as a notice describes it (with the visitor's latest message), or None."""
    return (await conn.execute(_CONVERSATION, {"id": conversation_id})).first()


def visitor_name(row: Any) -> str:
    identity = row.identity or {}
    return str(identity.get("name") or identity.get("email") or row.visitor_id[:8])


def summary_lines(row: Any) -> list[str]:
    """Who the visitor is, the page they are on, and their latest message."""
    page = (row.session_metadata or {}).get("url")
    lines = [f"Visitor: {visitor_name(row)}"]
    if page:
        lines.append(f"Page: {page}")
    if row.last_message:
        lines.append(f"Last message: {row.last_message[:300]}")
    return lines


async def note(conn: AsyncConnection, note_id: str) -> Any:
    """The note's body and its author's name (``Someone`` when unknown)."""
    return (await conn.execute(_NOTE, {"id": note_id})).one()


def mention_title(note_row: Any) -> str:
    return f"{note_row.author} mentioned you in a note"


async def queue_alert(conn: AsyncConnection, team_id: Any) -> str | None:
    """The alert for the team's queue, or None once it is no longer above the threshold."""
    row = (await conn.execute(_QUEUE, {"id": team_id})).one()
    if row.threshold is None or row.waiting <= row.threshold:
        return None
    waiting = f"{row.waiting} conversation{'' if row.waiting == 1 else 's'}"
    return f"Queue alert: {waiting} waiting in {row.name} (alert above {row.threshold})"


_CLOCKS = {"first_response": "first response", "next_response": "next response", "resolution": "resolution"}
_MOMENTS = {"at_risk": "at risk", "breached": "breached"}


def lead_alert_title(reason: str) -> str:
    """What the leads are told, by ``leads.alerted``'s reason (``ai_handed_back``, ``sla_<clock>_<moment>``)."""
    if reason == "ai_handed_back":
        return "The AI could not answer: a conversation is back with the team"
    for clock, clock_words in _CLOCKS.items():
        for moment, moment_words in _MOMENTS.items():
            if reason == f"sla_{clock}_{moment}":
                return f"SLA {moment_words}: {clock_words}"
    return "A conversation needs a lead"
