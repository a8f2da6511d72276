"""``provide_principal``: turns the request's credential into a ``Principal`` or answers 401."""

from __future__ import annotations

import uuid
from ipaddress import ip_address
from typing import Any

import sqlalchemy as sa
import structlog
from litestar import Request
from litestar.exceptions import NotAuthorizedException, PermissionDeniedException
from sqlalchemy.ext.asyncio import AsyncEngine

from service.auth.oidc import OidcClient, OidcError
from service.auth.principal import TOKEN_PREFIX, Principal, hash_token
from service.auth.sessions import CSRF_HEADER, SESSION_COOKIE, csrf_matches, load_session
from service.db.tables import member_t, operator_t, token_t

log = structlog.get_logger(__name__)

# Personal access token scopes: reading, changing, and administration (operators, all teams).
SCOPES = ("read", "write", "admin")
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
UNAUTHORIZED_HEADERS = {"WWW-Authenticate": 'Bearer realm="switchboard"'}


async def load_principal(
    conn: Any, operator_id: uuid.UUID, via: str, scopes: frozenset[str] | None = None
) -> Principal | None:
    """The operator with their team roles, or None when they do not exist or were deactivated."""
    operator = (
        await conn.execute(
            sa.select(operator_t.c.display_name, operator_t.c.is_admin).where(
                operator_t.c.id == operator_id, operator_t.c.deactivated_at.is_(None)
            )
        )
    ).first()
    if operator is None:
        return None
    teams = await conn.execute(
        sa.select(member_t.c.team_id, member_t.c.role).where(member_t.c.operator_id == operator_id)
    )
    return Principal(
        operator_id=operator_id,
        display_name=operator.display_name,
        is_admin=operator.is_admin,
        teams={row.team_id: row.role for row in teams},
        via=via,  # type: ignore[arg-type]
        scopes=scopes,
    )


async def principal_from_personal_token(engine: AsyncEngine, secret: str) -> Principal | None:
    """A live (not revoked, not expired) personal access token's owner; records its last use."""
    async with engine.begin() as conn:
        row = (
            await conn.execute(
                sa.update(token_t)
                .where(
                    token_t.c.token_hash == hash_token(secret),
                    token_t.c.revoked_at.is_(None),
                    sa.or_(token_t.c.expires_at.is_(None), token_t.c.expires_at > sa.func.now()),
                )
                .values(last_used_at=sa.func.now())
                .returning(token_t.c.operator_id, token_t.c.scopes)
            )
        ).first()
        if row is None:
            return None
        return await load_principal(conn, row.operator_id, "token", frozenset(row.scopes))


def check_token_scope(request: Request[Any, Any, Any], principal: Principal) -> None:
    """Tokens need ``read`` for safe methods, ``write`` for the rest, and ``admin`` on admin routes."""
    if principal.scopes is None:
        return
    needed = ["read" if request.method in SAFE_METHODS else "write"]
    if request.route_handler.opt.get("admin"):
        needed.append("admin")
    for scope in needed:
        if scope not in principal.scopes:
            raise PermissionDeniedException(f"This token lacks the '{scope}' scope")


async def principal_from_jwt(request: Request[Any, Any, Any], token: str) -> Principal | None:
    """An access token JWT the IdP signed for this api; its subject must have signed in once in a browser."""
    oidc: OidcClient | None = request.app.state.oidc
    if oidc is None:
        return None
    try:
        claims = await oidc.verify(token)
    except OidcError as exc:
        log.info("bearer JWT rejected", reason=str(exc))
        return None
    async with request.app.state.engine.connect() as conn:
        operator_id = (
            await conn.execute(sa.select(operator_t.c.id).where(operator_t.c.subject == claims["sub"]))
        ).scalar_one_or_none()
        return None if operator_id is None else await load_principal(conn, operator_id, "jwt")


async def principal_from_session(request: Request[Any, Any, Any], cookie: str) -> Principal | None:
    """The browser session's operator; unsafe methods must echo the session's CSRF token (403 otherwise)."""
    session = await load_session(request.app.state.redis, request.app.state.settings, cookie)
    if session is None:
        return None
    if request.method not in SAFE_METHODS and not csrf_matches(session, request.headers.get(CSRF_HEADER)):
        raise PermissionDeniedException(f"Send the session's CSRF token in the {CSRF_HEADER} header")
    async with request.app.state.engine.connect() as conn:
        return await load_principal(conn, session.operator_id, "session")


def check_admin_network(request: Request[Any, Any, Any]) -> None:
    """Admin routes answer only clients inside ``ADMIN_ALLOWED_CIDRS`` (when set)."""
    networks = request.app.state.settings.admin_allowed_cidrs
    if not networks or not request.route_handler.opt.get("admin"):
        return
    client = request.client.host if request.client else None
    try:
        address = ip_address(client or "")
    except ValueError:
        address = None
    if address is None or not any(address in network for network in networks):
        raise PermissionDeniedException("Administration is not allowed from this network")


async def provide_principal(request: Request[Any, Any, Any]) -> Principal:
    """The caller, from ``Authorization: Bearer`` (personal access token or IdP JWT) or else the session cookie.

    401 when there is no valid credential. A bearer header wins: the cookie is not consulted then,
    so programs are never subject to CSRF checks and browsers always are.
    """
    check_admin_network(request)
    header = request.headers.get("authorization", "")
    scheme, _, credential = header.partition(" ")
    credential = credential.strip()
    principal: Principal | None = None
    if header:
        if scheme.lower() == "bearer" and credential.startswith(TOKEN_PREFIX):
            principal = await principal_from_personal_token(request.app.state.engine, credential)
        elif scheme.lower() == "bearer" and credential:
            principal = await principal_from_jwt(request, credential)
    elif cookie := request.cookies.get(SESSION_COOKIE):
        principal = await principal_from_session(request, cookie)
    if principal is None:
        raise NotAuthorizedException("Sign in or send a valid bearer token", headers=UNAUTHORIZED_HEADERS)
    check_token_scope(request, principal)
    return principal
