"""Inbound webhooks of team bridges (``/bridges/{platform}/{team_id}``) and operators' bridge links.

The webhooks take no bearer token: the platform's signature is their authentication, checked
before anything else. A request that fails it gets 401 and nothing is read from its body.
"""

from __future__ import annotations

import json
import uuid
from typing import Any, NoReturn

import structlog
from litestar import Controller, Request, delete, get, post
from litestar.di import NamedDependency
from litestar.exceptions import NotAuthorizedException, ValidationException
from litestar.params import FromPath

from service.auth.principal import Principal
from service.bridges import links, outbound
from service.bridges.inbound import Bridges, Inbound, handle
from service.bridges.payloads import (
    DISCORD_PING,
    discord_inbound,
    slack_command_inbound,
    slack_event_inbound,
    telegram_inbound,
)
from service.bridges.schemas import BridgeLinkList, LinkCodePublic
from service.bridges.verify import discord_genuine, slack_genuine, telegram_genuine
from service.db.transactions import in_transaction
from service.deps import engine
from service.teams.services import bridge_secret, stored_bridges

log = structlog.get_logger(__name__)

REJECTED = "The request's signature could not be verified"


def _bridges(request: Request[Any, Any, Any]) -> Bridges:
    state = request.app.state
    return Bridges(state.engine, state.redis, state.settings, state.pocketping, state.bridge_registry)


async def _team_bridge(request: Request[Any, Any, Any], team_id: uuid.UUID, platform: str) -> dict[str, Any]:
    """The team's stored settings of this bridge; an unknown team or a bridge not enabled fails like a bad signature."""
    async with engine(request).connect() as conn:
        stored = await stored_bridges(conn, team_id)
    if not stored or not stored.get(platform, {}).get("enabled"):
        _reject(platform, team_id, "bridge not enabled")
    return stored  # type: ignore[no-any-return]


def _reject(platform: str, team_id: uuid.UUID, why: str) -> NoReturn:
    log.info("bridge webhook rejected", platform=platform, team_id=str(team_id), reason=why)
    raise NotAuthorizedException(REJECTED)


def _secret(request: Request[Any, Any, Any], stored: dict[str, Any], platform: str, field: str) -> str | None:
    return bridge_secret(request.app.state.settings.secret_key, stored, platform, field)


def _json(body: bytes) -> dict[str, Any]:
    try:
        payload = json.loads(body)
    except ValueError:
        payload = None
    if not isinstance(payload, dict):
        raise ValidationException(
            detail="The body must be a JSON object", extra=[{"key": "body", "message": "not JSON"}]
        )
    return payload


class BridgeWebhookController(Controller):
    """Where Telegram, Slack and Discord deliver what operators write in a team's chat."""

    path = "/bridges"
    include_in_schema = False

    @post("/telegram/{team_id:uuid}", status_code=200)
    async def telegram(self, team_id: FromPath[uuid.UUID], request: Request[Any, Any, Any]) -> dict[str, Any]:
        """A Telegram update; the webhook's ``secret_token`` must come back in its header."""
        stored = await _team_bridge(request, team_id, "telegram")
        if not telegram_genuine(_secret(request, stored, "telegram", "webhookSecret"), request.headers):
            _reject("telegram", team_id, "secret token")
        await _act(request, stored, telegram_inbound(team_id, _json(await request.body())))
        return {"ok": True}

    @post("/slack/{team_id:uuid}", status_code=200)
    async def slack(self, team_id: FromPath[uuid.UUID], request: Request[Any, Any, Any]) -> dict[str, Any]:
        """Events API callbacks (JSON) and slash commands (form-encoded), signed with the app's signing secret."""
        stored = await _team_bridge(request, team_id, "slack")
        body = await request.body()
        if not slack_genuine(_secret(request, stored, "slack", "signingSecret"), request.headers, body):
            _reject("slack", team_id, "signature")
        if request.headers.get("content-type", "").startswith("application/x-www-form-urlencoded"):
            command = slack_command_inbound(team_id, body)
            answer = None if command is None else await handle(_bridges(request), command)
            # A slash command's answer is the response itself, shown only to its sender.
            return {"response_type": "ephemeral", "text": answer or "Done."}
        payload = _json(body)
        if payload.get("type") == "url_verification":
            return {"challenge": str(payload.get("challenge", ""))}
        if payload.get("type") == "event_callback":
            await _act(request, stored, slack_event_inbound(team_id, payload))
        return {"ok": True}

    @post("/discord/{team_id:uuid}", status_code=200)
    async def discord(self, team_id: FromPath[uuid.UUID], request: Request[Any, Any, Any]) -> dict[str, Any]:
        """Interactions (PING and application commands), signed with the application's Ed25519 key."""
        stored = await _team_bridge(request, team_id, "discord")
        body = await request.body()
        if not discord_genuine(stored["discord"].get("publicKey"), request.headers, body):
            _reject("discord", team_id, "signature")
        payload = _json(body)
        if payload.get("type") == DISCORD_PING:
            return {"type": 1}  # PONG
        inbound = discord_inbound(team_id, payload)
        answer = None if inbound is None else await handle(_bridges(request), inbound)
        # CHANNEL_MESSAGE_WITH_SOURCE, ephemeral (flag 64): only the operator who ran the command sees it.
        return {"type": 4, "data": {"content": answer or "Done.", "flags": 64}}


async def _act(request: Request[Any, Any, Any], stored: dict[str, Any], inbound: Inbound | None) -> None:
    """Handle the message, then post the bot's answer where it was written (Telegram, Slack events)."""
    if inbound is None:
        return
    text = await handle(_bridges(request), inbound)
    if text is None:
        return
    team = await request.app.state.bridge_registry.team(inbound.team_id, stored)
    try:
        await outbound.send(team, inbound.platform, text, chat=inbound.chat_id, thread=inbound.thread_ref)
    except outbound.PlatformError as exc:
        # The operator's message was handled; only the bot's remark is lost.
        log.warning("bridge answer not posted", platform=inbound.platform, team_id=str(inbound.team_id), error=str(exc))


class BridgeLinkController(Controller):
    """Your chat accounts (Telegram, Discord, Slack), linked with a one-time code sent to a team's bot."""

    path = "/api/v1/me/bridge-links"
    tags = ["Me"]

    @get("", operation_id="listMyBridgeLinks", summary="Your linked chat accounts")
    async def list_links(
        self, request: Request[Any, Any, Any], principal: NamedDependency[Principal]
    ) -> BridgeLinkList:
        async with engine(request).connect() as conn:
            return BridgeLinkList(items=await links.list_links(conn, principal.operator_id))

    @post("/codes", operation_id="createBridgeLinkCode", summary="Get a one-time link code", status_code=201)
    async def create_code(
        self, request: Request[Any, Any, Any], principal: NamedDependency[Principal]
    ) -> LinkCodePublic:
        """Send ``/link CODE`` to a team's bot (in its chat or a direct message) within ten minutes; it works once."""
        state = request.app.state
        return await links.new_link_code(state.redis, state.settings, principal.operator_id)

    @delete("/{link_id:uuid}", operation_id="deleteMyBridgeLink", summary="Unlink a chat account", status_code=204)
    async def remove_link(
        self, link_id: FromPath[uuid.UUID], request: Request[Any, Any, Any], principal: NamedDependency[Principal]
    ) -> None:
        """Its messages no longer count as yours; someone else's link is 404."""
        await in_transaction(engine(request), lambda conn: links.remove_link(conn, principal.operator_id, link_id))
