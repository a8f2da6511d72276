"""Server-side browser sessions and sign-in attempts in Redis; the browser holds only random ids in cookies."""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
import uuid
from dataclasses import dataclass
from typing import Any

from redis.asyncio import Redis

from service.settings import Settings

SESSION_COOKIE = "sb_session"
LOGIN_COOKIE = "sb_login"
# Readable by the page's scripts (not HttpOnly), so htmx can copy it into the X-CSRF-Token header.
CSRF_COOKIE = "sb_csrf"
CSRF_HEADER = "X-CSRF-Token"
# Set by sign-out until the next sign-in: the dashboard then shows "signed out" instead of sending the
# browser straight back to the IdP, whose own session (if its logout did not finish) would sign it in again.
SIGNED_OUT_COOKIE = "sb_signed_out"
LOGIN_TTL = 600  # seconds a sign-in may take at the IdP


@dataclass(frozen=True)
class BrowserSession:
    operator_id: uuid.UUID
    csrf_token: str
    id_token: str


def session_key(cookie_value: str) -> str:
    """A browser session's name outside the cookie (Redis keys, its presence clients): a hash, never replayable."""
    return hashlib.sha256(cookie_value.encode()).hexdigest()


def _key(settings: Settings, kind: str, cookie_value: str) -> str:
    """Keys are hashes of the cookie value, so a Redis dump cannot be replayed as cookies."""
    return f"{settings.redis_prefix}:{kind}:{session_key(cookie_value)}"


async def start_login(redis: Redis, settings: Settings, login: dict[str, str]) -> str:
    """Keep one sign-in attempt (state, nonce, PKCE verifier, where to return); returns the cookie value."""
    cookie = secrets.token_urlsafe(32)
    await redis.set(_key(settings, "login", cookie), json.dumps(login), ex=LOGIN_TTL)
    return cookie


async def take_login(redis: Redis, settings: Settings, cookie: str) -> dict[str, str] | None:
    """The sign-in attempt, removed as it is read: a callback can complete it once."""
    raw = await redis.getdel(_key(settings, "login", cookie))
    return json.loads(raw) if raw else None


def _index_key(settings: Settings, operator_id: uuid.UUID) -> str:
    """The set of an operator's session keys (hashes), so deactivation can end all of them."""
    return f"{settings.redis_prefix}:operator-sessions:{operator_id}"


async def create_session(redis: Redis, settings: Settings, operator_id: uuid.UUID, id_token: str) -> tuple[str, str]:
    """A new session for a signed-in operator; returns (session cookie value, CSRF token)."""
    cookie, csrf = secrets.token_urlsafe(32), secrets.token_urlsafe(32)
    record = {"operatorId": str(operator_id), "csrfToken": csrf, "idToken": id_token}
    index = _index_key(settings, operator_id)
    async with redis.pipeline(transaction=True) as pipe:
        pipe.set(_key(settings, "session", cookie), json.dumps(record), ex=settings.session_ttl_seconds)
        pipe.sadd(index, session_key(cookie))
        # Outlives every session it lists; an entry whose session expired is harmless (deleting it is a no-op).
        pipe.expire(index, settings.session_ttl_seconds)
        await pipe.execute()
    return cookie, csrf


def _session(raw: bytes | None) -> BrowserSession | None:
    if not raw:
        return None
    record: dict[str, Any] = json.loads(raw)
    return BrowserSession(uuid.UUID(record["operatorId"]), record["csrfToken"], record["idToken"])


async def load_session(redis: Redis, settings: Settings, cookie: str) -> BrowserSession | None:
    return _session(await redis.get(_key(settings, "session", cookie)))


async def end_session(redis: Redis, settings: Settings, cookie: str) -> BrowserSession | None:
    """Sign out: the session is gone from Redis, whatever the browser keeps."""
    session = _session(await redis.getdel(_key(settings, "session", cookie)))
    if session is not None:
        await redis.srem(_index_key(settings, session.operator_id), session_key(cookie))  # type: ignore[misc]
    return session


async def end_operator_sessions(redis: Redis, settings: Settings, operator_id: uuid.UUID) -> list[str]:
    """Every browser session of the operator is gone (deactivation); returns their session keys."""
    index = _index_key(settings, operator_id)
    keys = sorted(member.decode() for member in await redis.smembers(index))  # type: ignore[misc]
    await redis.delete(index, *(f"{settings.redis_prefix}:session:{key}" for key in keys))
    return keys


def csrf_matches(session: BrowserSession, sent: str | None) -> bool:
    return sent is not None and hmac.compare_digest(session.csrf_token.encode(), sent.encode())


def cookie_path(settings: Settings, path: str = "") -> str:
    """A cookie's path: Switchboard's part of the site (``PATH_PREFIX``), or ``path`` under it."""
    return settings.path_prefix + path or "/"


def cookie_options(settings: Settings) -> dict[str, Any]:
    """HttpOnly, SameSite=Lax, Secure when the public URL is https, for Switchboard's paths only."""
    return {
        "httponly": True,
        "samesite": "lax",
        "secure": settings.public_url.scheme == "https",
        "path": cookie_path(settings),
    }
