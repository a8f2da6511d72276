"""Bot messages through a team's bridges: into a conversation's thread, a chat, or an operator's direct chat.

Platforms are ``"telegram"``, ``"discord"`` and ``"slack"``, the SDK bridges' names, so
``send_as_operator(..., source_bridge=platform)`` keeps a reply from echoing back to its source.
"""

from __future__ import annotations

import uuid
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from service.bridges.platforms import PlatformBridge, PlatformError, destination
from service.bridges.registry import BridgeRegistry, TeamBridges
from service.db.tables import link_t, team_t

__all__ = [
    "BridgeUnavailable",
    "PlatformError",
    "send",
    "send_direct",
    "team_bridges",
]


class BridgeUnavailable(PlatformError):
    """The team has no enabled bridge for this platform."""


async def team_bridges(conn: AsyncConnection, registry: BridgeRegistry, team_id: uuid.UUID) -> TeamBridges:
    """The team's bridges as its settings stand now."""
    stored: dict[str, Any] = await conn.scalar(sa.select(team_t.c.bridge_settings).where(team_t.c.id == team_id)) or {}
    return await registry.team(team_id, stored)


def _bridge(team: TeamBridges, platform: str) -> PlatformBridge:
    bridge = team.bridges.get(platform)
    if bridge is None:
        raise BridgeUnavailable(f"{platform}: not enabled for this team")
    return bridge


async def send(
    team: TeamBridges, platform: str, text: str, *, chat: str | None = None, thread: str | None = None
) -> str:
    """A bot message through the team's bot: into ``thread`` of the team's chat, or to ``chat`` (a direct chat,
    or the chat a command came from). Returns the platform message id; ``PlatformError`` if not sent."""
    bridge = _bridge(team, platform)
    with destination(chat=chat, thread=thread):
        return await bridge.post(text)


async def send_direct(
    conn: AsyncConnection, team: TeamBridges, operator_id: uuid.UUID, platform: str, text: str
) -> str | None:
    """A bot message to the operator's linked direct chat on ``platform`` through the team's bot.

    None when the operator has not linked an account there. A missing direct chat (Slack and
    Discord need a DM channel opened by the bot) is opened and stored first.
    """
    bridge = _bridge(team, platform)
    link = (
        await conn.execute(
            sa.select(link_t.c.id, link_t.c.external_user_id, link_t.c.direct_chat_id).where(
                link_t.c.operator_id == operator_id, link_t.c.platform == platform
            )
        )
    ).first()
    if link is None:
        return None
    chat = link.direct_chat_id
    if chat is None:
        chat = await bridge.open_direct(link.external_user_id)
        await conn.execute(sa.update(link_t).where(link_t.c.id == link.id).values(direct_chat_id=chat))
    with destination(chat=chat):
        return await bridge.post(text)
