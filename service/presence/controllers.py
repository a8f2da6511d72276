"""The signed-in operator's presence: ``PUT /api/v1/me/presence``, ``POST /api/v1/me/heartbeat``."""

from __future__ import annotations

from typing import Any

from litestar import Controller, Request, get, post, put
from litestar.di import NamedDependency
from litestar.params import JSONBody

from service.auth.principal import Principal
from service.db.transactions import in_transaction
from service.deps import engine
from service.presence import services as presence
from service.presence.schemas import PresencePublic, PresenceUpdate
from service.queue import enqueue_drain


def _public(request: Request[Any, Any, Any], change: presence.PresenceChange) -> PresencePublic:
    return PresencePublic(
        status=change.status,  # type: ignore[arg-type]
        status_changed_at=change.status_changed_at,
        last_heartbeat_at=change.last_heartbeat_at,
        heartbeat_timeout_seconds=request.app.state.settings.presence_heartbeat_timeout_seconds,
    )


class PresenceController(Controller):
    path = "/api/v1/me"
    tags = ["Presence"]

    @get("/presence", operation_id="getPresence", summary="Your presence")
    async def get_presence(
        self, request: Request[Any, Any, Any], principal: NamedDependency[Principal]
    ) -> PresencePublic:
        """Your status, when it last changed and your client's last heartbeat."""
        return _public(
            request,
            await in_transaction(engine(request), lambda conn: presence.current(conn, principal.operator_id)),
        )

    @put("/presence", operation_id="setPresence", summary="Set your presence")
    async def set_presence(
        self,
        data: JSONBody[PresenceUpdate],
        request: Request[Any, Any, Any],
        principal: NamedDependency[Principal],
    ) -> PresencePublic:
        """online takes new work (your teams' queues are drained to you); away keeps yours and takes none;
        offline keeps them for each team's grace period, then its offline policy applies."""
        state = request.app.state
        change = await in_transaction(
            state.engine,
            lambda conn: presence.set_presence(conn, principal.operator_id, data.status, reason="explicit"),
        )
        for team_id in change.drain_teams:
            await enqueue_drain(state.redis, team_id, "operator_online")
        return _public(request, change)

    @post("/heartbeat", operation_id="sendHeartbeat", summary="Tell Switchboard your client is alive", status_code=200)
    async def heartbeat(self, request: Request[Any, Any, Any], principal: NamedDependency[Principal]) -> PresencePublic:
        """Once sent, keep sending within heartbeatTimeoutSeconds, or you go offline (mobile clients)."""
        return _public(
            request,
            await in_transaction(engine(request), lambda conn: presence.heartbeat(conn, principal.operator_id)),
        )
