"""Team availability pushed to widgets: ``team.availability`` events become the widget's ``presence`` event.

The presence service records ``team.availability`` when a team's first member comes online or its
last online member leaves. The worker reads those events in id order with a cursor of its own and
publishes each on the hub's team channel; every api process sends it to its sockets of that team's
visitors. A failed publish rolls the cursor back, so the event is published again.
"""

from __future__ import annotations

from arq.connections import ArqRedis
from pocketping.models import WebSocketEvent
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from service.db.tables import event_t
from service.gateway.hub import SwitchboardPocketPing
from service.realtime.relay import EventRelay
from service.settings import Settings

AVAILABILITY_CURSOR = "widget-availability"


class AvailabilityRelay(EventRelay):
    """The worker's reader of ``team.availability`` events, publishing ``{type: "presence", data: {online}}``."""

    cursor = AVAILABILITY_CURSOR

    def __init__(self, engine: AsyncEngine, arq: ArqRedis, settings: Settings, pocketping: SwitchboardPocketPing):
        super().__init__(engine, arq, settings)
        self._pocketping = pocketping

    async def fan_out(self, conn: AsyncConnection, event_ids: list[int]) -> list[int]:
        """Publish the batch's availability changes in order; there is no outbox work."""
        changes = await conn.execute(
            select(event_t.c.team_id, event_t.c.data)
            .where(event_t.c.id.in_(event_ids), event_t.c.kind == "team.availability")
            .order_by(event_t.c.id)
        )
        for change in changes:
            presence = WebSocketEvent(type="presence", data={"online": change.data["online"]})
            await self._pocketping.publish_to_team(change.team_id, presence)
        return []

    async def announce(self) -> None:
        """Nothing to announce: the main relay tells the api instances about new events."""
