"""Who the visitor is: what the widget sent at connect (page, language, time zone, user agent) and identify,
the device read from the user agent, and the same visitor's earlier conversations."""

from __future__ import annotations

from functools import lru_cache
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection
from ua_parser import parse

from service.auth.principal import Principal
from service.conversations.services import conversation_of, visible_to
from service.db.tables import conversation_t, team_t

# The visitor panel and the REST detail list this many earlier conversations, newest first.
EARLIER_SHOWN = 10
# The identity fields the SDK names; the others are the site's own (plan, company, ...).
IDENTITY_FIELDS = ("id", "email", "name")
# Longer user agents are not parsed (the widget sends the browser's, a few hundred characters).
_UA_MAX = 1000


def _version(part: Any) -> str:
    return ".".join(str(v) for v in (part.major, part.minor) if v)


@lru_cache(maxsize=1024)
def device(user_agent: str | None) -> dict[str, str | None] | None:
    """Browser, operating system and device model named from a user agent (``None`` where it says nothing)."""
    if not user_agent or len(user_agent) > _UA_MAX:
        return None
    found = parse(user_agent)
    browser = f"{found.user_agent.family} {_version(found.user_agent)}".strip() if found.user_agent else None
    system = f"{found.os.family} {_version(found.os)}".strip() if found.os else None
    model = found.device.family if found.device else None
    # ua-parser's names for "no model known" and for crawlers.
    return {"browser": browser, "os": system, "model": {"Other": None, "Spider": "bot"}.get(model or "", model)}


def identity_extra(identity: dict[str, Any] | None) -> dict[str, Any]:
    """The site's own identity fields (beyond id, email and name), by name."""
    return {key: value for key, value in sorted((identity or {}).items()) if key not in IDENTITY_FIELDS}


async def earlier_conversations(conn: AsyncConnection, principal: Principal, row: Any) -> list[dict[str, Any]]:
    """The same visitor's conversations begun before this one (same widget visitor id, or the same identified
    user on another device), that the caller may see, newest first."""
    c = conversation_t.c
    same = [c.visitor_id == row.visitor_id]
    if row.identity and row.identity.get("id"):
        same.append(c.identity["id"].astext == str(row.identity["id"]))
    rows = await conn.execute(
        sa.select(c.id, c.status, c.created_at, c.last_activity, team_t.c.name.label("team_name"))
        .select_from(conversation_t.outerjoin(team_t, team_t.c.id == c.team_id))
        .where(sa.or_(*same), c.id != row.id, c.created_at < row.created_at, visible_to(principal))
        .order_by(c.created_at.desc(), c.id.desc())
        .limit(EARLIER_SHOWN)
    )
    return [
        {
            "id": r.id,
            "status": r.status,
            "team_name": r.team_name,
            "created_at": r.created_at,
            "last_activity": r.last_activity,
        }
        for r in rows
    ]


async def conversation_detail(conn: AsyncConnection, principal: Principal, row: Any) -> dict[str, Any]:
    """``ConversationDetail`` fields: the conversation, the visitor's device, and their earlier conversations."""
    detail = await conversation_of(conn, row)
    detail["visitor"]["device"] = device((row.session_metadata or {}).get("user_agent"))
    detail["earlier_conversations"] = await earlier_conversations(conn, principal, row)
    return detail
