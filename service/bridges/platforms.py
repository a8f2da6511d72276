"""PocketPing's own Telegram, Discord and Slack bridges, taught to post where Switchboard says.

The SDK's bridges post everything to one chat. These subclasses keep the SDK's formatting and
API calls, and read the destination of each call from ``destination``: the conversation's
thread in the team's chat (Telegram forum topic, Slack thread, Discord thread) or an operator's
direct chat. The platform message ids of what they post are collected in ``sent_ids``.
"""

from __future__ import annotations

import contextlib
import contextvars
import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
from pocketping.bridges import Bridge, DiscordBridge, SlackBridge, TelegramBridge
from pocketping.models import Message, Sender, Session, UserIdentity

from service.settings import Settings

# What Telegram's sendPhoto takes (it re-encodes them); other files go through sendDocument.
PHOTO_TYPES = frozenset({"image/jpeg", "image/png", "image/webp"})


class PlatformError(Exception):
    """The platform did not do what was asked (the SDK has printed its reason, without secrets)."""


@dataclass(frozen=True)
class Destination:
    """Where a call posts: ``chat`` None is the team's channel; ``thread`` None is outside any thread."""

    chat: str | None = None
    thread: str | None = None


_destination: contextvars.ContextVar[Destination | None] = contextvars.ContextVar("bridge_destination", default=None)
_sent: contextvars.ContextVar[list[str] | None] = contextvars.ContextVar("bridge_sent", default=None)


@contextlib.contextmanager
def destination(chat: str | None = None, thread: str | None = None) -> Iterator[list[str]]:
    """Within the block, bridge calls post to ``chat``/``thread``; yields the ids of the messages posted."""
    sent: list[str] = []
    tokens = (_destination.set(Destination(chat, thread)), _sent.set(sent))
    try:
        yield sent
    finally:
        _destination.reset(tokens[0])
        _sent.reset(tokens[1])


def _field(result: dict[str, Any] | None, key: str, failure: str) -> str:
    """One field of a platform's answer; ``PlatformError`` when the call failed."""
    if not result:
        raise PlatformError(failure)
    return str(result[key])


async def _fetch(client: httpx.AsyncClient | None, url: str, limit: int, **headers: str) -> bytes:
    """GET a file, keeping at most ``limit`` + 1 bytes (enough to tell it is too large)."""
    if client is None:
        raise PlatformError("bridge not initialized")
    try:
        async with client.stream("GET", url, headers=headers) as response:
            if response.status_code != 200:
                raise PlatformError(f"file download answered {response.status_code}")
            data = bytearray()
            async for chunk in response.aiter_bytes():
                data += chunk
                if len(data) > limit:
                    break
            return bytes(data[: limit + 1])
    except httpx.HTTPError as exc:
        raise PlatformError(f"file download failed: {type(exc).__name__}") from None


def _here() -> Destination:
    return _destination.get() or Destination()


def _record(platform_id: Any) -> None:
    sent = _sent.get()
    if sent is not None and platform_id is not None:
        sent.append(str(platform_id))


class PlatformBridge(Bridge):
    """What Switchboard adds to each SDK bridge: threads, direct chats and plain bot messages."""

    async def open_thread(self, title: str, session: Session) -> str:
        """Start the conversation's thread in the team's chat, with the SDK's new-session card; its ref."""
        raise NotImplementedError

    async def open_direct(self, external_user_id: str) -> str:
        """The chat id where the bot writes to this platform user directly."""
        raise NotImplementedError

    async def post(self, text: str) -> str:
        """A plain bot message at the current destination; its platform message id."""
        raise NotImplementedError

    async def send_file(self, filename: str, mime_type: str, data: bytes, caption: str | None) -> None:
        """One file (with an optional plain-text caption) at the current destination; ``PlatformError`` if not sent."""
        raise NotImplementedError

    async def download(self, ref: str, limit: int) -> bytes:
        """The bytes of a file an operator sent (by the ``InboundFile.ref`` the payload gave); at most ``limit``+1
        of them are read, so the team's limit refuses a larger one. ``PlatformError`` when it cannot be fetched."""
        raise NotImplementedError

    async def notify_disconnect(self, session: Session, message: str) -> None:
        await self.post(message)

    async def on_message_edit(
        self, message: Message, session: Session, platform_message_id: str | int | None = None
    ) -> None:
        # The SDK's edit hooks name the visitor as the author; an operator's edit names its operator
        # (``operatorName``, set by the hub's ``announce_edit``), through the identity they read the name from.
        if message.sender is not Sender.VISITOR:
            author = (message.metadata or {}).get("operatorName") or "Operator"
            session = session.model_copy(update={"identity": UserIdentity(id=session.visitor_id, name=author)})
        await super().on_message_edit(message, session, platform_message_id)


class TeamTelegramBridge(PlatformBridge, TelegramBridge):
    """Telegram: one forum topic per conversation in the team's forum supergroup."""

    def __init__(self, bot_token: str, chat_id: str, api_base: str) -> None:
        super().__init__(bot_token=bot_token, chat_id=chat_id)
        self._base_url = f"{api_base.rstrip('/')}/bot{bot_token}"
        self._file_url = f"{api_base.rstrip('/')}/file/bot{bot_token}"

    def _params(self) -> dict[str, Any]:
        where = _here()
        params: dict[str, Any] = {"chat_id": where.chat or self.chat_id}
        if where.thread is not None:
            params["message_thread_id"] = int(where.thread)
        return params

    async def _send_message(self, text: str, *, reply_to_message_id: int | None = None) -> dict[str, Any] | None:
        params = {
            **self._params(),
            "text": text,
            "parse_mode": self.parse_mode,
            "disable_notification": self.disable_notification,
        }
        if reply_to_message_id:
            params["reply_to_message_id"] = reply_to_message_id
        result = await self._request("sendMessage", **params)
        if result:
            _record(result.get("message_id"))
        return result

    async def _edit_message(self, message_id: int, text: str) -> dict[str, Any] | None:
        params = {"chat_id": _here().chat or self.chat_id}
        return await self._request(
            "editMessageText", **params, message_id=message_id, text=text, parse_mode=self.parse_mode
        )

    async def open_thread(self, title: str, session: Session) -> str:
        topic = await self._request("createForumTopic", chat_id=self.chat_id, name=title[:128])
        thread = _field(topic, "message_thread_id", "telegram: forum topic not created")
        with destination(thread=thread):
            await self.on_new_session(session)
        return thread

    async def open_direct(self, external_user_id: str) -> str:
        # A private chat's id is the user's id (the user must have started the bot once).
        return external_user_id

    async def post(self, text: str) -> str:
        return _field(await self._send_message(self._escape_html(text)), "message_id", "telegram: message not sent")

    async def send_file(self, filename: str, mime_type: str, data: bytes, caption: str | None) -> None:
        # sendPhoto takes the formats Telegram re-encodes as photos; anything else goes as a document.
        method, part = ("sendPhoto", "photo") if mime_type in PHOTO_TYPES else ("sendDocument", "document")
        form = {key: str(value) for key, value in self._params().items()}
        if caption:
            form["caption"] = caption[:1024]
        assert self._client is not None
        response = await self._client.post(
            f"{self._base_url}/{method}", data=form, files={part: (filename, data, mime_type)}
        )
        result = response.json() if response.headers.get("content-type", "").startswith("application/json") else {}
        if not result.get("ok"):
            raise PlatformError(f"telegram: {method} refused ({response.status_code})")
        _record(result["result"].get("message_id"))

    async def download(self, ref: str, limit: int) -> bytes:
        found = await self._request("getFile", file_id=ref)
        path = _field(found, "file_path", "telegram: file not found")
        return await _fetch(self._client, f"{self._file_url}/{path}", limit)


class TeamSlackBridge(PlatformBridge, SlackBridge):
    """Slack: one thread per conversation in the team's channel, rooted at the new-session message."""

    def __init__(self, bot_token: str, channel_id: str, api_base: str) -> None:
        super().__init__(bot_token=bot_token, channel_id=channel_id)
        self._api_base = api_base.rstrip("/")

    async def _send_message(
        self, text: str | None = None, *, blocks: list[dict[str, Any]] | None = None, thread_ts: str | None = None
    ) -> dict[str, Any] | None:
        where = _here()
        payload: dict[str, Any] = {"channel": where.chat or self._channel_id}
        if text:
            payload["text"] = text
        if blocks:
            payload["blocks"] = blocks
        if thread_ts or where.thread:
            payload["thread_ts"] = thread_ts or where.thread
        result = await self._api_request("chat.postMessage", **payload)
        if result:
            _record(result.get("ts"))
        return result

    async def open_thread(self, title: str, session: Session) -> str:
        with destination() as sent:
            await self.on_new_session(session)
        if not sent:
            raise PlatformError("slack: thread root not posted")
        return sent[0]

    async def open_direct(self, external_user_id: str) -> str:
        result = await self._api_request("conversations.open", users=external_user_id)
        if not result:
            raise PlatformError("slack: direct conversation not opened")
        return str(result["channel"]["id"])

    async def post(self, text: str) -> str:
        return _field(await self._send_message(text), "ts", "slack: message not sent")

    async def send_file(self, filename: str, mime_type: str, data: bytes, caption: str | None) -> None:
        # Slack's external upload: get an upload URL (form-encoded only), POST the bytes there, then share it.
        assert self._client is not None
        form = {"Content-Type": "application/x-www-form-urlencoded"}
        got = (
            await self._client.post(
                f"{self._api_base}/files.getUploadURLExternal",
                data={"filename": filename, "length": str(len(data))},
                headers=form,
            )
        ).json()
        if not got.get("ok"):
            raise PlatformError(f"slack: no upload URL ({got.get('error')})")
        uploaded = await self._client.post(
            got["upload_url"], content=data, headers={"Content-Type": "application/octet-stream"}
        )
        if uploaded.status_code != 200:
            raise PlatformError(f"slack: upload refused ({uploaded.status_code})")
        where = _here()
        share: dict[str, Any] = {
            "files": [{"id": got["file_id"], "title": filename}],
            "channel_id": where.chat or self._channel_id,
        }
        if where.thread:
            share["thread_ts"] = where.thread
        if caption:
            share["initial_comment"] = caption
        if not await self._api_request("files.completeUploadExternal", **share):
            raise PlatformError("slack: file not shared")

    async def download(self, ref: str, limit: int) -> bytes:
        # url_private needs the bot token (the client sends it); the verified event named the URL.
        return await _fetch(self._client, ref, limit)


class TeamDiscordBridge(PlatformBridge, DiscordBridge):
    """Discord: one public thread per conversation under the team's channel."""

    def __init__(self, bot_token: str, channel_id: str, api_base: str) -> None:
        super().__init__(bot_token=bot_token, channel_id=channel_id)
        self._api_base = api_base.rstrip("/")

    def _channel(self) -> str:
        where = _here()
        return where.thread or where.chat or self._channel_id

    async def _send_message(
        self,
        content: str | None = None,
        *,
        embeds: list[dict[str, Any]] | None = None,
        reply_to_message_id: str | None = None,
    ) -> dict[str, Any] | None:
        data: dict[str, Any] = {}
        if content:
            data["content"] = content
        if embeds:
            data["embeds"] = embeds
        if reply_to_message_id:
            data["message_reference"] = {"message_id": reply_to_message_id}
        result = await self._bot_request("POST", f"/channels/{self._channel()}/messages", json_data=data)
        if result:
            _record(result.get("id"))
        return result

    async def _edit_message(
        self, message_id: str, content: str | None = None, *, embeds: list[dict[str, Any]] | None = None
    ) -> dict[str, Any] | None:
        data = {key: value for key, value in (("content", content), ("embeds", embeds)) if value}
        return await self._bot_request("PATCH", f"/channels/{self._channel()}/messages/{message_id}", json_data=data)

    async def _delete_message(self, message_id: str) -> bool:
        return await self._bot_request("DELETE", f"/channels/{self._channel()}/messages/{message_id}") is not None

    async def open_thread(self, title: str, session: Session) -> str:
        # type 11: a public thread; one without a starter message needs its type.
        created = await self._bot_request(
            "POST", f"/channels/{self._channel_id}/threads", json_data={"name": title[:100], "type": 11}
        )
        thread = _field(created, "id", "discord: thread not created")
        with destination(thread=thread):
            await self.on_new_session(session)
        return thread

    async def open_direct(self, external_user_id: str) -> str:
        channel = await self._bot_request("POST", "/users/@me/channels", json_data={"recipient_id": external_user_id})
        return _field(channel, "id", "discord: direct channel not opened")

    async def post(self, text: str) -> str:
        return _field(await self._send_message(text), "id", "discord: message not sent")

    async def send_file(self, filename: str, mime_type: str, data: bytes, caption: str | None) -> None:
        payload: dict[str, Any] = {"attachments": [{"id": 0, "filename": filename}]}
        if caption:
            payload["content"] = caption[:2000]
        assert self._client is not None
        response = await self._client.post(
            f"{self._api_base}/channels/{self._channel()}/messages",
            data={"payload_json": json.dumps(payload)},
            files={"files[0]": (filename, data, mime_type)},
        )
        if response.status_code >= 400:
            raise PlatformError(f"discord: file not sent ({response.status_code})")
        _record(response.json().get("id"))

    async def download(self, ref: str, limit: int) -> bytes:
        # The CDN URL is signed by its query: fetched without the bot token, which is for the API only.
        async with httpx.AsyncClient(timeout=30.0) as client:
            return await _fetch(client, ref, limit)


def build_bridge(platform: str, stored: dict[str, Any], token: str, settings: Settings) -> PlatformBridge:
    """The bridge for one platform of a team, from its stored settings and decrypted bot token."""
    if platform == "telegram":
        return TeamTelegramBridge(token, stored["chatId"], settings.telegram_api_base)
    if platform == "slack":
        return TeamSlackBridge(token, stored["channelId"], settings.slack_api_base)
    if platform == "discord":
        return TeamDiscordBridge(token, stored["channelId"], settings.discord_api_base)
    raise ValueError(f"unknown platform {platform!r}")
