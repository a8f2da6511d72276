"""Switchboard as the OAuth 2.0 authorization server of native apps (RFC 8252, PKCE RFC 7636).

The app is a public client: it proves it started the sign-in with PKCE (S256), never with a secret.
The person signs in at the IdP through Switchboard's own confidential client (the browser sign-in),
and gets a one-time code for the app's redirect URI; the app exchanges it for a short-lived opaque
access token and a refresh token. Refresh tokens rotate: each is used once, and one that comes back
after its rotation revokes its whole grant (RFC 9700 section 4.14.2), since then two parties hold it.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
import secrets
import uuid
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlencode, urlsplit

import sqlalchemy as sa
from redis.asyncio import Redis
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from service.auth.principal import TOKEN_SCOPES, CredentialRefused, Principal, hash_token
from service.auth.services import load_principal
from service.db.tables import oauth_grant_t, oauth_token_t
from service.errors import Invalid, OAuthRefused
from service.settings import Settings

ACCESS_PREFIX = "sba_"
REFRESH_PREFIX = "sbr_"
CODE_TTL = 60  # seconds an authorization code may wait for its exchange (RFC 6749 recommends at most 10 min)
# RFC 7636 section 4.1: 43-128 characters of the unreserved set.
VERIFIER = re.compile(r"^[A-Za-z0-9\-._~]{43,128}$")
CHALLENGE = re.compile(r"^[A-Za-z0-9\-_]{43}$")


@dataclass(frozen=True)
class AuthorizationRequest:
    """What the app asked for at ``/oauth/authorize``; kept with the IdP sign-in, then with the code."""

    client_id: str
    redirect_uri: str
    code_challenge: str
    state: str | None
    scopes: list[str]

    def dumps(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def loads(cls, raw: str | bytes) -> AuthorizationRequest:
        return cls(**json.loads(raw))


def check_client(settings: Settings, client_id: str | None) -> str:
    if not client_id or client_id not in settings.native_client_ids:
        raise Invalid("client_id is not a registered native app", field="client_id")
    return client_id


def check_redirect_uri(settings: Settings, uri: str | None) -> str:
    """RFC 8252: a loopback IP literal over http on any port (7.3), or a registered private-use scheme (7.1).

    ``localhost`` is refused (it may resolve elsewhere, section 8.3), and so is any other https or http URL.
    """
    if not uri:
        raise Invalid("redirect_uri is required", field="redirect_uri")
    parts = urlsplit(uri)
    try:
        parts.port  # noqa: B018  (raises on a port that is not a number)
    except ValueError:
        raise Invalid("redirect_uri has an invalid port", field="redirect_uri") from None
    loopback = parts.scheme == "http" and parts.hostname in ("127.0.0.1", "::1") and parts.username is None
    custom = parts.scheme.lower() in {scheme.lower() for scheme in settings.native_redirect_schemes}
    if not (loopback or custom) or parts.fragment:
        raise Invalid(
            "redirect_uri must be a loopback http://127.0.0.1:<port>/... (or [::1]) URI or use a scheme in "
            "NATIVE_REDIRECT_SCHEMES, without a fragment",
            field="redirect_uri",
        )
    return uri


def authorization_request(settings: Settings, params: dict[str, str | None]) -> AuthorizationRequest:
    """The checked request. ``Invalid`` (client or redirect URI wrong: never redirect there), else ``OAuthRefused``
    (to be sent back to the app's redirect URI, RFC 6749 section 4.1.2.1)."""
    client_id = check_client(settings, params.get("client_id"))
    redirect_uri = check_redirect_uri(settings, params.get("redirect_uri"))
    if params.get("response_type") != "code":
        raise OAuthRefused("unsupported_response_type", "response_type must be 'code'")
    challenge = params.get("code_challenge")
    if params.get("code_challenge_method") != "S256" or not challenge or not CHALLENGE.match(challenge):
        raise OAuthRefused(
            "invalid_request", "PKCE is required: code_challenge (S256 of the verifier) with code_challenge_method=S256"
        )
    requested = (params.get("scope") or " ".join(TOKEN_SCOPES)).split()
    if unknown := set(requested) - set(TOKEN_SCOPES):
        raise OAuthRefused("invalid_scope", f"unknown scopes {sorted(unknown)}; the scopes are {list(TOKEN_SCOPES)}")
    return AuthorizationRequest(client_id, redirect_uri, challenge, params.get("state"), sorted(set(requested)))


def redirect_with(redirect_uri: str, state: str | None, **values: str) -> str:
    """The app's redirect URI with ``values`` and the app's state added to its query."""
    query = {**values, **({"state": state} if state is not None else {})}
    separator = "&" if urlsplit(redirect_uri).query else "?"
    return f"{redirect_uri}{separator}{urlencode(query)}"


def _code_key(settings: Settings, code: str) -> str:
    return f"{settings.redis_prefix}:oauth-code:{hash_token(code)}"


async def issue_code(redis: Redis, settings: Settings, request: AuthorizationRequest, operator_id: uuid.UUID) -> str:
    """After the IdP sign-in: a one-time code bound to the request (and its PKCE challenge); returns where to go."""
    code = secrets.token_urlsafe(32)
    record = {"request": request.dumps(), "operatorId": str(operator_id)}
    await redis.set(_code_key(settings, code), json.dumps(record), ex=CODE_TTL)
    return redirect_with(request.redirect_uri, request.state, code=code)


def _s256(verifier: str) -> str:
    return base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()


def _client(settings: Settings, client_id: str | None) -> str:
    try:
        return check_client(settings, client_id)
    except Invalid as exc:
        raise OAuthRefused("invalid_client", exc.detail) from exc


async def exchange_code(engine: AsyncEngine, redis: Redis, settings: Settings, form: dict[str, str]) -> dict[str, Any]:
    """The ``authorization_code`` grant: the code is gone once presented, whatever the outcome."""
    client_id = _client(settings, form.get("client_id"))
    if not form.get("code") or not form.get("code_verifier"):
        raise OAuthRefused("invalid_request", "code and code_verifier are required")
    raw = await redis.getdel(_code_key(settings, form["code"]))
    if raw is None:
        raise OAuthRefused("invalid_grant", "the authorization code is unknown, expired or already used")
    record = json.loads(raw)
    request = AuthorizationRequest.loads(record["request"])
    if request.client_id != client_id or request.redirect_uri != form.get("redirect_uri"):
        raise OAuthRefused("invalid_grant", "the code was issued to another client_id or redirect_uri")
    verifier = form["code_verifier"]
    if not VERIFIER.match(verifier) or not hmac.compare_digest(_s256(verifier), request.code_challenge):
        raise OAuthRefused("invalid_grant", "code_verifier does not match the code_challenge")
    async with engine.begin() as conn:
        grant_id = (
            await conn.execute(
                sa.insert(oauth_grant_t)
                .values(operator_id=uuid.UUID(record["operatorId"]), client_id=client_id, scopes=request.scopes)
                .returning(oauth_grant_t.c.id)
            )
        ).scalar_one()
        return await _issue_tokens(conn, settings, grant_id, request.scopes)


async def refresh(engine: AsyncEngine, settings: Settings, form: dict[str, str]) -> dict[str, Any]:
    """The ``refresh_token`` grant: the token is rotated; a rotated one presented again revokes its grant."""
    client_id = _client(settings, form.get("client_id"))
    if not form.get("refresh_token"):
        raise OAuthRefused("invalid_request", "refresh_token is required")
    async with engine.begin() as conn:
        # Locked, so two refreshes with one token cannot both rotate it.
        row = (
            await conn.execute(
                sa.select(
                    oauth_token_t.c.id,
                    oauth_token_t.c.rotated_at,
                    (oauth_token_t.c.expires_at <= sa.func.now()).label("expired"),
                    oauth_grant_t.c.id.label("grant_id"),
                    oauth_grant_t.c.client_id,
                    oauth_grant_t.c.operator_id,
                    oauth_grant_t.c.scopes,
                    oauth_grant_t.c.revoked_at,
                )
                .join(oauth_grant_t, oauth_grant_t.c.id == oauth_token_t.c.grant_id)
                .where(
                    oauth_token_t.c.token_hash == hash_token(form["refresh_token"]), oauth_token_t.c.kind == "refresh"
                )
                .with_for_update(of=oauth_grant_t)
            )
        ).first()
        refusal = _refresh_refusal(row, client_id)
        if refusal is None:
            assert row is not None
            if await load_principal(conn, row.operator_id, "oauth") is None:
                refusal = "unknown user: the operator was deactivated"
            else:
                await conn.execute(
                    sa.update(oauth_token_t).where(oauth_token_t.c.id == row.id).values(rotated_at=sa.func.now())
                )
                return await _issue_tokens(conn, settings, row.grant_id, list(row.scopes))
        if row is not None and row.rotated_at is not None and row.revoked_at is None:
            await _revoke_grant(conn, row.grant_id, "reuse")
    raise OAuthRefused("invalid_grant", refusal)


def _refresh_refusal(row: Any, client_id: str) -> str | None:
    if row is None:
        return "unknown refresh token"
    if row.client_id != client_id:
        return "the refresh token was issued to another client_id"
    if row.revoked_at is not None:
        return "revoked: this sign-in was revoked; sign in again"
    if row.rotated_at is not None:
        return "reused: this refresh token was already used, so every token of this sign-in is now revoked"
    if row.expired:
        return "expired: the refresh token expired; sign in again"
    return None


async def revoke(engine: AsyncEngine, settings: Settings, form: dict[str, str]) -> None:
    """RFC 7009: either token ends its whole grant. Unknown tokens, or another client's, change nothing."""
    client_id = _client(settings, form.get("client_id"))
    if not form.get("token"):
        raise OAuthRefused("invalid_request", "token is required")
    async with engine.begin() as conn:
        grant_id = (
            await conn.execute(
                sa.select(oauth_grant_t.c.id)
                .join(oauth_token_t, oauth_grant_t.c.id == oauth_token_t.c.grant_id)
                .where(oauth_token_t.c.token_hash == hash_token(form["token"]), oauth_grant_t.c.client_id == client_id)
            )
        ).scalar_one_or_none()
        if grant_id is not None:
            await _revoke_grant(conn, grant_id, "revoked")


async def _revoke_grant(conn: AsyncConnection, grant_id: uuid.UUID, reason: str) -> None:
    await conn.execute(
        sa.update(oauth_grant_t)
        .where(oauth_grant_t.c.id == grant_id, oauth_grant_t.c.revoked_at.is_(None))
        .values(revoked_at=sa.func.now(), revoked_reason=reason)
    )


async def _issue_tokens(
    conn: AsyncConnection, settings: Settings, grant_id: uuid.UUID, scopes: list[str]
) -> dict[str, Any]:
    """A new access token and refresh token of the grant, as the token endpoint answers them (RFC 6749 5.1)."""
    access = ACCESS_PREFIX + secrets.token_urlsafe(32)
    refresh_token = REFRESH_PREFIX + secrets.token_urlsafe(32)
    now = datetime.now(UTC)
    await conn.execute(
        sa.insert(oauth_token_t).values(
            [
                {
                    "grant_id": grant_id,
                    "kind": "access",
                    "token_hash": hash_token(access),
                    "expires_at": now + timedelta(seconds=settings.native_access_token_ttl_seconds),
                },
                {
                    "grant_id": grant_id,
                    "kind": "refresh",
                    "token_hash": hash_token(refresh_token),
                    "expires_at": now + timedelta(seconds=settings.native_refresh_token_ttl_seconds),
                },
            ]
        )
    )
    return {
        "access_token": access,
        "token_type": "Bearer",
        "expires_in": settings.native_access_token_ttl_seconds,
        "refresh_token": refresh_token,
        "scope": " ".join(scopes),
    }


REVOKED_BECAUSE = {
    "reuse": "revoked: a refresh token of this sign-in was used twice, so the whole sign-in was revoked",
    "revoked": "revoked: the app signed out (the token was revoked)",
    "deactivated": "revoked: the operator was deactivated",
}


async def principal_from_access_token(engine: AsyncEngine, secret: str) -> Principal:
    """The operator behind a live access token, with the grant's scopes; ``CredentialRefused`` says why not."""
    async with engine.connect() as conn:
        row = (
            await conn.execute(
                sa.select(
                    oauth_token_t.c.expires_at,
                    (oauth_token_t.c.expires_at <= sa.func.now()).label("expired"),
                    oauth_grant_t.c.operator_id,
                    oauth_grant_t.c.scopes,
                    oauth_grant_t.c.revoked_reason,
                )
                .join(oauth_grant_t, oauth_grant_t.c.id == oauth_token_t.c.grant_id)
                .where(oauth_token_t.c.token_hash == hash_token(secret), oauth_token_t.c.kind == "access")
            )
        ).first()
        if row is None:
            raise CredentialRefused("unknown token: Switchboard did not issue this access token")
        if row.revoked_reason is not None:
            raise CredentialRefused(REVOKED_BECAUSE[row.revoked_reason])
        if row.expired:
            raise CredentialRefused(f"expired: the access token expired at {row.expires_at.isoformat()}; refresh it")
        principal = await load_principal(conn, row.operator_id, "oauth", frozenset(row.scopes))
    if principal is None:
        raise CredentialRefused("unknown user: the operator was deactivated")
    return principal


def server_metadata(settings: Settings) -> dict[str, Any]:
    """RFC 8414 authorization server metadata."""
    base = settings.base_url
    return {
        "issuer": base,
        "authorization_endpoint": f"{base}/oauth/authorize",
        "token_endpoint": f"{base}/oauth/token",
        "revocation_endpoint": f"{base}/oauth/revoke",
        "response_types_supported": ["code"],
        "response_modes_supported": ["query"],
        "grant_types_supported": ["authorization_code", "refresh_token"],
        "code_challenge_methods_supported": ["S256"],
        "token_endpoint_auth_methods_supported": ["none"],
        "revocation_endpoint_auth_methods_supported": ["none"],
        "scopes_supported": list(TOKEN_SCOPES),
        "service_documentation": f"{base}/schema",
    }
