"""The bot's answer to an operator, posted where they wrote (Telegram chat/topic, Slack channel/thread)."""

from __future__ import annotations

from typing import Any

import httpx

from service.bridges.inbound import Inbound
from service.settings import Settings
from service.teams.services import bridge_secret

TIMEOUT_SECONDS = 10.0


class AnswerFailed(Exception):
    """The platform did not take the answer; the message says why without the URL (a Telegram URL holds the token)."""


async def post(settings: Settings, stored: dict[str, Any], inbound: Inbound, text: str) -> None:
    """Answer in the same chat and thread, replying to the operator's message where the platform allows it."""
    token = bridge_secret(settings.secret_key, stored, inbound.platform, "botToken")
    if token is None or inbound.chat_id is None:
        return
    try:
        async with httpx.AsyncClient(timeout=TIMEOUT_SECONDS) as client:
            response = await _send(client, settings, inbound, token, text)
    except httpx.HTTPError as exc:
        raise AnswerFailed(type(exc).__name__) from None
    if response.status_code != 200 or response.json().get("ok") is not True:
        raise AnswerFailed(f"HTTP {response.status_code}: {response.text[:200]}")


async def _send(
    client: httpx.AsyncClient, settings: Settings, inbound: Inbound, token: str, text: str
) -> httpx.Response:
    if inbound.platform == "telegram":
        body: dict[str, Any] = {"chat_id": inbound.chat_id, "text": text}
        if inbound.thread_ref is not None:
            body["message_thread_id"] = int(inbound.thread_ref)
        if inbound.message_ref is not None:
            body["reply_parameters"] = {"message_id": int(inbound.message_ref), "allow_sending_without_reply": True}
        return await client.post(f"{settings.telegram_api_base}/bot{token}/sendMessage", json=body)
    body = {"channel": inbound.chat_id, "text": text}
    if inbound.thread_ref is not None:
        body["thread_ts"] = inbound.thread_ref
    return await client.post(
        f"{settings.slack_api_base}/chat.postMessage", json=body, headers={"Authorization": f"Bearer {token}"}
    )
