"""Loopback stand-ins for the Telegram Bot API, the Slack Web API and the Discord API (v10).

Each one is a real HTTP server on 127.0.0.1 (a thread, so sync and async tests can use it) that
records every call and answers the calls the bridges make the way the real API does. Point the
real client code at ``server.base_url`` (``TELEGRAM_API_BASE`` / ``SLACK_API_BASE`` /
``DISCORD_API_BASE``) and assert on ``server.calls``.

    with TelegramStandIn() as telegram:
        ...  # code under test posts to f"{telegram.base_url}/bot{token}/sendMessage"
        [call] = telegram.calls_to("sendMessage")
        assert call.body["chat_id"] == "-100123" and call.token == token
"""

from __future__ import annotations

import asyncio
import email.parser
import email.policy
import itertools
import json
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, urlsplit

__all__ = ["Call", "DiscordStandIn", "SlackStandIn", "StandIn", "TelegramStandIn", "Upload"]


@dataclass(frozen=True)
class Upload:
    """A file part of a multipart/form-data call."""

    filename: str | None
    content_type: str
    data: bytes


@dataclass(frozen=True)
class Served:
    """A raw (non-JSON) answer: a file's bytes, or Slack's plain-text upload answer."""

    data: bytes
    content_type: str = "application/octet-stream"


@dataclass(frozen=True)
class Call:
    """One request the stand-in received, and what it answered."""

    name: (
        str  # Telegram/Slack method ("sendMessage", "chat.postMessage"); Discord route ("POST /channels/{id}/messages")
    )
    method: str
    path: str
    body: Any  # parsed JSON or form fields (dict); None when empty
    token: str | None  # the bot token the call carried (URL for Telegram, Authorization header otherwise)
    headers: dict[str, str]
    status: int = 200
    response: Any = None
    at: float = field(default_factory=time.monotonic)


class BadRequest(Exception):
    """A call the real API refuses as a bad request; the text is its reason."""


Answer = tuple[int, Any]  # (HTTP status, JSON body; None for an empty body)


class StandIn:
    """A recording HTTP server on loopback; subclasses route requests in ``answer``."""

    def __init__(self, *, tokens: set[str] | None = None) -> None:
        # With ``tokens``, calls carrying any other token are refused as the real API refuses them.
        self.tokens = tokens
        self.calls: list[Call] = []
        self._failures: dict[str, Answer] = {}
        self._lock = threading.Lock()
        self._ids = itertools.count(1)
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, name=type(self).__name__, daemon=True)

    # Lifecycle -------------------------------------------------------------------------------

    @property
    def base_url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}{self.prefix}"

    prefix = ""
    # The query parameter carrying the token, for an API that authenticates that way (Gemini's ``key``).
    query_token: str | None = None

    def start(self) -> StandIn:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def __enter__(self) -> Any:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # What tests use --------------------------------------------------------------------------

    def calls_to(self, name: str) -> list[Call]:
        """Recorded calls with this name (method or route), oldest first."""
        with self._lock:
            return [call for call in self.calls if call.name == name]

    def clear(self) -> None:
        with self._lock:
            self.calls.clear()

    def fail(self, name: str, status: int, body: Any) -> None:
        """Answer every later call named ``name`` with this status and body (until ``clear_failures``)."""
        self._failures[name] = (status, body)

    def clear_failures(self) -> None:
        self._failures.clear()

    async def wait_for(self, name: str, count: int = 1, within: float = 10.0) -> list[Call]:
        """Wait until at least ``count`` calls named ``name`` arrived; returns them all."""
        deadline = time.monotonic() + within
        while len(calls := self.calls_to(name)) < count:
            if time.monotonic() > deadline:
                raise AssertionError(f"{type(self).__name__}: {len(calls)} {name} calls in {within} s, want {count}")
            await asyncio.sleep(0.02)
        return calls

    def next_id(self) -> int:
        with self._lock:
            return next(self._ids)

    # Routing ---------------------------------------------------------------------------------

    def route(self, method: str, path: str, headers: dict[str, str]) -> tuple[str, str | None]:
        """The call's name and token."""
        raise NotImplementedError

    def answer(self, name: str, method: str, path: str, body: Any, token: str | None) -> Answer:
        raise NotImplementedError

    def answer_request(
        self, name: str, method: str, path: str, body: Any, token: str | None, headers: dict[str, str]
    ) -> Answer:
        """``answer``, for stand-ins that read the request's headers too (signatures, encodings)."""
        return self.answer(name, method, path, body, token)

    def _record(self, method: str, path: str, headers: dict[str, str], raw: bytes, query: str = "") -> Call:
        name, token = self.route(method, path, headers)
        if token is None and self.query_token is not None:
            token = dict(parse_qsl(query)).get(self.query_token)
        body = _parse_body(raw, headers.get("content-type", ""))
        try:
            status, response = self._failures.get(name) or self.answer_request(name, method, path, body, token, headers)
        except Exception as exc:  # a stand-in bug shows up as a recorded 500, not a hung client
            status, response = 500, {"error": repr(exc)}
        call = Call(name, method, path, body, token, headers, status, response)
        with self._lock:
            self.calls.append(call)
        return call

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        standin = self

        class Handler(BaseHTTPRequestHandler):
            def _serve(self) -> None:
                raw = self.rfile.read(int(self.headers.get("content-length") or 0))
                headers = {key.lower(): value for key, value in self.headers.items()}
                target = urlsplit(self.path)
                call = standin._record(self.command, target.path, headers, raw, target.query)
                served = call.response if isinstance(call.response, Served) else None
                data = b"" if call.response is None else served.data if served else json.dumps(call.response).encode()
                self.send_response(call.status)
                if data:
                    self.send_header("content-type", served.content_type if served else "application/json")
                self.send_header("content-length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = do_PATCH = do_PUT = do_DELETE = _serve

            def log_message(self, format: str, *args: Any) -> None:  # quiet: tests read ``calls``
                pass

        return Handler


def _parse_body(raw: bytes, content_type: str) -> Any:
    if not raw:
        return None
    if "application/x-www-form-urlencoded" in content_type:
        return dict(parse_qsl(raw.decode()))
    if "multipart/form-data" in content_type:
        return _multipart(raw, content_type)
    if not content_type.startswith(("application/json", "text/")) and content_type:
        return raw  # a file's bytes (Slack's upload URL)
    try:
        return json.loads(raw)
    except ValueError:
        return raw.decode(errors="replace")


def _multipart(raw: bytes, content_type: str) -> dict[str, Any]:
    """The fields of a multipart/form-data body: text as str, files as ``Upload`` (what the real APIs read)."""
    message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(
        f"Content-Type: {content_type}\r\n\r\n".encode() + raw
    )
    fields: dict[str, Any] = {}
    for part in message.iter_parts():  # type: ignore[attr-defined]
        name = part.get_param("name", header="content-disposition")
        data = part.get_payload(decode=True) or b""
        filename = part.get_filename()
        if filename is None:
            fields[name] = data.decode()
        else:
            fields[name] = Upload(filename, part.get_content_type(), data)
    return fields


def _bearer(headers: dict[str, str], scheme: str) -> str | None:
    value = headers.get("authorization", "")
    return value[len(scheme) + 1 :] if value.startswith(scheme + " ") else None


# --- Telegram Bot API --------------------------------------------------------------------------------------------


class TelegramStandIn(StandIn):
    """``POST {base}/bot<token>/<method>``; answers ``{"ok": true, "result": ...}`` like the Bot API."""

    def __init__(self, *, tokens: set[str] | None = None, bot_username: str = "switchboard_bot") -> None:
        super().__init__(tokens=tokens)
        self.bot_username = bot_username
        self._topics = itertools.count(1001)
        # Files a test put "in the chat": file_id -> (file_path, bytes), served for getFile and downloads.
        self.files: dict[str, tuple[str, bytes]] = {}

    def host_file(self, data: bytes, filename: str) -> str:
        """Keep a file as if a user had sent it; its ``file_id`` (for a ``photo``/``document`` in an update)."""
        file_id = f"AgAC{self.next_id():08d}"
        self.files[file_id] = (f"documents/file_{len(self.files)}_{filename}", data)
        return file_id

    def route(self, method: str, path: str, headers: dict[str, str]) -> tuple[str, str | None]:
        download = re.fullmatch(r"/file/bot([^/]+)/(.+)", path)
        if download:  # https://api.telegram.org/file/bot<token>/<file_path>
            return "file", download.group(1)
        match = re.fullmatch(r"/bot([^/]+)/(\w+)", path)
        return (match.group(2), match.group(1)) if match else (path, None)

    def answer(self, name: str, method: str, path: str, body: Any, token: str | None) -> Answer:
        if token is None:
            return 404, {"ok": False, "error_code": 404, "description": "Not Found"}
        if self.tokens is not None and token not in self.tokens:
            return 401, {"ok": False, "error_code": 401, "description": "Unauthorized"}
        if name == "file":
            wanted = path.split("/", 3)[3]
            found = [data for file_path, data in self.files.values() if file_path == wanted]
            return (200, Served(found[0])) if found else (404, {"ok": False, "error_code": 404})
        body = body if isinstance(body, dict) else {}
        handler: Callable[[dict[str, Any]], Any] | None = getattr(self, f"_tg_{name}", None)
        if handler is None:
            return 404, {"ok": False, "error_code": 404, "description": "Not Found: method not found"}
        if "chat_id" in body and not re.fullmatch(r"-?\d+|@\w+", str(body["chat_id"])):
            return 400, {"ok": False, "error_code": 400, "description": "Bad Request: chat not found"}
        try:
            return 200, {"ok": True, "result": handler(body)}
        except BadRequest as refused:
            return 400, {"ok": False, "error_code": 400, "description": f"Bad Request: {refused}"}

    def _file_message(self, body: dict[str, Any], part: str) -> Any:
        # The file must come as a multipart file part of that name (a URL or file_id string is not handled here).
        upload = body.get(part)
        if not isinstance(upload, Upload) or not upload.data:
            raise BadRequest(f"there is no {part} in the request")
        message = self._message(body)
        file_id = self.host_file(upload.data, upload.filename or part)
        described = {"file_id": file_id, "file_unique_id": file_id[-8:], "file_size": len(upload.data)}
        message[part] = [described] if part == "photo" else {**described, "file_name": upload.filename}
        if body.get("caption"):
            message["caption"] = body["caption"]
        return message

    def _tg_sendPhoto(self, body: dict[str, Any]) -> Any:
        return self._file_message(body, "photo")

    def _tg_sendDocument(self, body: dict[str, Any]) -> Any:
        return self._file_message(body, "document")

    def _tg_getFile(self, body: dict[str, Any]) -> Any:
        file_id = str(body.get("file_id", ""))
        if file_id not in self.files:
            raise BadRequest("invalid file_id")
        file_path, data = self.files[file_id]
        return {"file_id": file_id, "file_unique_id": file_id[-8:], "file_size": len(data), "file_path": file_path}

    def _message(self, body: dict[str, Any]) -> dict[str, Any]:
        chat_id = int(body["chat_id"])
        message: dict[str, Any] = {
            "message_id": self.next_id(),
            "date": int(time.time()),
            "chat": {"id": chat_id, "type": "supergroup" if chat_id < 0 else "private"},
            "from": {"id": 777000, "is_bot": True, "first_name": "Switchboard", "username": self.bot_username},
        }
        if "text" in body:
            message["text"] = body["text"]
        if body.get("message_thread_id"):
            message["message_thread_id"] = int(body["message_thread_id"])
            message["is_topic_message"] = True
        return message

    def _tg_sendMessage(self, body: dict[str, Any]) -> Any:
        return self._message(body)

    def _tg_editMessageText(self, body: dict[str, Any]) -> Any:
        return {**self._message(body), "message_id": int(body["message_id"]), "edit_date": int(time.time())}

    def _tg_createForumTopic(self, body: dict[str, Any]) -> Any:
        return {"message_thread_id": next(self._topics), "name": body.get("name", ""), "icon_color": 7322096}

    def _tg_getMe(self, body: dict[str, Any]) -> Any:
        return {"id": 777000, "is_bot": True, "first_name": "Switchboard", "username": self.bot_username}

    def _true(self, body: dict[str, Any]) -> Any:
        return True

    _tg_deleteMessage = _tg_sendChatAction = _tg_editForumTopic = _tg_closeForumTopic = _tg_reopenForumTopic = _true
    _tg_setWebhook = _tg_deleteWebhook = _tg_setMyCommands = _tg_answerCallbackQuery = _true


# --- Slack Web API -----------------------------------------------------------------------------------------------


class SlackStandIn(StandIn):
    """``POST {base}/<method>`` with ``Authorization: Bearer xoxb-...``; answers ``{"ok": ...}`` like Slack."""

    prefix = "/api"

    def __init__(self, *, tokens: set[str] | None = None) -> None:
        super().__init__(tokens=tokens)
        self._clock = itertools.count(1)
        # Files by id: {"filename", "length", "data" (None until uploaded), "shared" (channel, thread_ts)}.
        self.files: dict[str, dict[str, Any]] = {}

    @property
    def _root(self) -> str:
        return self.base_url.removesuffix(self.prefix)

    def host_file(self, data: bytes, filename: str, mimetype: str) -> dict[str, Any]:
        """Keep a file as if a user had shared it; the file object of a message event's ``files``."""
        file_id = f"F{self.next_id():09d}"
        self.files[file_id] = {"filename": filename, "length": len(data), "data": data, "shared": None}
        url = f"{self._root}/files-pri/T0TEAM-{file_id}/{filename}"
        return {"id": file_id, "name": filename, "mimetype": mimetype, "size": len(data), "url_private": url}

    def route(self, method: str, path: str, headers: dict[str, str]) -> tuple[str, str | None]:
        if path.startswith(("/upload/", "/files-pri/")):
            return path.split("/")[1], _bearer(headers, "Bearer")
        return path.removeprefix("/api/"), _bearer(headers, "Bearer")

    def _serve(self, name: str, path: str, body: Any, token: str | None) -> Answer:
        """The upload URL (signed by its path, so no token) and private file downloads (the bot token)."""
        file_id = path.split("/")[2].removeprefix("T0TEAM-")
        entry = self.files.get(file_id)
        if name == "upload":
            if entry is None or entry["data"] is not None:
                return 404, None
            if not isinstance(body, bytes) or len(body) != entry["length"]:
                return 400, Served(b"length mismatch", "text/plain")
            entry["data"] = body
            return 200, Served(f"OK - {len(body)}".encode(), "text/plain")
        if token is None or (self.tokens is not None and token not in self.tokens):
            return 302, None  # Slack redirects an unauthenticated download to its login page
        return (200, Served(entry["data"])) if entry and entry["data"] is not None else (404, None)

    def answer(self, name: str, method: str, path: str, body: Any, token: str | None) -> Answer:
        if name in ("upload", "files-pri"):
            return self._serve(name, path, body, token)
        # Slack answers HTTP 200 with ok=false for API errors.
        if token is None:
            return 200, {"ok": False, "error": "not_authed"}
        if self.tokens is not None and token not in self.tokens:
            return 200, {"ok": False, "error": "invalid_auth"}
        body = body if isinstance(body, dict) else {}
        handler: Callable[[dict[str, Any]], Any] | None = getattr(self, "_slack_" + name.replace(".", "_"), None)
        if handler is None:
            return 200, {"ok": False, "error": "unknown_method"}
        return 200, handler(body)

    def ts(self) -> str:
        """A fresh message timestamp, unique and increasing like Slack's."""
        with self._lock:
            return f"{1_700_000_000 + next(self._clock)}.{next(self._ids):06d}"

    def _slack_chat_postMessage(self, body: dict[str, Any]) -> Any:
        channel = body.get("channel")
        if not channel:
            return {"ok": False, "error": "channel_not_found"}
        ts = self.ts()
        message = {"type": "message", "text": body.get("text", ""), "user": "U0BOT", "bot_id": "B0BOT", "ts": ts}
        if body.get("thread_ts"):
            message["thread_ts"] = body["thread_ts"]
        return {"ok": True, "channel": channel, "ts": ts, "message": message}

    def _slack_files_getUploadURLExternal(self, body: dict[str, Any]) -> Any:
        # Form-encoded only, as on Slack: a JSON body arrives as a dict without these string fields.
        length = body.get("length")
        if not body.get("filename") or not isinstance(length, str) or not length.isdigit():
            return {"ok": False, "error": "invalid_arguments"}
        file_id = f"F{self.next_id():09d}"
        self.files[file_id] = {"filename": body["filename"], "length": int(length), "data": None, "shared": None}
        return {"ok": True, "upload_url": f"{self._root}/upload/{file_id}", "file_id": file_id}

    def _slack_files_completeUploadExternal(self, body: dict[str, Any]) -> Any:
        wanted = body.get("files") or []
        if not wanted or any(self.files.get(f.get("id"), {}).get("data") is None for f in wanted):
            return {"ok": False, "error": "file_not_found"}
        for f in wanted:
            self.files[f["id"]]["shared"] = (body.get("channel_id"), body.get("thread_ts"))
        return {"ok": True, "files": [{"id": f["id"], "title": f.get("title", "")} for f in wanted]}

    def _slack_chat_postEphemeral(self, body: dict[str, Any]) -> Any:
        return {"ok": True, "message_ts": self.ts()}

    def _slack_chat_update(self, body: dict[str, Any]) -> Any:
        return {"ok": True, "channel": body.get("channel"), "ts": body.get("ts"), "text": body.get("text", "")}

    def _slack_chat_delete(self, body: dict[str, Any]) -> Any:
        return {"ok": True, "channel": body.get("channel"), "ts": body.get("ts")}

    def _slack_conversations_open(self, body: dict[str, Any]) -> Any:
        users = body.get("users")
        if not users:
            return {"ok": False, "error": "users_list_not_supplied"}
        # The same user always gets the same DM channel, as on Slack.
        return {"ok": True, "channel": {"id": "D" + re.sub(r"[^A-Z0-9]", "", str(users).upper())[:10]}}

    def _slack_auth_test(self, body: dict[str, Any]) -> Any:
        return {
            "ok": True,
            "url": "https://example.slack.com/",
            "team_id": "T0TEAM",
            "user_id": "U0BOT",
            "bot_id": "B0BOT",
        }

    def _slack_users_info(self, body: dict[str, Any]) -> Any:
        user = body.get("user", "")
        return {"ok": True, "user": {"id": user, "name": user.lower(), "real_name": f"User {user}"}}


# --- Discord API v10 ---------------------------------------------------------------------------------------------

_DISCORD_ROUTES = [
    ("POST", r"/channels/(\d+)/messages", "POST /channels/{id}/messages"),
    ("PATCH", r"/channels/(\d+)/messages/(\d+)", "PATCH /channels/{id}/messages/{id}"),
    ("DELETE", r"/channels/(\d+)/messages/(\d+)", "DELETE /channels/{id}/messages/{id}"),
    ("POST", r"/channels/(\d+)/messages/(\d+)/threads", "POST /channels/{id}/messages/{id}/threads"),
    ("POST", r"/channels/(\d+)/threads", "POST /channels/{id}/threads"),
    ("POST", r"/channels/(\d+)/typing", "POST /channels/{id}/typing"),
    ("POST", r"/users/@me/channels", "POST /users/@me/channels"),
    ("GET", r"/users/@me", "GET /users/@me"),
    ("POST", r"/interactions/(\d+)/([^/]+)/callback", "POST /interactions/{id}/{token}/callback"),
    ("POST", r"/webhooks/(\d+)/([^/]+)", "POST /webhooks/{id}/{token}"),
    ("PATCH", r"/webhooks/(\d+)/([^/]+)/messages/@original", "PATCH /webhooks/{id}/{token}/messages/@original"),
]
BOT_USER = {"id": "900000000000000001", "username": "switchboard", "discriminator": "0", "bot": True}


class DiscordStandIn(StandIn):
    """``{base}/channels/...`` with ``Authorization: Bot <token>``; answers like Discord's REST API v10.

    Interaction callbacks and follow-ups (``/interactions``, ``/webhooks``) are authenticated by
    the interaction token in the path, as on Discord, so they need no bot token.
    """

    prefix = "/api/v10"

    def __init__(self, *, tokens: set[str] | None = None) -> None:
        super().__init__(tokens=tokens)
        # The CDN: attachment path -> bytes (what a message's ``attachments[].url`` serves).
        self.cdn: dict[str, bytes] = {}

    def host_file(self, data: bytes, filename: str, content_type: str, channel_id: str = "0") -> dict[str, Any]:
        """Keep a file on the "CDN"; an ``attachments[]`` entry of a message carrying it."""
        attachment_id = self.snowflake()
        path = f"/attachments/{channel_id}/{attachment_id}/{filename}"
        self.cdn[path] = data
        root = self.base_url.removesuffix(self.prefix)
        return {
            "id": attachment_id,
            "filename": filename,
            "size": len(data),
            "content_type": content_type,
            "url": f"{root}{path}?ex=1&is=1&hm=signed",
        }

    def route(self, method: str, path: str, headers: dict[str, str]) -> tuple[str, str | None]:
        if path.startswith("/attachments/"):
            return "GET /attachments", None
        path = path.removeprefix(self.prefix)
        for verb, pattern, name in _DISCORD_ROUTES:
            if verb == method and re.fullmatch(pattern, path):
                return name, _bearer(headers, "Bot")
        return f"{method} {path}", _bearer(headers, "Bot")

    def snowflake(self) -> str:
        return str(1_200_000_000_000_000_000 + self.next_id())

    def answer(self, name: str, method: str, path: str, body: Any, token: str | None) -> Answer:
        if name == "GET /attachments":  # the CDN's URLs are signed by their query, so they need no token
            return (200, Served(self.cdn[path])) if path in self.cdn else (404, None)
        path = path.removeprefix(self.prefix)
        open_route = name.startswith(("POST /interactions", "POST /webhooks", "PATCH /webhooks"))
        if not open_route and (token is None or (self.tokens is not None and token not in self.tokens)):
            return 401, {"message": "401: Unauthorized", "code": 0}
        body = body if isinstance(body, dict) else {}
        ids = re.findall(r"\d{6,}", path)
        if name == "POST /channels/{id}/messages":
            if "payload_json" in body:
                return self._with_files(ids[0], body)
            return 200, self._message(ids[0], body)
        if name == "PATCH /channels/{id}/messages/{id}":
            return 200, {**self._message(ids[0], body), "id": ids[1], "edited_timestamp": _now()}
        if name in ("DELETE /channels/{id}/messages/{id}", "POST /channels/{id}/typing"):
            return 204, None
        if name == "POST /channels/{id}/messages/{id}/threads":
            # A thread started from a message has that message's id.
            return 201, self._thread_channel(ids[1], ids[0], body)
        if name == "POST /channels/{id}/threads":
            return 201, self._thread_channel(self.snowflake(), ids[0], body)
        if name == "POST /users/@me/channels":
            if not body.get("recipient_id"):
                return 400, {"message": "Invalid Form Body", "code": 50035}
            # The same user always gets the same DM channel, as on Discord.
            dm = str(1_100_000_000_000_000_000 + int(body["recipient_id"]) % 10**15)
            return 200, {"id": dm, "type": 1, "recipients": [{"id": body["recipient_id"]}]}
        if name == "GET /users/@me":
            return 200, BOT_USER
        if name == "POST /interactions/{id}/{token}/callback":
            return 204, None
        if name in ("POST /webhooks/{id}/{token}", "PATCH /webhooks/{id}/{token}/messages/@original"):
            return 200, self._message(self.snowflake(), body)
        return 404, {"message": "404: Not Found", "code": 0}

    def _message(self, channel_id: str, body: dict[str, Any]) -> dict[str, Any]:
        message = {
            "id": self.snowflake(),
            "channel_id": channel_id,
            "type": 0,
            "content": body.get("content", ""),
            "embeds": body.get("embeds", []),
            "author": BOT_USER,
            "timestamp": _now(),
        }
        if body.get("message_reference"):
            message["message_reference"] = body["message_reference"]
        return message

    def _with_files(self, channel_id: str, body: dict[str, Any]) -> Answer:
        """A multipart message: ``payload_json`` plus a ``files[n]`` part for each ``attachments[].id`` n."""
        payload = json.loads(body["payload_json"])
        attached = []
        for entry in payload.get("attachments") or []:
            upload = body.get(f"files[{entry.get('id')}]")
            if not isinstance(upload, Upload) or not upload.data:
                return 400, {"message": "Invalid Form Body", "code": 50035}
            attached.append(self.host_file(upload.data, upload.filename or "file", upload.content_type, channel_id))
        if not attached and not payload.get("content"):
            return 400, {"message": "Cannot send an empty message", "code": 50006}
        return 200, {**self._message(channel_id, payload), "attachments": attached}

    def _thread_channel(self, thread_id: str, parent_id: str, body: dict[str, Any]) -> dict[str, Any]:
        return {"id": thread_id, "type": body.get("type", 11), "parent_id": parent_id, "name": body.get("name", "")}


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S+00:00", time.gmtime())
