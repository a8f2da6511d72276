"""Each platform's webhook payload reduced to an ``Inbound`` (after its signature was verified).

PocketPing's ``WebhookHandler`` parses a Telegram forum-topic reply and a Discord ``/reply``
command, and is used for those. It is not used for the rest: it reports no sender id (needed to
find the linked operator), skips commands, answers Discord itself, and for Slack (and Telegram
media) it calls the platform's API synchronously — on the event loop, and at the public hosts
rather than the configured API bases.
"""

from __future__ import annotations

import uuid
from typing import Any
from urllib.parse import parse_qsl

from pocketping.webhooks import WebhookConfig, WebhookHandler

from service.bridges.inbound import COMMANDS, Inbound, InboundFile

# The text fields of a Telegram message: PocketPing's handler gets only these, so it never downloads media.
_TELEGRAM_TEXT_FIELDS = ("message_id", "message_thread_id", "text", "from", "reply_to_message")


def _topic_reply(message: dict[str, Any]) -> tuple[str, str, str | None] | None:
    """(topic id, text, replied-to message id) of a text message in a forum topic, as PocketPing reads it."""
    seen: list[tuple[str, str, str | None]] = []

    def capture(topic: str, text: str, _name: str, _source: str, _files: Any, reply_to: int | None) -> None:
        seen.append((topic, text, None if reply_to is None else str(reply_to)))

    handler = WebhookHandler(WebhookConfig(telegram_bot_token="unused", on_operator_message=capture))
    handler.handle_telegram_webhook({"message": {k: message[k] for k in _TELEGRAM_TEXT_FIELDS if k in message}})
    return seen[0] if seen else None


def _str(value: Any) -> str | None:
    return None if value is None else str(value)


def _telegram_files(message: dict[str, Any]) -> tuple[InboundFile, ...]:
    """A photo (its largest size; Telegram re-encodes photos as JPEG) or a document."""
    photo, document = message.get("photo"), message.get("document")
    if isinstance(photo, list) and photo and photo[-1].get("file_id"):
        return (InboundFile(str(photo[-1]["file_id"]), "photo.jpg", "image/jpeg"),)
    if isinstance(document, dict) and document.get("file_id"):
        name, kind = document.get("file_name") or "file", document.get("mime_type") or "application/octet-stream"
        return (InboundFile(str(document["file_id"]), str(name), str(kind)),)
    return ()


def telegram_inbound(team_id: uuid.UUID, update: dict[str, Any]) -> Inbound | None:
    """A new message from a person (edits, reactions, bots' own messages and service messages are ignored)."""
    message = update.get("message")
    if not isinstance(message, dict):
        return None
    sender, chat = message.get("from") or {}, message.get("chat") or {}
    text = message.get("text") or message.get("caption") or ""
    attached = _telegram_files(message)
    if sender.get("is_bot") or "id" not in sender or "id" not in chat or not (text or attached):
        return None
    topic = _topic_reply(message)
    replied = _str((message.get("reply_to_message") or {}).get("message_id"))
    chat_id = str(chat["id"])
    return Inbound(
        team_id=team_id,
        platform="telegram",
        user_id=str(sender["id"]),
        user_name=sender.get("username") or sender.get("first_name"),
        text=topic[1] if topic else text,
        # Commands are not replies, so PocketPing's handler skips them: their topic is read here.
        thread_ref=topic[0] if topic else _str(message.get("message_thread_id")),
        reply_to_ref=replied,
        direct_chat_id=chat_id if chat.get("type") == "private" else None,
        chat_id=chat_id,
        message_ref=str(message.get("message_id")),
        delivery_key=f"{chat_id}:{message.get('message_id')}",
        files=attached,
    )


def slack_event_inbound(team_id: uuid.UUID, payload: dict[str, Any]) -> Inbound | None:
    """A person's message (Events API ``message``); bot messages, edits and deletions are ignored."""
    event = payload.get("event") or {}
    # A message with files comes with subtype file_share; other subtypes are edits, joins, bots...
    plain = event.get("subtype") in (None, "file_share")
    if event.get("type") != "message" or not plain or event.get("bot_id") or not event.get("user"):
        return None
    text, channel = event.get("text") or "", event.get("channel")
    attached = tuple(
        InboundFile(str(f["url_private"]), str(f.get("name") or "file"), str(f.get("mimetype") or ""))
        for f in event.get("files") or []
        if isinstance(f, dict) and f.get("url_private")
    )
    if not (text or attached) or not channel:
        return None
    return Inbound(
        team_id=team_id,
        platform="slack",
        user_id=str(event["user"]),
        user_name=None,
        text=text,
        thread_ref=event.get("thread_ts"),
        direct_chat_id=channel if event.get("channel_type") == "im" else None,
        chat_id=channel,
        message_ref=event.get("ts"),
        delivery_key=payload.get("event_id") or f"{channel}:{event.get('ts')}",
        files=attached,
    )


def slack_command_inbound(team_id: uuid.UUID, body: bytes) -> Inbound | None:
    """A slash command (form-encoded): ``/online``, or one command for all, e.g. ``/switchboard status``.

    Slack sends slash commands without their thread, so only the commands that need none work this way.
    """
    form = dict(parse_qsl(body.decode(errors="replace"), keep_blank_values=True))
    command, user, channel = form.get("command", ""), form.get("user_id"), form.get("channel_id", "")
    if not command.startswith("/") or not user:
        return None
    text = form.get("text", "").strip()
    known = command[1:].lower() in {*COMMANDS, "link", "help"}
    return Inbound(
        team_id=team_id,
        platform="slack",
        user_id=user,
        user_name=form.get("user_name"),
        text=f"{command} {text}".strip() if known else "/" + (text or "help"),
        direct_chat_id=channel if channel.startswith("D") else None,
        chat_id=channel,
        delivery_key=form.get("trigger_id"),
    )


DISCORD_PING = 1
DISCORD_COMMAND = 2


def _discord_reply(interaction: dict[str, Any]) -> tuple[str, str] | None:
    """(thread id, text) of a ``/reply message:...`` command, as PocketPing reads it."""
    seen: list[tuple[str, str]] = []

    def capture(thread: str, text: str, *_: Any) -> None:
        seen.append((thread, text))

    WebhookHandler(WebhookConfig(on_operator_message=capture)).handle_discord_webhook(interaction)
    return seen[0] if seen else None


def discord_inbound(team_id: uuid.UUID, interaction: dict[str, Any]) -> Inbound | None:
    """An application command: ``/reply message:...`` goes to the visitor, the others are Switchboard's commands."""
    data = interaction.get("data") or {}
    user = (interaction.get("member") or {}).get("user") or interaction.get("user") or {}
    channel = interaction.get("channel_id")
    if interaction.get("type") != DISCORD_COMMAND or not data.get("name") or "id" not in user or not channel:
        return None
    reply = _discord_reply(interaction)
    # A /reply's file option (type 11) names an attachment the interaction resolves, URL and all.
    resolved = (data.get("resolved") or {}).get("attachments") or {}
    attached = tuple(
        InboundFile(str(a["url"]), str(a.get("filename") or "file"), str(a.get("content_type") or ""))
        for a in resolved.values()
        if isinstance(a, dict) and a.get("url")
    )
    is_reply = reply is not None or (data["name"] == "reply" and bool(attached))
    if reply is not None:
        text = reply[1]
    elif is_reply:
        text = ""
    else:
        # Options in the order given, e.g. /transfer operator:@ana note:"VIP" -> "/transfer @ana VIP".
        values = [str(option.get("value", "")) for option in data.get("options") or []]
        text = " ".join(["/" + str(data["name"]), *values])
    return Inbound(
        team_id=team_id,
        platform="discord",
        user_id=str(user["id"]),
        user_name=user.get("username"),
        text=text,
        thread_ref=str(channel),
        direct_chat_id=None if interaction.get("guild_id") else str(channel),
        chat_id=str(channel),
        delivery_key=str(interaction.get("id")),
        is_reply=is_reply,
        files=attached if is_reply else (),
    )
