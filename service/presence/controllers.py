"""The signed-in operator's presence: ``GET/PUT /api/v1/me/presence``, ``POST /api/v1/me/heartbeat``."""

from __future__ import annotations

from typing import Any

from litestar import Controller, Request, get, post, put
from litestar.di import NamedDependency
from litestar.params import JSONBody

from service.auth.principal import Principal
from service.auth.sessions import SESSION_COOKIE, session_key
from service.db.transactions import in_transaction
from service.deps import engine
from service.presence import services as presence
from service.presence.schemas import Heartbeat, PresencePublic, PresenceUpdate
from service.queue import enqueue_drain


def _public(request: Request[Any, Any, Any], change: presence.PresenceChange) -> PresencePublic:
    settings = request.app.state.settings
    return PresencePublic.model_validate(
        {
            "status": change.status,
            "status_changed_at": change.status_changed_at,
            "chosen_status": change.chosen_status,
            "clients": change.clients,
            "last_heartbeat_at": change.last_heartbeat_at,
            "heartbeat_timeout_seconds": settings.presence_heartbeat_timeout_seconds,
            "offline_grace_seconds": settings.presence_offline_grace_seconds,
        }
    )


def client_of(request: Request[Any, Any, Any], principal: Principal, client_id: str | None, kind: str | None) -> Any:
    """The caller's client: a browser session's is a web client tied to that session (sign-out ends it)."""
    cookie = request.cookies.get(SESSION_COOKIE) if principal.via == "session" else None
    kind = kind or ("web" if cookie else "api")
    return presence.ClientRef(client_id or kind, kind, session_key(cookie) if cookie else None)


async def _drain(request: Request[Any, Any, Any], change: presence.PresenceChange) -> None:
    for team_id in change.drain_teams:
        await enqueue_drain(request.app.state.redis, team_id, "operator_online")


class PresenceController(Controller):
    path = "/api/v1/me"
    tags = ["Presence"]

    @get("/presence", operation_id="getPresence", summary="Your presence")
    async def get_presence(
        self, request: Request[Any, Any, Any], principal: NamedDependency[Principal]
    ) -> PresencePublic:
        """Your status, since when, your choice if any, and your live clients."""
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
        """online: your presence follows your clients again, and this one is online (your teams' queues are
        drained to you); away keeps yours and takes none; offline keeps them for each team's grace period, then
        its offline policy applies. away and offline hold, whatever your clients do, until you choose online."""
        client = client_of(request, principal, data.client_id, data.kind)
        timeout = request.app.state.settings.presence_heartbeat_timeout_seconds
        change = await in_transaction(
            engine(request),
            lambda conn: presence.choose(
                conn, principal.operator_id, data.status, client=client, lease=timeout, reason="explicit"
            ),
        )
        await _drain(request, change)
        return _public(request, change)

    @post("/heartbeat", operation_id="sendHeartbeat", summary="Tell Switchboard this client is alive", status_code=200)
    async def heartbeat(
        self,
        request: Request[Any, Any, Any],
        principal: NamedDependency[Principal],
        data: JSONBody[Heartbeat | None] = None,
    ) -> PresencePublic:
        """This client (``clientId``, e.g. the mobile app in the foreground) is alive for heartbeatTimeoutSeconds;
        send one every third of that. ``active``: the user did something (auto-away counts from then)."""
        beat = data or Heartbeat()
        client = client_of(request, principal, beat.client_id, beat.kind)
        timeout = request.app.state.settings.presence_heartbeat_timeout_seconds
        change = await in_transaction(
            engine(request),
            lambda conn: presence.heartbeat(conn, principal.operator_id, client, active=beat.active, lease=timeout),
        )
        await _drain(request, change)
        return _public(request, change)
