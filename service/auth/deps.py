"""``provide_principal``: turns the request's credential into a ``Principal`` or answers 401."""

from __future__ import annotations

from ipaddress import ip_address
from typing import Any

import structlog
from litestar import Request
from litestar.exceptions import NotAuthorizedException

from service.auth.oidc import OidcClient, OidcError
from service.auth.principal import TOKEN_PREFIX, Principal
from service.auth.services import load_principal, principal_from_personal_token, principal_of_subject
from service.auth.sessions import CSRF_HEADER, SESSION_COOKIE, csrf_matches, load_session
from service.errors import Forbidden

log = structlog.get_logger(__name__)

# Personal access token scopes: reading, changing, and administration (operators, all teams).
SCOPES = ("read", "write", "admin")
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
UNAUTHORIZED_HEADERS = {"WWW-Authenticate": 'Bearer realm="switchboard"'}


def check_token_scope(request: Request[Any, Any, Any], principal: Principal) -> None:
    """Tokens need ``read`` for safe methods, ``write`` for the rest, and ``admin`` on admin routes."""
    if principal.scopes is None:
        return
    needed = ["read" if request.method in SAFE_METHODS else "write"]
    if request.route_handler.opt.get("admin"):
        needed.append("admin")
    for scope in needed:
        if scope not in principal.scopes:
            raise Forbidden(f"This token lacks the '{scope}' scope")


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
        return await principal_of_subject(conn, claims["sub"], "jwt")


async def principal_from_session(request: Request[Any, Any, Any], cookie: str) -> Principal | None:
    """The browser session's operator; unsafe methods must echo the session's CSRF token (403 otherwise)."""
    session = await load_session(request.app.state.redis, request.app.state.settings, cookie)
    if session is None:
        return None
    if request.method not in SAFE_METHODS and not csrf_matches(session, request.headers.get(CSRF_HEADER)):
        raise Forbidden(f"Send the session's CSRF token in the {CSRF_HEADER} header")
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
        raise Forbidden("Administration is not allowed from this network")


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
