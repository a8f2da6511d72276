"""``provide_principal``: turns the request's credential into a ``Principal`` or answers 401."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from ipaddress import IPv4Network, IPv6Network, ip_address
from typing import Any

import structlog
from litestar import Request
from litestar.exceptions import NotAuthorizedException

from service.auth.native import ACCESS_PREFIX, principal_from_access_token
from service.auth.oidc import OidcClient, OidcError
from service.auth.principal import TOKEN_PREFIX, CredentialRefused, Principal, requires_admin
from service.auth.services import load_principal, principal_from_personal_token, principal_of_subject
from service.auth.sessions import CSRF_HEADER, SESSION_COOKIE, csrf_matches, load_session
from service.errors import Forbidden
from service.logging import bind_request

log = structlog.get_logger(__name__)

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
REALM = 'Bearer realm="switchboard"'
UNAUTHORIZED_HEADERS = {"WWW-Authenticate": REALM}


def token_refused(reason: str) -> NotAuthorizedException:
    """401 naming why (RFC 6750 section 3): in the problem's detail and in ``WWW-Authenticate``."""
    description = reason.replace("\\", "/").replace('"', "'")
    header = f'{REALM}, error="invalid_token", error_description="{description}"'
    return NotAuthorizedException(f"The bearer token was refused: {reason}", headers={"WWW-Authenticate": header})


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


async def principal_from_jwt(request: Request[Any, Any, Any], token: str) -> Principal:
    """An access token JWT the IdP signed for this api; its subject must have signed in to Switchboard once."""
    oidc: OidcClient | None = request.app.state.oidc
    if oidc is None or token.count(".") != 2:
        raise CredentialRefused(
            "malformed: not a Switchboard token (sba_, sbp_) nor a JWT; the identity provider's opaque access "
            "tokens are not accepted: sign in through /oauth/authorize"
        )
    try:
        claims = await oidc.verify(token)
    except OidcError as exc:
        log.info("bearer JWT rejected", reason=str(exc))
        raise CredentialRefused(f"{exc.kind}: {exc}") from exc
    async with request.app.state.engine.connect() as conn:
        principal = await principal_of_subject(conn, claims["sub"], "jwt")
    if principal is None:
        raise CredentialRefused(
            f"unknown user: '{claims['sub']}' has never signed in to Switchboard (or was deactivated); "
            "sign in once through /oauth/authorize or /auth/login"
        )
    return principal


async def principal_from_session(request: Request[Any, Any, Any], cookie: str) -> Principal | None:
    """The browser session's operator; unsafe methods must echo the session's CSRF token (403 otherwise)."""
    session = await load_session(request.app.state.redis, request.app.state.settings, cookie)
    if session is None:
        return None
    if request.method not in SAFE_METHODS and not csrf_matches(session, request.headers.get(CSRF_HEADER)):
        raise Forbidden(f"Send the session's CSRF token in the {CSRF_HEADER} header")
    async with request.app.state.engine.connect() as conn:
        return await load_principal(conn, session.operator_id, "session")


def admin_network_allowed(request: Request[Any, Any, Any]) -> bool:
    """Whether the client is inside ``ADMIN_ALLOWED_CIDRS`` (always, when it is not set)."""
    networks = request.app.state.settings.admin_allowed_cidrs
    return not networks or client_in(request, networks)


def client_in(request: Request[Any, Any, Any], networks: Sequence[IPv4Network | IPv6Network]) -> bool:
    """Whether the client's address is inside one of ``networks`` (never, when it has none)."""
    client = request.client.host if request.client else None
    try:
        address = ip_address(client or "")
    except ValueError:
        return False
    return any(address in network for network in networks)


async def _bearer(request: Request[Any, Any, Any], credential: str) -> Principal:
    """A native app's access token, a personal access token, or an IdP JWT; 401 saying why when refused."""
    engine = request.app.state.engine
    try:
        if credential.startswith(ACCESS_PREFIX):
            return await principal_from_access_token(engine, credential)
        if credential.startswith(TOKEN_PREFIX):
            principal = await principal_from_personal_token(engine, credential)
            if principal is None:
                raise CredentialRefused("unknown, revoked or expired personal access token")
            return principal
        return await principal_from_jwt(request, credential)
    except CredentialRefused as exc:
        raise token_refused(str(exc)) from None


async def provide_principal(request: Request[Any, Any, Any]) -> Principal:
    """The caller, from ``Authorization: Bearer`` (app or personal access token, IdP JWT) or else the session cookie.

    401 when there is no valid credential. A bearer header wins: the cookie is not consulted then,
    so programs are never subject to CSRF checks and browsers always are.
    """
    header = request.headers.get("authorization", "")
    scheme, _, credential = header.partition(" ")
    credential = credential.strip()
    principal: Principal | None = None
    if header:
        if scheme.lower() == "bearer" and credential:
            principal = await _bearer(request, credential)
    elif cookie := request.cookies.get(SESSION_COOKIE):
        principal = await principal_from_session(request, cookie)
    if principal is None:
        raise NotAuthorizedException("Sign in or send a valid bearer token", headers=UNAUTHORIZED_HEADERS)
    bind_request(operator_id=str(principal.operator_id))
    if principal.is_admin and not admin_network_allowed(request):
        principal = replace(principal, admin_network=False)
    check_token_scope(request, principal)
    if request.route_handler.opt.get("admin"):
        requires_admin(principal)
    return principal
