"""The authorization matrix: every operator route of the app, every kind of caller, the exact status each gets.

Adding a route? Add ONE line to ``ROWS`` below, e.g.
    "POST /api/v1/conversations/{conversation_id}/notes": Row(member(201), body={"content": "hi"}),
The key is "METHOD path" with path parameters written without their type (``{conversation_id}``).
Path parameters are filled by ``PARAMS`` (a fresh object per request, so one caller's change does not
affect the next); register a factory there for a new parameter name, or pass ``params=`` for one row.
``body``/``query`` may be values or functions of ``(world, caller)`` (e.g. to name the team-A operator).
"""

from __future__ import annotations

import itertools
import re
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from litestar import Litestar, get
from litestar.params import FromPath
from litestar.routes import HTTPRoute
from redis.asyncio import Redis
from sqlalchemy.ext.asyncio import AsyncEngine

from service.app import create_app
from service.auth.oidc import OidcClient, OidcError
from service.auth.sessions import CSRF_HEADER, create_session
from service.db.models import (
    ApiToken,
    BridgeLink,
    CannedResponse,
    ConversationTag,
    Macro,
    Message,
    Outbox,
    PushDevice,
    Screenshot,
    Site,
    SlaPolicy,
    Tag,
    WebhookEndpoint,
)
from service.settings import Settings
from tests.conftest import SECRET, RunningApi, run_api
from tests.factories import add_member, app_access_token, bearer, make_operator, make_team, personal_token
from tests.support.bridges import bridge_settings
from tests.support.files import png
from tests.support.idp import pkce_pair
from tests.support.oidc import idp_tokens, oidc_settings
from tests.support.routing import make_conversation

CALLERS = ("anonymous", "operator", "other_team", "lead", "admin", "revoked", "expired_jwt")

# Routes this matrix does not cover, and why.
EXCLUDED_PREFIXES = (
    "/pocketping/",  # the widget gateway: visitors, authenticated by their session id, not operators
    "/healthz",  # health checks: public by design
    "/readyz",
    "/metrics",  # by network, not by caller (METRICS_ALLOWED_CIDRS): tests/integration/ops/test_metrics.py
    "/schema",  # the OpenAPI document and its viewers: public by design
    "/auth/",  # sign-in, callback, logout: tested end to end in test_oidc.py
)
EXCLUDED_METHODS = frozenset({"HEAD", "OPTIONS"})  # added by Litestar itself (CORS preflight)


@dataclass(frozen=True)
class Expect:
    """The exact status for each kind of caller."""

    anonymous: int
    operator: int
    other_team: int
    lead: int
    admin: int
    revoked: int
    expired_jwt: int


def member(ok: int) -> Expect:
    """Team A's own objects: its members (operator, lead) and admins; another team's operator gets 404."""
    return Expect(401, ok, 404, ok, ok, 401, 401)


def lead_only(ok: int) -> Expect:
    """Team A's configuration: its leads and admins; its operators 403; another team's operator 404."""
    return Expect(401, 403, 404, ok, ok, 401, 401)


def admin_only(ok: int) -> Expect:
    return Expect(401, 403, 403, 403, ok, 401, 401)


def page(ok: int, other_team: int | None = None, operator: int | None = None) -> Expect:
    """A dashboard page: anyone without a valid credential is sent to sign in (303), others as for the API."""
    return Expect(303, ok if operator is None else operator, ok if other_team is None else other_team, ok, ok, 303, 303)


def signed_in(ok: int) -> Expect:
    """Anyone signed in, each acting on their own things (``/me``)."""
    return Expect(401, ok, ok, ok, ok, 401, 401)


def platform_signed() -> Expect:
    """Bridge webhooks: only the platform's signature counts, so every caller here (none signs) gets 401."""
    return Expect(401, 401, 401, 401, 401, 401, 401)


def scim() -> Expect:
    """``/scim/v2``: only an admin's personal access token with the ``scim`` scope (tests/integration/scim).

    The operators' tokens here lack the scope (403); sessions, native-app tokens and JWTs are not accepted (401).
    """
    return Expect(401, 403, 403, 401, 401, 401, 401)


def everyone(status: int) -> Expect:
    """Public routes: credentials make no difference."""
    return Expect(status, status, status, status, status, status, status)


@dataclass
class World:
    """Team A (operator, lead), team B (its operator), an admin in no team, and each caller's credential."""

    engine: AsyncEngine
    team_a: uuid.UUID
    team_b: uuid.UUID
    operators: dict[str, uuid.UUID]  # caller -> operator id (revoked and expired_jwt belong to team A's operator)
    headers: dict[str, dict[str, str]]


Value = Any | Callable[[World, str], Any]
Param = Callable[[World, str], Awaitable[str]]


@dataclass(frozen=True)
class Row:
    expect: Expect
    body: Value = None
    query: Value = None
    # A multipart body instead of JSON: {field: (name, bytes, type)}.
    files: Value = None
    params: dict[str, Param] = field(default_factory=dict)
    # An endless response (an event stream): only its status is read.
    streams: bool = False
    # The statuses when the service runs in development mode (`switchboard dev`), for routes that differ there.
    development: Expect | None = None


async def conversation_of_team_a(world: World, caller: str, **values: Any) -> str:
    conversation_id, _ = await make_conversation(world.engine, world.team_a, **{"status": "queued", **values})
    return conversation_id


async def closed_conversation_of_team_a(world: World, caller: str) -> str:
    return await conversation_of_team_a(world, caller, status="closed", closed_at=datetime.now(UTC))


async def dashboard_script(world: World, caller: str) -> str:
    return "dashboard.js"


async def demo_script(world: World, caller: str) -> str:
    return "demo.js"


async def any_attachment(world: World, caller: str) -> str:
    return "att-0123456789abcdef01234567"


async def team_section(world: World, caller: str) -> str:
    return "members"


async def own_token(world: World, caller: str) -> str:
    """A personal access token of the caller (of team A's operator for callers with no operator)."""
    operator_id = world.operators.get(caller, world.operators["operator"])
    async with world.engine.begin() as conn:
        token = await conn.execute(
            sa.insert(ApiToken.__table__)  # type: ignore[attr-defined]
            .values(operator_id=operator_id, name="matrix", token_hash=uuid.uuid4().hex, prefix="sbp_matrix", scopes=[])
            .returning(ApiToken.__table__.c.id)  # type: ignore[attr-defined]
        )
        return str(token.scalar_one())


async def own_bridge_link(world: World, caller: str) -> str:
    """A Telegram link of the caller's (of team A's operator for callers with no operator)."""
    operator_id = world.operators.get(caller, world.operators["operator"])
    async with world.engine.begin() as conn:
        await conn.execute(sa.delete(BridgeLink.__table__).where(BridgeLink.__table__.c.operator_id == operator_id))  # type: ignore[attr-defined]
        link = await conn.scalar(
            sa.insert(BridgeLink.__table__)  # type: ignore[attr-defined]
            .values(operator_id=operator_id, platform="telegram", external_user_id=uuid.uuid4().hex)
            .returning(BridgeLink.__table__.c.id)  # type: ignore[attr-defined]
        )
    return str(link)


async def own_device(world: World, caller: str) -> str:
    """An FCM device of the caller's (of team A's operator for callers with no operator)."""
    operator_id = world.operators.get(caller, world.operators["operator"])
    async with world.engine.begin() as conn:
        device = await conn.scalar(
            sa.insert(PushDevice.__table__)  # type: ignore[attr-defined]
            .values(operator_id=operator_id, platform="fcm", token=uuid.uuid4().hex)
            .returning(PushDevice.__table__.c.id)  # type: ignore[attr-defined]
        )
    return str(device)


async def team_with_bridges(world: World, caller: str) -> str:
    """A team whose three bridges are enabled with their secrets, so a 401 is the missing signature's."""
    return str(await make_team(world.engine, bridge_settings=bridge_settings(SECRET)))


async def team_a(world: World, caller: str) -> str:
    return str(world.team_a)


async def fresh_team(world: World, caller: str) -> str:
    """A team of its own, with team A's operator and lead in the same roles (for deletions)."""
    team_id = await make_team(world.engine)
    await add_member(world.engine, team_id, world.operators["operator"], "operator")
    await add_member(world.engine, team_id, world.operators["lead"], "lead")
    return str(team_id)


async def member_of_team_a(world: World, caller: str) -> str:
    """A fresh operator in team A, so each caller changes or removes a membership of their own."""
    operator_id = await make_operator(world.engine, "Mia")
    await add_member(world.engine, world.team_a, operator_id, "operator")
    return str(operator_id)


async def canned_of_team_a(world: World, caller: str) -> str:
    """A fresh team-A canned response (fresh, so one caller's delete does not affect the next)."""
    async with world.engine.begin() as conn:
        canned_id = await conn.scalar(
            sa.insert(CannedResponse.__table__)  # type: ignore[attr-defined]
            .values(team_id=world.team_a, shortcut=uuid.uuid4().hex[:12], title="t", body="Hi {{visitor.name}}")
            .returning(CannedResponse.__table__.c.id)  # type: ignore[attr-defined]
        )
    return str(canned_id)


async def canned_for_render(world: World, caller: str) -> str:
    """A team-A canned response, and a team-A conversation named after the caller to render it for."""
    await make_conversation(world.engine, world.team_a, id=f"matrix-{caller}")
    return await canned_of_team_a(world, caller)


def _priority(caller: str) -> int:
    """A priority of its own per caller: each caller's policy (made for it, or posted by it) is unique in team A."""
    return CALLERS.index(caller) + 1


_MADE_POLICIES = itertools.count(-1, -1)


async def sla_policy_of_team_a(world: World, caller: str) -> str:
    """A team-A policy, each for a priority no other has (negative: the posted ones use positive ones)."""
    policy_id = uuid.uuid4()
    async with world.engine.begin() as conn:
        await conn.execute(
            sa.insert(SlaPolicy.__table__).values(  # type: ignore[attr-defined]
                id=policy_id, team_id=world.team_a, priority=next(_MADE_POLICIES), first_response_seconds=60
            )
        )
    return str(policy_id)


async def webhook_of_team_a(world: World, caller: str) -> str:
    webhook_id = uuid.uuid4()
    async with world.engine.begin() as conn:
        await conn.execute(
            sa.insert(WebhookEndpoint.__table__).values(  # type: ignore[attr-defined]
                id=webhook_id, team_id=world.team_a, url="http://127.0.0.1:9/hook", secret_encrypted="x"
            )
        )
    return str(webhook_id)


async def any_site(world: World, caller: str) -> str:
    """A connected site of the deployment (sites are not a team's: admins only)."""
    site_id = uuid.uuid4()
    async with world.engine.begin() as conn:
        await conn.execute(
            sa.insert(Site.__table__).values(  # type: ignore[attr-defined]
                id=site_id,
                name="matrix",
                key_hash=uuid.uuid4().hex,
                key_prefix="sbk_matrix",
                callback_secret_encrypted="x",
            )
        )
    return str(site_id)


async def with_dead_delivery(world: World, caller: str) -> str:
    """A team-A webhook per caller with one given-up delivery (what ``dead_delivery_of`` names)."""
    webhook_id = await webhook_of_team_a(world, caller)
    async with world.engine.begin() as conn:
        await conn.execute(
            sa.insert(Outbox.__table__).values(  # type: ignore[attr-defined]
                id=int(await dead_delivery_of(world, caller)),
                kind="webhook",
                payload={"event": {"id": None, "type": "webhook.test"}},
                webhook_endpoint_id=webhook_id,
                attempts=1,
                dead_at=datetime.now(UTC),
            )
        )
    return webhook_id


async def dead_delivery_of(world: World, caller: str) -> str:
    return str(900_000 + CALLERS.index(caller))


def with_own_message(tag: str) -> Param:
    """A team-A conversation per caller holding a fresh message of team A's operator (what ``message_of`` names)."""

    async def factory(world: World, caller: str) -> str:
        conversation_id = await conversation_of_team_a(world, caller, id=f"edit-{tag}-{caller}", status="assigned")
        async with world.engine.begin() as conn:
            await conn.execute(
                sa.insert(Message.__table__).values(  # type: ignore[attr-defined]
                    id=f"{conversation_id}-m",
                    conversation_id=conversation_id,
                    sender="operator",
                    operator_id=world.operators["operator"],
                    content="hello",
                    created_at=datetime.now(UTC),
                )
            )
        return conversation_id

    return factory


def message_of(tag: str) -> Param:
    async def factory(world: World, caller: str) -> str:
        return f"edit-{tag}-{caller}-m"

    return factory


async def with_screenshot(world: World, caller: str) -> str:
    """A team-A conversation per caller with a stored screenshot (what ``screenshot_of`` names)."""
    conversation_id = await conversation_of_team_a(world, caller, id=f"shot-{caller}")
    async with world.engine.begin() as conn:
        await conn.execute(
            sa.insert(Screenshot.__table__).values(  # type: ignore[attr-defined]
                id=uuid.uuid5(uuid.NAMESPACE_URL, conversation_id),
                conversation_id=conversation_id,
                expires_at=datetime.now(UTC),
                status="done",
                content=b"\x89PNG\r\n\x1a\n",
                mime_type="image/png",
                size=8,
            )
        )
    return conversation_id


async def screenshot_of(world: World, caller: str) -> str:
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"shot-{caller}"))


async def tag_of_team_a(world: World, caller: str) -> str:
    """A fresh team-A tag (fresh, so one caller's delete does not affect the next)."""
    async with world.engine.begin() as conn:
        tag_id = await conn.scalar(
            sa.insert(Tag.__table__)  # type: ignore[attr-defined]
            .values(id=uuid.uuid4(), team_id=world.team_a, name=uuid.uuid4().hex[:12])
            .returning(Tag.__table__.c.id)  # type: ignore[attr-defined]
        )
    return str(tag_id)


async def macro_of_team_a(world: World, caller: str) -> str:
    """A fresh team-A macro that closes the conversation (fresh, so one caller's delete does not affect the next)."""
    async with world.engine.begin() as conn:
        macro_id = await conn.scalar(
            sa.insert(Macro.__table__)  # type: ignore[attr-defined]
            .values(id=uuid.uuid4(), team_id=world.team_a, name=uuid.uuid4().hex[:12], action="close")
            .returning(Macro.__table__.c.id)  # type: ignore[attr-defined]
        )
    return str(macro_id)


async def with_tag_on(world: World, caller: str) -> str:
    """A team-A conversation per caller with a team-A tag on it (what ``tag_on`` names)."""
    conversation_id = await conversation_of_team_a(world, caller, id=f"tagged-{caller}")
    async with world.engine.begin() as conn:
        tag_id = uuid.uuid5(uuid.NAMESPACE_URL, conversation_id)
        await conn.execute(
            sa.insert(Tag.__table__).values(id=tag_id, team_id=world.team_a, name=conversation_id)  # type: ignore[attr-defined]
        )
        await conn.execute(
            sa.insert(ConversationTag.__table__).values(  # type: ignore[attr-defined]
                conversation_id=conversation_id, tag_id=tag_id, source="operator"
            )
        )
    return conversation_id


async def conversation_with_matrix_tag(world: World, caller: str) -> str:
    """A team-A conversation, and the team-A tag ``matrix-tag`` (once) to put on it."""
    async with world.engine.begin() as conn:
        await conn.execute(
            sa.dialects.postgresql.insert(Tag.__table__)  # type: ignore[attr-defined]
            .values(id=uuid.uuid5(uuid.NAMESPACE_URL, "matrix-tag"), team_id=world.team_a, name="matrix-tag")
            .on_conflict_do_nothing()
        )
    return await conversation_of_team_a(world, caller)


async def tag_on(world: World, caller: str) -> str:
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"tagged-{caller}"))


def analytics_query(world: World) -> dict[str, str]:
    return {"teamId": str(world.team_a), "from": "2026-11-01T00:00:00Z", "to": "2026-12-01T00:00:00Z"}


def scim_param(value: str) -> Param:
    async def factory(world: World, caller: str) -> str:
        return value

    return factory


async def scim_user_of_team_a(world: World, caller: str) -> str:
    return str(world.operators["operator"])


# Default factory per path parameter name.
PARAMS: dict[str, Param] = {
    "kind": scim_param("Users"),
    "resource_id": scim_user_of_team_a,
    "conversation_id": conversation_of_team_a,
    "team_id": team_a,
    "token_id": own_token,
    "operator_id": member_of_team_a,
    "canned_id": canned_of_team_a,
    "tag_id": tag_of_team_a,
    "macro_id": macro_of_team_a,
    "webhook_id": webhook_of_team_a,
    "policy_id": sla_policy_of_team_a,
    "link_id": own_bridge_link,
    "device_id": own_device,
    "site_id": any_site,
}

NATIVE_APP = "switchboard-mobile"
_, CHALLENGE = pkce_pair()

ROWS: dict[str, Row] = {
    # Native-app sign-in (Switchboard as the app's OAuth server): public by design, credentials play no part.
    # /oauth/authorize sends everyone on to the IdP; /oauth/token and /oauth/revoke refuse a body that is no form.
    "GET /.well-known/oauth-authorization-server": Row(everyone(200)),
    "GET /oauth/authorize": Row(
        everyone(302),
        query={
            "response_type": "code",
            "client_id": NATIVE_APP,
            "redirect_uri": "http://127.0.0.1:49152/callback",
            "code_challenge": CHALLENGE,
            "code_challenge_method": "S256",
        },
    ),
    "POST /oauth/token": Row(everyone(400), body={"grant_type": "authorization_code"}),
    "POST /oauth/revoke": Row(everyone(400), body={"token": "sba_x"}),
    "GET /api/v1/me": Row(signed_in(200)),
    "GET /api/v1/me/tokens": Row(signed_in(200)),
    "POST /api/v1/me/tokens": Row(signed_in(201), body={"name": "matrix", "scopes": ["read"]}),
    "DELETE /api/v1/me/tokens/{token_id}": Row(signed_in(204)),
    # chat bridge links (each caller's own) and the platforms' webhooks (signature, not bearer: all 401 unsigned)
    "GET /api/v1/me/bridge-links": Row(signed_in(200)),
    "POST /api/v1/me/bridge-links/codes": Row(signed_in(201)),
    "DELETE /api/v1/me/bridge-links/{link_id}": Row(signed_in(204)),
    "GET /api/v1/me/devices": Row(signed_in(200)),
    "POST /api/v1/me/devices": Row(signed_in(201), body={"platform": "fcm", "token": "matrix-fcm-token"}),
    "DELETE /api/v1/me/devices/{device_id}": Row(signed_in(204)),
    "POST /bridges/telegram/{team_id}": Row(
        platform_signed(), body={"update_id": 1}, params={"team_id": team_with_bridges}
    ),
    "POST /bridges/slack/{team_id}": Row(
        platform_signed(), body={"type": "url_verification", "challenge": "x"}, params={"team_id": team_with_bridges}
    ),
    "POST /bridges/discord/{team_id}": Row(platform_signed(), body={"type": 1}, params={"team_id": team_with_bridges}),
    # routing
    # An admin is in no team, so cannot hold the conversation: 409.
    "POST /api/v1/conversations/{conversation_id}/claim": Row(Expect(401, 200, 404, 200, 409, 401, 401)),
    "POST /api/v1/conversations/{conversation_id}/transfer": Row(
        member(200), body=lambda world, caller: {"teamId": str(world.team_b)}
    ),
    "POST /api/v1/conversations/{conversation_id}/close": Row(member(200)),
    "POST /api/v1/conversations/{conversation_id}/reopen": Row(
        member(200), params={"conversation_id": closed_conversation_of_team_a}
    ),
    "GET /api/v1/conversations/{conversation_id}/routing-decisions": Row(member(200)),
    # macros: members of the conversation's team apply the team's (this one closes the waiting conversation)
    "POST /api/v1/conversations/{conversation_id}/macros/{macro_id}": Row(member(200)),
    # tags on conversations: members of the conversation's team (admins too)
    "GET /api/v1/conversations/{conversation_id}/tags": Row(member(200)),
    "POST /api/v1/conversations/{conversation_id}/tags": Row(
        member(200),
        body=lambda world, caller: {"tagId": str(uuid.uuid5(uuid.NAMESPACE_URL, "matrix-tag"))},
        params={"conversation_id": conversation_with_matrix_tag},
    ),
    "DELETE /api/v1/conversations/{conversation_id}/tags/{tag_id}": Row(
        member(200), params={"conversation_id": with_tag_on, "tag_id": tag_on}
    ),
    # conversations
    "GET /api/v1/conversations": Row(signed_in(200)),
    "GET /api/v1/conversations/{conversation_id}": Row(member(200)),
    "GET /api/v1/conversations/{conversation_id}/messages": Row(member(200)),
    "POST /api/v1/conversations/{conversation_id}/attachments": Row(
        member(201), files={"file": ("map.png", png(), "image/png")}
    ),
    # Downloads are authorized by their signed URL alone: without one (or with credentials only), 403.
    "GET /files/{attachment_id}": Row(everyone(403), params={"attachment_id": any_attachment}),
    # Members claim the waiting conversation by replying; the admin (in no team) replies without taking it.
    "POST /api/v1/conversations/{conversation_id}/messages": Row(member(201), body={"content": "hi"}),
    # one's own message only: team A's operator wrote it; its lead and an admin see it but may not change it (403)
    "PATCH /api/v1/conversations/{conversation_id}/messages/{message_id}": Row(
        Expect(401, 200, 404, 403, 403, 401, 401),
        body={"content": "hello again"},
        params={"conversation_id": with_own_message("patch"), "message_id": message_of("patch")},
    ),
    "DELETE /api/v1/conversations/{conversation_id}/messages/{message_id}": Row(
        Expect(401, 200, 404, 403, 403, 401, 401),
        params={"conversation_id": with_own_message("delete"), "message_id": message_of("delete")},
    ),
    "GET /api/v1/conversations/{conversation_id}/notes": Row(member(200)),
    "POST /api/v1/conversations/{conversation_id}/notes": Row(member(201), body={"body": "@lena have a look"}),
    "POST /api/v1/conversations/{conversation_id}/typing": Row(member(204), body={"isTyping": True}),
    "POST /api/v1/conversations/{conversation_id}/read": Row(member(200)),
    "POST /api/v1/conversations/{conversation_id}/screenshots": Row(member(201)),
    "GET /api/v1/conversations/{conversation_id}/screenshots": Row(member(200)),
    "GET /api/v1/conversations/{conversation_id}/screenshots/{screenshot_id}/image": Row(
        member(200), params={"conversation_id": with_screenshot, "screenshot_id": screenshot_of}
    ),
    # teams
    "GET /api/v1/teams": Row(signed_in(200)),
    "POST /api/v1/teams": Row(admin_only(201), body=lambda world, caller: {"name": f"new-{caller}"}),
    "GET /api/v1/teams/{team_id}": Row(member(200)),
    "PATCH /api/v1/teams/{team_id}": Row(lead_only(200), body={"welcomeMessage": "Hello"}),
    "DELETE /api/v1/teams/{team_id}": Row(admin_only(204), params={"team_id": fresh_team}),
    "GET /api/v1/teams/{team_id}/members": Row(member(200)),
    "POST /api/v1/teams/{team_id}/members": Row(
        lead_only(201),
        body=lambda world, caller: {"operatorId": str(world.operators.get(f"newcomer_{caller}", uuid.uuid4()))},
    ),
    "PATCH /api/v1/teams/{team_id}/members/{operator_id}": Row(lead_only(200), body={"capacity": 2}),
    "DELETE /api/v1/teams/{team_id}/members/{operator_id}": Row(lead_only(204)),
    "GET /api/v1/teams/{team_id}/rules": Row(member(200)),
    "PUT /api/v1/teams/{team_id}/rules": Row(
        lead_only(200), body={"rules": [{"name": "fr", "conditions": {"language": "fr"}}]}
    ),
    # the policy simulator replays the team's history, colleagues' load included: its leads and admins
    "POST /api/v1/teams/{team_id}/simulations": Row(
        lead_only(200),
        body={"from": "2026-11-01T00:00:00Z", "to": "2026-11-08T00:00:00Z", "draft": {"routingPolicy": "least_busy"}},
    ),
    "GET /api/v1/teams/{team_id}/tags": Row(member(200)),
    "POST /api/v1/teams/{team_id}/tags": Row(lead_only(201), body=lambda world, caller: {"name": f"tag-{caller}"}),
    "PATCH /api/v1/teams/{team_id}/tags/{tag_id}": Row(lead_only(200), body={"color": "#112233"}),
    "DELETE /api/v1/teams/{team_id}/tags/{tag_id}": Row(lead_only(204)),
    "GET /api/v1/teams/{team_id}/macros": Row(member(200)),
    "POST /api/v1/teams/{team_id}/macros": Row(
        lead_only(201), body=lambda world, caller: {"name": f"macro-{caller}", "action": "close"}
    ),
    "PUT /api/v1/teams/{team_id}/macros/{macro_id}": Row(
        lead_only(200), body=lambda world, caller: {"name": f"put-{caller}", "action": "close"}
    ),
    "DELETE /api/v1/teams/{team_id}/macros/{macro_id}": Row(lead_only(204)),
    "GET /api/v1/teams/{team_id}/bridges": Row(lead_only(200)),
    "PATCH /api/v1/teams/{team_id}/bridges": Row(lead_only(200), body={"discord": {"channelId": "123456789012345678"}}),
    # canned responses: team A's (members read, leads change) and, for creation, each caller's own
    "GET /api/v1/canned-responses": Row(signed_in(200)),
    "POST /api/v1/canned-responses": Row(
        signed_in(201), body=lambda world, caller: {"shortcut": caller.replace("_", "-"), "title": "t", "body": "b"}
    ),
    "GET /api/v1/canned-responses/{canned_id}": Row(member(200)),
    "PATCH /api/v1/canned-responses/{canned_id}": Row(lead_only(200), body={"title": "New"}),
    "DELETE /api/v1/canned-responses/{canned_id}": Row(lead_only(204)),
    "POST /api/v1/canned-responses/preview": Row(signed_in(200), body={"body": 'Hi {{visitor.name || "there"}}'}),
    "POST /api/v1/canned-responses/{canned_id}/render": Row(
        member(200),
        body=lambda world, caller: {"conversationId": f"matrix-{caller}"},
        params={"canned_id": canned_for_render},
    ),
    # operators (administration)
    "GET /api/v1/operators": Row(admin_only(200)),
    "GET /api/v1/operators/{operator_id}": Row(admin_only(200)),
    "PATCH /api/v1/operators/{operator_id}": Row(admin_only(200), body={"displayName": "Renamed"}),
    # history: the audit log (admins), a team's assignments (its leads)
    "GET /api/v1/audit-events": Row(admin_only(200)),
    "GET /api/v1/teams/{team_id}/assignments": Row(lead_only(200)),
    # realtime: everyone signed in gets their own stream, filtered to what they may see
    "GET /api/v1/events": Row(signed_in(200), streams=True),
    # SLA policies: the team's leads and admins
    "GET /api/v1/teams/{team_id}/sla-policies": Row(lead_only(200)),
    "POST /api/v1/teams/{team_id}/sla-policies": Row(
        lead_only(201), body=lambda world, caller: {"priority": _priority(caller), "firstResponseSeconds": 300}
    ),
    "GET /api/v1/teams/{team_id}/sla-policies/{policy_id}": Row(lead_only(200)),
    "PATCH /api/v1/teams/{team_id}/sla-policies/{policy_id}": Row(lead_only(200), body={"resolutionSeconds": 3600}),
    "DELETE /api/v1/teams/{team_id}/sla-policies/{policy_id}": Row(lead_only(204)),
    # webhooks: the team's leads and admins
    "GET /api/v1/teams/{team_id}/webhooks": Row(lead_only(200)),
    "POST /api/v1/teams/{team_id}/webhooks": Row(lead_only(201), body={"url": "https://example.com/hook"}),
    "GET /api/v1/teams/{team_id}/webhooks/{webhook_id}": Row(lead_only(200)),
    "PATCH /api/v1/teams/{team_id}/webhooks/{webhook_id}": Row(lead_only(200), body={"enabled": False}),
    "DELETE /api/v1/teams/{team_id}/webhooks/{webhook_id}": Row(lead_only(204)),
    "POST /api/v1/teams/{team_id}/webhooks/{webhook_id}/test": Row(lead_only(202)),
    "GET /api/v1/teams/{team_id}/webhooks/{webhook_id}/deliveries": Row(lead_only(200)),
    "POST /api/v1/teams/{team_id}/webhooks/{webhook_id}/deliveries/{delivery_id}/redeliver": Row(
        lead_only(202), params={"webhook_id": with_dead_delivery, "delivery_id": dead_delivery_of}
    ),
    # presence (each caller's own)
    "GET /api/v1/me/presence": Row(signed_in(200)),
    "PUT /api/v1/me/presence": Row(signed_in(200), body={"status": "away"}),
    "POST /api/v1/me/heartbeat": Row(signed_in(200)),
    # AI controls; team A has AI off, so handing over is refused with 409
    "POST /api/v1/conversations/{conversation_id}/ai/pause": Row(member(200)),
    "POST /api/v1/conversations/{conversation_id}/ai/resume": Row(member(200)),
    "POST /api/v1/conversations/{conversation_id}/ai/handover": Row(member(409)),
    "POST /api/v1/conversations/{conversation_id}/ai/takeback": Row(member(200)),
    # The dashboard: pages and the fragments they refresh; its static files are public.
    "GET /": Row(everyone(303)),  # the root sends everyone to /app, which signs them in
    "GET /app": Row(page(200)),
    "GET /app/inbox": Row(page(200)),
    "GET /app/conversations/{conversation_id}": Row(page(200, other_team=404)),
    "GET /app/conversations/{conversation_id}/thread": Row(page(200, other_team=404)),
    "GET /app/conversations/{conversation_id}/transfer-targets": Row(page(200, other_team=404)),
    "GET /app/conversations/{conversation_id}/routing": Row(page(200, other_team=404)),
    # analytics for team A: its lead and admins; its operator 403, another team's operator 404 (as in the API)
    "GET /app/analytics": Row(
        page(200, other_team=404, operator=403),
        query=lambda world, caller: {"teamId": str(world.team_a), "from": "2026-11-01", "to": "2026-11-30"},
    ),
    # canned responses and profile pages: each caller's own and their teams'
    "GET /app/canned": Row(page(200)),
    "GET /app/canned/list": Row(page(200)),
    "GET /app/profile": Row(page(200)),
    "GET /app/profile/details": Row(page(200)),
    # The visitor demo exists in development mode only, for anyone (it plays a visitor).
    "GET /demo": Row(everyone(404), development=everyone(200)),
    "GET /demo/{file_path}": Row(everyone(404), params={"file_path": demo_script}, development=everyone(200)),
    # team settings: team A's lead and admins; its operator 403, another team's operator 404 (as in the API);
    # the list of teams is for anyone who leads one (403 for operators who lead none).
    "GET /app/teams": Row(page(200, other_team=403, operator=403)),
    "GET /app/teams/{team_id}": Row(page(200, other_team=404, operator=403)),
    "GET /app/teams/{team_id}/sections/{section}": Row(
        page(200, other_team=404, operator=403), params={"section": team_section}
    ),
    "GET /app/teams/{team_id}/webhooks/{webhook_id}/deliveries": Row(page(200, other_team=404, operator=403)),
    "GET /app/teams/{team_id}/simulator": Row(page(200, other_team=404, operator=403)),
    "GET /app/sw.js": Row(everyone(200)),  # the service worker: static, fetched by the browser itself
    "GET /app/static/{file_path}": Row(
        Expect(200, 200, 200, 200, 200, 200, 200), params={"file_path": dashboard_script}
    ),
    # analytics: the team's leads and admins (operators see colleagues' load, so not them)
    "GET /api/v1/analytics": Row(lead_only(200), query=lambda world, caller: analytics_query(world)),
    "GET /api/v1/analytics/export.csv": Row(
        lead_only(200), query=lambda world, caller: {**analytics_query(world), "metric": "operatorLoad"}
    ),
    # connected sites: admins manage them; their connectors sign with the site key, not a bearer (all 401 here)
    "GET /api/v1/sites": Row(admin_only(200)),
    "POST /api/v1/sites": Row(admin_only(201), body={"name": "matrix"}),
    "GET /api/v1/sites/{site_id}": Row(admin_only(200)),
    "PATCH /api/v1/sites/{site_id}": Row(admin_only(200), body={"callbackUrl": "https://example.com/callbacks"}),
    "POST /api/v1/sites/{site_id}/rotate-key": Row(admin_only(200)),
    "POST /api/v1/sites/{site_id}/revoke": Row(admin_only(200)),
    "POST /api/v1/connect/events": Row(platform_signed(), body={"events": []}),
    # SCIM provisioning: refused before the path is looked at, so fixed parameters do.
    "GET /scim/v2/ServiceProviderConfig": Row(scim()),
    "GET /scim/v2/ResourceTypes": Row(scim()),
    "GET /scim/v2/ResourceTypes/{name}": Row(scim(), params={"name": scim_param("User")}),
    "GET /scim/v2/Schemas": Row(scim()),
    "GET /scim/v2/Schemas/{schema_id}": Row(
        scim(), params={"schema_id": scim_param("urn:ietf:params:scim:schemas:core:2.0:User")}
    ),
    "POST /scim/v2/.search": Row(scim(), body={}),
    "GET /scim/v2/{kind}": Row(scim()),
    "POST /scim/v2/{kind}": Row(scim(), body={"userName": "nina"}),
    "GET /scim/v2/{kind}/{resource_id}": Row(scim()),
    "PUT /scim/v2/{kind}/{resource_id}": Row(scim(), body={"userName": "nina"}),
    "PATCH /scim/v2/{kind}/{resource_id}": Row(scim(), body={"Operations": []}),
    "DELETE /scim/v2/{kind}/{resource_id}": Row(scim()),
}


def app_routes(app: Litestar) -> set[str]:
    """Every "METHOD path" the app serves, minus the stated exclusions."""
    found = set()
    for route in app.routes:
        if not isinstance(route, HTTPRoute) or route.path.startswith(EXCLUDED_PREFIXES):
            continue
        path = re.sub(r"\{(\w+):[^}]+\}", r"{\1}", route.path)
        for handler in route.route_handlers:
            found |= {f"{method} {path}" for method in handler.http_methods - EXCLUDED_METHODS}
    return found


@pytest.fixture
async def matrix_api(settings: Settings, expired_issuer: str, tmp_path: Path) -> AsyncIterator[RunningApi]:
    """The api trusting the provider that issues expired tokens, so the expired JWT fails only for its expiry."""
    configured = oidc_settings(settings, expired_issuer, native_client_ids=[NATIVE_APP], data_dir=str(tmp_path))
    async with run_api(configured) as running:
        yield running


async def build_world(engine: AsyncEngine, settings: Settings, redis: Redis, issuer: str) -> World:
    team_a, team_b = await make_team(engine, "team-a"), await make_team(engine, "team-b")
    operators = {
        "operator": await make_operator(engine, "Olga"),
        "other_team": await make_operator(engine, "Otto"),
        "lead": await make_operator(engine, "Lena"),
        "admin": await make_operator(engine, "Ada", is_admin=True),
    }
    # In no team: the operators a lead and an admin add to team A.
    operators |= {f"newcomer_{caller}": await make_operator(engine, "Nina") for caller in ("lead", "admin")}
    await add_member(engine, team_a, operators["operator"], "operator")
    await add_member(engine, team_b, operators["other_team"], "operator")
    await add_member(engine, team_a, operators["lead"], "lead")
    headers = {caller: bearer(await personal_token(engine, operator_id)) for caller, operator_id in operators.items()}
    # The admin signed in with the native app (/oauth/token), so its access tokens are checked on every route too.
    headers["admin"] = bearer(await app_access_token(engine, operators["admin"]))
    # The lead uses a browser session instead, so cookie authentication and its CSRF check are covered too.
    session, csrf = await create_session(redis, settings, operators["lead"], id_token="")
    headers["lead"] = {"Cookie": f"sb_session={session}", CSRF_HEADER: csrf}
    headers["anonymous"] = {}
    headers["revoked"] = bearer(await personal_token(engine, operators["operator"], revoked_at=datetime.now(UTC)))
    # Signed by the real provider for team A's operator, but already expired.
    headers["expired_jwt"] = bearer((await idp_tokens(issuer, f"sub-{operators['operator']}"))["id_token"])
    return World(engine, team_a, team_b, operators, headers)


async def assert_rejected_only_for_expiry(world: World, settings: Settings, issuer: str) -> None:
    """The expired-JWT caller must be refused for its expiry, not for anything else that is wrong with it."""
    oidc = OidcClient(oidc_settings(settings, issuer))
    try:
        with pytest.raises(OidcError, match="expired_token"):
            await oidc.verify(world.headers["expired_jwt"]["Authorization"].removeprefix("Bearer "))
    finally:
        await oidc.aclose()


def resolve(value: Value, world: World, caller: str) -> Any:
    return value(world, caller) if callable(value) else value


async def call(http: httpx.AsyncClient, world: World, key: str, row: Row, caller: str) -> httpx.Response:
    method, path = key.split(" ", 1)
    for name in re.findall(r"\{(\w+)\}", path):
        factory = row.params.get(name) or PARAMS.get(name)
        assert factory is not None, f"{key}: no factory for path parameter {{{name}}}; add one to PARAMS"
        path = path.replace(f"{{{name}}}", await factory(world, caller))
    body = resolve(row.body, world, caller)
    request = http.build_request(
        method,
        path,
        headers=world.headers[caller],
        params=resolve(row.query, world, caller),
        json=body if body is not None else None,
        files=resolve(row.files, world, caller),
    )
    response = await http.send(request, stream=row.streams)
    await (response.aclose() if row.streams else response.aread())
    return response


def route_problems(app: Litestar) -> list[str]:
    """Routes without a row, and rows for routes that no longer exist."""
    routes = app_routes(app)
    return [f"no row in ROWS for {key}" for key in sorted(routes - ROWS.keys())] + [
        f"row in ROWS for {key}, which the app does not serve" for key in sorted(ROWS.keys() - routes)
    ]


def test_every_route_has_a_row(settings: Settings) -> None:
    problems = route_problems(create_app(settings))
    assert not problems, "fix ROWS in tests/integration/api/test_authorization_matrix.py:\n  " + "\n  ".join(problems)


@get("/api/v1/unlisted/{thing_id:uuid}", operation_id="unlisted", sync_to_thread=False)
def unlisted(thing_id: FromPath[uuid.UUID]) -> None:
    """A route nobody wrote a row for."""


def test_a_route_without_a_row_is_named(settings: Settings) -> None:
    app = create_app(settings)
    app.register(unlisted)
    assert route_problems(app) == ["no row in ROWS for GET /api/v1/unlisted/{thing_id}"]


async def mismatches(api: RunningApi, world: World, rows: dict[str, tuple[Row, Expect]]) -> list[str]:
    """Every (route, caller) whose status is not the expected one."""
    found = []
    for key, (row, expect) in rows.items():
        for caller in CALLERS:
            async with api.client() as http:  # no cookie carried from one caller to the next
                response = await call(http, world, key, row, caller)
            expected = getattr(expect, caller)
            if response.status_code != expected:
                body = "(stream)" if row.streams else response.text  # a closed stream has no body to read
                found.append(f"{key} as {caller}: expected {expected}, got {response.status_code} {body}")
    return found


# Every route times every caller: minutes on a loaded 2-core machine, so more than the default timeout.
@pytest.mark.timeout(600)
async def test_each_caller_gets_the_expected_status(
    matrix_api: RunningApi, settings: Settings, redis: Redis, clean_db: AsyncEngine, expired_issuer: str
) -> None:
    world = await build_world(clean_db, settings, redis, expired_issuer)
    await assert_rejected_only_for_expiry(world, settings, expired_issuer)
    problems = await mismatches(matrix_api, world, {key: (row, row.expect) for key, row in ROWS.items()})
    assert not problems, "\n".join(problems)


async def test_development_mode_statuses(
    settings: Settings, redis: Redis, clean_db: AsyncEngine, expired_issuer: str
) -> None:
    """The routes that answer differently under `switchboard dev`, run in development mode."""
    development = oidc_settings(settings.model_copy(update={"environment": "development"}), expired_issuer)
    rows = {key: (row, row.development) for key, row in ROWS.items() if row.development is not None}
    assert rows.keys() == {"GET /demo", "GET /demo/{file_path}"}
    async with run_api(development) as api:
        world = await build_world(clean_db, settings, redis, expired_issuer)
        problems = await mismatches(api, world, rows)
    assert not problems, "\n".join(problems)
