"""Team bridge settings with known secrets, and webhook requests signed as each platform signs them."""

from __future__ import annotations

import json
import time
import uuid
from typing import Any

import httpx
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from service.bridges.verify import slack_signature
from service.crypto import encrypt_secret
from service.teams.services import SECRET_PURPOSE

TELEGRAM_BOT_TOKEN = "123456:TG-bot-token-secret-1111"
TELEGRAM_WEBHOOK_SECRET = "tg_webhook_secret_2222"
SLACK_BOT_TOKEN = "xoxb-slack-bot-token-secret-3333"
SLACK_SIGNING_SECRET = "slack-signing-secret-4444"
DISCORD_BOT_TOKEN = "discord-bot-token-secret-5555"
SECRETS = (TELEGRAM_BOT_TOKEN, TELEGRAM_WEBHOOK_SECRET, SLACK_BOT_TOKEN, SLACK_SIGNING_SECRET, DISCORD_BOT_TOKEN)
TELEGRAM_CHAT_ID = "-1001234567890"
SLACK_CHANNEL_ID = "C0TEAM0001"
DISCORD_CHANNEL_ID = "100000000000000001"
# The Discord application's key pair: the platform signs with the private half, the team stores the public one.
DISCORD_KEY = Ed25519PrivateKey.from_private_bytes(bytes(range(32)))
DISCORD_PUBLIC_KEY = DISCORD_KEY.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw).hex()


def bridge_settings(secret_key: str) -> dict[str, Any]:
    """All three bridges enabled, secrets encrypted as the teams API stores them."""

    def secret(value: str) -> str:
        return encrypt_secret(secret_key, SECRET_PURPOSE, value)

    return {
        "telegram": {
            "enabled": True,
            "chatId": TELEGRAM_CHAT_ID,
            "botTokenEncrypted": secret(TELEGRAM_BOT_TOKEN),
            "webhookSecretEncrypted": secret(TELEGRAM_WEBHOOK_SECRET),
        },
        "slack": {
            "enabled": True,
            "channelId": SLACK_CHANNEL_ID,
            "botTokenEncrypted": secret(SLACK_BOT_TOKEN),
            "signingSecretEncrypted": secret(SLACK_SIGNING_SECRET),
        },
        "discord": {
            "enabled": True,
            "channelId": DISCORD_CHANNEL_ID,
            "applicationId": "100000000000000002",
            "publicKey": DISCORD_PUBLIC_KEY,
            "botTokenEncrypted": secret(DISCORD_BOT_TOKEN),
        },
    }


def _json(payload: dict[str, Any]) -> bytes:
    return json.dumps(payload).encode()


async def telegram_update(
    http: httpx.AsyncClient, team_id: uuid.UUID, update: dict[str, Any], secret: str | None = TELEGRAM_WEBHOOK_SECRET
) -> httpx.Response:
    headers = {"Content-Type": "application/json"}
    if secret is not None:
        headers["X-Telegram-Bot-Api-Secret-Token"] = secret
    return await http.post(f"/bridges/telegram/{team_id}", content=_json(update), headers=headers)


def telegram_message(
    user_id: int, text: str, *, topic: int | None = None, message_id: int = 1, private: bool = False, **extra: Any
) -> dict[str, Any]:
    """An update with one message, from a group topic or (``private``) the user's direct chat with the bot."""
    chat = {"id": user_id, "type": "private"} if private else {"id": int(TELEGRAM_CHAT_ID), "type": "supergroup"}
    message: dict[str, Any] = {
        "message_id": message_id,
        "from": {"id": user_id, "is_bot": False, "first_name": f"User{user_id}", "username": f"user{user_id}"},
        "chat": chat,
        "date": int(time.time()),
        "text": text,
        **extra,
    }
    if topic is not None:
        message |= {"message_thread_id": topic, "is_topic_message": True}
    return {"update_id": message_id, "message": message}


async def slack_post(
    http: httpx.AsyncClient,
    team_id: uuid.UUID,
    body: bytes,
    content_type: str = "application/json",
    *,
    timestamp: int | None = None,
    secret: str = SLACK_SIGNING_SECRET,
) -> httpx.Response:
    ts = str(int(time.time()) if timestamp is None else timestamp)
    headers = {
        "Content-Type": content_type,
        "X-Slack-Request-Timestamp": ts,
        "X-Slack-Signature": slack_signature(secret, ts, body),
    }
    return await http.post(f"/bridges/slack/{team_id}", content=body, headers=headers)


def slack_event(user: str, text: str, *, thread_ts: str | None = None, ts: str = "1800000000.000100") -> bytes:
    event = {"type": "message", "user": user, "text": text, "channel": SLACK_CHANNEL_ID, "ts": ts}
    if thread_ts is not None:
        event["thread_ts"] = thread_ts
    return _json({"type": "event_callback", "event_id": f"Ev{uuid.uuid4().hex[:10]}", "event": event})


async def discord_interaction(
    http: httpx.AsyncClient, team_id: uuid.UUID, payload: dict[str, Any], key: Ed25519PrivateKey = DISCORD_KEY
) -> httpx.Response:
    body, timestamp = _json(payload), str(int(time.time()))
    headers = {
        "Content-Type": "application/json",
        "X-Signature-Ed25519": key.sign(timestamp.encode() + body).hex(),
        "X-Signature-Timestamp": timestamp,
    }
    return await http.post(f"/bridges/discord/{team_id}", content=body, headers=headers)


def discord_command(
    user_id: str, name: str, *options: tuple[str, str], channel_id: str = DISCORD_CHANNEL_ID, dm: bool = False
) -> dict[str, Any]:
    """An APPLICATION_COMMAND interaction, in the team's guild (a thread of it) or a DM with the bot."""
    user = {"id": user_id, "username": f"user{user_id[-4:]}"}
    payload: dict[str, Any] = {
        "id": str(uuid.uuid4().int % 10**18),
        "type": 2,
        "channel_id": channel_id,
        "data": {"name": name, "options": [{"name": k, "type": 3, "value": v} for k, v in options]},
    }
    if dm:
        return payload | {"user": user}
    return payload | {"guild_id": "100000000000000003", "member": {"user": user}}
