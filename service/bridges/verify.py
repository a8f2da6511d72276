"""Authenticity of inbound bridge webhooks: Telegram's secret token, Slack's v0 signature, Discord's Ed25519.

Each check takes the team's secret (or public key), the request's headers and its raw body, and
returns whether the request is genuine. Every comparison is constant-time.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from collections.abc import Mapping

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

TELEGRAM_HEADER = "x-telegram-bot-api-secret-token"
SLACK_SIGNATURE = "x-slack-signature"
SLACK_TIMESTAMP = "x-slack-request-timestamp"
DISCORD_SIGNATURE = "x-signature-ed25519"
DISCORD_TIMESTAMP = "x-signature-timestamp"
# Slack's own advice: refuse requests older (or newer) than five minutes, so a captured one cannot be replayed.
SLACK_MAX_AGE_SECONDS = 300


def telegram_genuine(secret: str | None, headers: Mapping[str, str]) -> bool:
    """The ``secret_token`` given to setWebhook comes back in every update's header."""
    given = headers.get(TELEGRAM_HEADER)
    if not secret or given is None:
        return False
    return hmac.compare_digest(given.encode(), secret.encode())


def slack_signature(signing_secret: str, timestamp: str, body: bytes) -> str:
    """``v0=`` + HMAC-SHA256 of ``v0:{timestamp}:{body}`` under the app's signing secret."""
    base = b"v0:" + timestamp.encode() + b":" + body
    return "v0=" + hmac.new(signing_secret.encode(), base, hashlib.sha256).hexdigest()


def slack_genuine(
    signing_secret: str | None, headers: Mapping[str, str], body: bytes, now: float | None = None
) -> bool:
    """A v0 signature over this body, made within five minutes of ``now``."""
    timestamp, given = headers.get(SLACK_TIMESTAMP), headers.get(SLACK_SIGNATURE)
    if not signing_secret or timestamp is None or given is None or not timestamp.isascii() or not timestamp.isdigit():
        return False
    if abs((time.time() if now is None else now) - int(timestamp)) > SLACK_MAX_AGE_SECONDS:
        return False
    return hmac.compare_digest(given.encode(), slack_signature(signing_secret, timestamp, body).encode())


def discord_genuine(public_key: str | None, headers: Mapping[str, str], body: bytes) -> bool:
    """An Ed25519 signature of ``timestamp + body`` by the application's key (hex in the settings)."""
    signature, timestamp = headers.get(DISCORD_SIGNATURE), headers.get(DISCORD_TIMESTAMP)
    if not public_key or signature is None or timestamp is None:
        return False
    try:
        key = Ed25519PublicKey.from_public_bytes(bytes.fromhex(public_key))
        key.verify(bytes.fromhex(signature), timestamp.encode() + body)
    except (ValueError, InvalidSignature):
        return False
    return True
