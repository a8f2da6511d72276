"""Connected mode's connector: a PocketPing bridge that mirrors a customer's own PocketPing into Switchboard.

The customer keeps their backend and storage and adds ``SwitchboardBridge(url, api_key)`` to their
``PocketPing(bridges=[...])``. Its hooks only append an event to an in-memory buffer (the visitor's
request never waits on Switchboard); one background task posts the buffer in order, in signed batches, and
retries with exponential backoff while Switchboard is unreachable. Switchboard's replies come back as
signed callbacks to ``callback_app()``, an ASGI app the customer mounts, which applies each one once to
their PocketPing. This module needs only the SDK, httpx and the standard library: it runs in the customer's
process, not in Switchboard's (docs/connect.md).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import contextvars
import hashlib
import hmac
import itertools
import json
import logging
import time
import uuid
from collections.abc import Awaitable, Callable, Mapping
from typing import TYPE_CHECKING, Any

import httpx
from pocketping.bridges import Bridge
from pocketping.models import Message, MessageStatus, ReadRequest, Sender, SendMessageRequest, Session, TypingRequest

if TYPE_CHECKING:
    from pocketping import PocketPing

log = logging.getLogger(__name__)

KEY_HEADER = "Switchboard-Site-Key"
TIMESTAMP_HEADER = "Switchboard-Timestamp"
SIGNATURE_HEADER = "Switchboard-Signature"
EVENTS_PATH = "/api/v1/connect/events"
# A signed request older (or newer) than this is refused: a captured one cannot be replayed later.
TOLERANCE_SECONDS = 300
# Events per POST, and bytes: Switchboard accepts at most this many (and 2 MiB).
MAX_BATCH = 200
MAX_BATCH_BYTES = 1024 * 1024
# The label the callback secret is derived from the site key with (so Switchboard need not keep the key).
_CALLBACK_LABEL = b"switchboard-callback"

# Set while a callback is applied: the SDK then calls this bridge's hooks, which must not echo it back.
_applying: contextvars.ContextVar[bool] = contextvars.ContextVar("switchboard_applying", default=False)
# A message id chosen by Switchboard, used by the customer's PocketPing for the reply it is about to create.
_preset_id: contextvars.ContextVar[str | None] = contextvars.ContextVar("switchboard_preset_id", default=None)


# --- Signatures (both directions) -----------------------------------------------------------------------------


def callback_secret(api_key: str) -> str:
    """The key Switchboard signs callbacks with: derived from the site key, so only its holder can check them."""
    return hmac.new(api_key.encode(), _CALLBACK_LABEL, hashlib.sha256).hexdigest()


def sign(secret: str, timestamp: int, body: bytes) -> str:
    """``v1=`` HMAC-SHA256 of ``"{timestamp}." + body``, hex."""
    return "v1=" + hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()


def signed_headers(secret: str, body: bytes, now: float | None = None) -> dict[str, str]:
    """The timestamp and signature headers of a body."""
    timestamp = int(time.time() if now is None else now)
    return {TIMESTAMP_HEADER: str(timestamp), SIGNATURE_HEADER: sign(secret, timestamp, body)}


def verify(
    secret: str, headers: Mapping[str, str], body: bytes, tolerance: float = TOLERANCE_SECONDS, now: float | None = None
) -> str | None:
    """None when the body carries a fresh, matching signature; otherwise why not."""
    raw_timestamp = headers.get(TIMESTAMP_HEADER) or headers.get(TIMESTAMP_HEADER.lower())
    signature = headers.get(SIGNATURE_HEADER) or headers.get(SIGNATURE_HEADER.lower())
    if not raw_timestamp or not signature:
        return "missing signature"
    try:
        timestamp = int(raw_timestamp)
    except ValueError:
        return "malformed timestamp"
    if abs((time.time() if now is None else now) - timestamp) > tolerance:
        return "stale timestamp"
    if not hmac.compare_digest(sign(secret, timestamp, body).encode(), signature.encode()):
        return "signature mismatch"
    return None


def _json(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False, default=str).encode()


# --- The bridge ------------------------------------------------------------------------------------------------


class SwitchboardBridge(Bridge):
    """Sends the customer's PocketPing activity to Switchboard and applies Switchboard's replies to it.

    ``max_buffer`` events wait in memory while Switchboard is unreachable; beyond it new events are dropped
    (counted in ``stats["dropped"]``), so what was sent stays a gap-free prefix of each session.
    """

    def __init__(
        self,
        url: str,
        api_key: str,
        *,
        max_buffer: int = 10_000,
        batch_size: int = MAX_BATCH,
        backoff_base: float = 0.2,
        backoff_max: float = 5.0,
        timeout: float = 10.0,
        seen_events: int = 10_000,
        on_callback: Callable[[dict[str, Any]], Awaitable[None] | None] | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.url = url.rstrip("/")
        self._key = api_key
        self._callback_secret = callback_secret(api_key)
        self._max_buffer = max_buffer
        self._batch_size = min(batch_size, MAX_BATCH)
        self._backoff_base = backoff_base
        self._backoff_max = backoff_max
        self._timeout = timeout
        self._transport = transport
        self._on_callback = on_callback
        # Each event encoded once, when it happens (the hooks' only work besides the append).
        self._buffer: collections.deque[bytes] = collections.deque()
        # Event ids: unique per bridge instance (a random prefix) and cheap (a counter).
        self._ids = itertools.count()
        self._id_prefix = uuid.uuid4().hex[:16]
        self._wake = asyncio.Event()
        self._idle = asyncio.Event()
        self._idle.set()
        self._sender: asyncio.Task[None] | None = None
        self._client: httpx.AsyncClient | None = None
        self._pp: PocketPing | None = None
        self._seen: collections.OrderedDict[str, None] = collections.OrderedDict()
        self._seen_limit = seen_events
        self.stats = {"queued": 0, "sent": 0, "dropped": 0, "rejected": 0, "retries": 0, "callbacks": 0}

    @property
    def name(self) -> str:
        return "switchboard"

    # Lifecycle ----------------------------------------------------------------------------------------------

    async def init(self, pocketping: PocketPing) -> None:
        """Start the sender; replies created from callbacks keep Switchboard's message ids."""
        self._pp = pocketping
        generate = pocketping._generate_id

        def generate_id() -> str:
            preset = _preset_id.get()
            if preset is not None:
                _preset_id.set(None)
                return preset
            return generate()

        # Both sides then name a reply alike: the visitor's read receipt for it means something to Switchboard.
        pocketping._generate_id = generate_id  # type: ignore[method-assign]
        self._start()

    def _start(self) -> None:
        if self._sender is None or self._sender.done():
            self._client = httpx.AsyncClient(timeout=self._timeout, transport=self._transport)
            self._sender = asyncio.create_task(self._send_loop(), name="switchboard-sender")

    async def destroy(self) -> None:
        """Try to send what is buffered (briefly), then stop."""
        with contextlib.suppress(TimeoutError):
            await self.flush(2.0)
        if self._sender is not None:
            self._sender.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sender
        if self._client is not None:
            await self._client.aclose()

    async def flush(self, seconds: float = 30.0) -> None:
        """Wait until every buffered event has been accepted by Switchboard (TimeoutError after ``seconds``)."""
        await asyncio.wait_for(self._idle.wait(), seconds)

    @property
    def buffered(self) -> int:
        return len(self._buffer)

    # Hooks: they only enqueue ---------------------------------------------------------------------------------

    def _enqueue(self, kind: str, session_id: str, data: dict[str, Any] | None = None, raw: str | None = None) -> None:
        """Buffer one event; ``raw`` is its data already encoded as JSON (the SDK's models encode themselves)."""
        if _applying.get():
            return
        if len(self._buffer) >= self._max_buffer:
            self.stats["dropped"] += 1
            if self.stats["dropped"] == 1 or self.stats["dropped"] % 1000 == 0:
                log.error("Switchboard buffer full: %d events dropped so far", self.stats["dropped"])
            return
        head = f'{{"id":"{self._id_prefix}-{next(self._ids)}","type":"{kind}","sessionId":{json.dumps(session_id)},'
        self._buffer.append((head + '"data":' + (raw if raw is not None else json.dumps(data)) + "}").encode())
        self.stats["queued"] += 1
        self._idle.clear()
        self._wake.set()

    async def on_new_session(self, session: Session) -> None:
        self._enqueue("session", session.id, raw='{"session":' + session.model_dump_json(by_alias=True) + "}")

    async def on_visitor_message(self, message: Message, session: Session) -> None:
        self._enqueue("message", session.id, raw='{"message":' + message.model_dump_json(by_alias=True) + "}")

    async def on_identity_update(self, session: Session) -> None:
        self._enqueue("identify", session.id, raw='{"session":' + session.model_dump_json(by_alias=True) + "}")

    async def on_typing(self, session_id: str, is_typing: bool) -> None:
        self._enqueue("typing", session_id, {"isTyping": is_typing})

    async def on_message_read(
        self, session_id: str, message_ids: list[str], status: MessageStatus, session: Session
    ) -> None:
        self._enqueue("read", session_id, {"messageIds": list(message_ids), "status": status.value})

    async def notify_disconnect(self, session: Session, message: str) -> None:
        """The SDK calls this for a CSAT rating (its one-line caption); the rating itself is in the session."""
        csat = session.csat
        if csat is not None and csat.score is not None:
            self._enqueue("csat", session.id, {"score": csat.score, "comment": csat.comment})

    async def visitor_left(self, session_id: str, duration: int | None = None, reason: str | None = None) -> None:
        """The widget's ``/disconnect`` (the SDK has no handler for it): call this from yours."""
        self._enqueue("disconnect", session_id, {"duration": duration, "reason": reason})

    async def typing(self, session_id: str, is_typing: bool) -> None:
        """The SDK's FastAPI router does not tell bridges of typing: call this from a ``/typing`` of yours."""
        await self.on_typing(session_id, is_typing)

    # The sender ------------------------------------------------------------------------------------------------

    async def _send_loop(self) -> None:
        failures = 0
        while True:
            if not self._buffer:
                self._idle.set()
                self._wake.clear()
                await self._wake.wait()
                continue
            batch: list[bytes] = []
            size = 0
            for event in itertools.islice(self._buffer, self._batch_size):
                size += len(event) + 1
                if batch and size > MAX_BATCH_BYTES:
                    break
                batch.append(event)
            outcome = await self._post(batch)
            if outcome == "retry":
                failures += 1
                self.stats["retries"] += 1
                await asyncio.sleep(min(self._backoff_max, self._backoff_base * 2 ** min(failures - 1, 16)))
                continue
            failures = 0
            for _ in batch:
                self._buffer.popleft()
            if outcome == "sent":
                self.stats["sent"] += len(batch)

    async def _post(self, batch: list[bytes]) -> str:
        """``sent``, ``retry`` (unreachable, 5xx, 429) or ``refused`` (any other 4xx: retrying cannot help)."""
        assert self._client is not None
        body = b'{"events":[' + b",".join(batch) + b"]}"
        headers = {"Content-Type": "application/json", KEY_HEADER: self._key, **signed_headers(self._key, body)}
        try:
            response = await self._client.post(self.url + EVENTS_PATH, content=body, headers=headers)
        except httpx.HTTPError as exc:
            log.warning("Switchboard unreachable (%s); %d events buffered", type(exc).__name__, len(self._buffer))
            return "retry"
        if response.status_code >= 500 or response.status_code in (408, 429):
            return "retry"
        if response.status_code >= 400:
            self.stats["dropped"] += len(batch)
            log.error(
                "Switchboard refused %d events: HTTP %d %s", len(batch), response.status_code, response.text[:200]
            )
            return "refused"
        rejected = response.json().get("rejected", [])
        self.stats["rejected"] += len(rejected)
        for item in rejected:
            log.warning("Switchboard rejected event %s: %s", item.get("id"), item.get("reason"))
        return "sent"

    # Callbacks from Switchboard --------------------------------------------------------------------------------

    def callback_app(self) -> Callable[..., Awaitable[None]]:
        """An ASGI app that takes Switchboard's signed callbacks (mount it where the site's callback URL points)."""

        async def app(scope: dict[str, Any], receive: Callable[..., Any], send: Callable[..., Any]) -> None:
            if scope["type"] == "lifespan":
                while (await receive())["type"] != "lifespan.shutdown":
                    await send({"type": "lifespan.startup.complete"})
                await send({"type": "lifespan.shutdown.complete"})
                return
            if scope["type"] != "http" or scope["method"] != "POST":
                await _respond(send, 405, {"error": "POST only"})
                return
            body = b""
            while True:
                chunk = await receive()
                body += chunk.get("body", b"")
                if not chunk.get("more_body"):
                    break
            headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
            status, answer = await self.handle_callback(headers, body)
            await _respond(send, status, answer)

        return app

    async def handle_callback(self, headers: Mapping[str, str], body: bytes) -> tuple[int, dict[str, Any]]:
        """Verify and apply one callback; (HTTP status, JSON answer). A refused one changes nothing."""
        refused = verify(self._callback_secret, {k.lower(): v for k, v in headers.items()}, body)
        if refused is not None:
            log.warning("Switchboard callback refused: %s", refused)
            return 401, {"error": refused}
        try:
            event = json.loads(body)
            event_id, kind, session_id, data = event["id"], event["type"], event["sessionId"], event["data"]
        except (ValueError, KeyError, TypeError):
            return 400, {"error": "malformed callback"}
        if event_id in self._seen:
            return 200, {"ok": True, "duplicate": True}
        await self._apply(kind, session_id, data)
        self._seen[event_id] = None
        while len(self._seen) > self._seen_limit:
            self._seen.popitem(last=False)
        self.stats["callbacks"] += 1
        if self._on_callback is not None:
            result = self._on_callback(event)
            if asyncio.iscoroutine(result):
                await result
        return 200, {"ok": True}

    async def _apply(self, kind: str, session_id: str, data: dict[str, Any]) -> None:
        pp = self._pp
        if pp is None:
            raise RuntimeError("SwitchboardBridge is not in a started PocketPing")
        token = _applying.set(True)
        try:
            if kind == "message":
                # The reply's id is Switchboard's: a message the storage already holds was applied before.
                if await pp.storage.get_message(data["messageId"]) is not None:
                    return
                _preset_id.set(data["messageId"])
                if data["sender"] == "ai":
                    await pp.handle_message(
                        SendMessageRequest(session_id=session_id, content=data["content"], sender=Sender.AI)
                    )
                else:
                    await pp.send_operator_message(
                        session_id, data["content"], source_bridge=self.name, operator_name=data.get("operatorName")
                    )
            elif kind == "typing":
                await pp.handle_typing(
                    TypingRequest(session_id=session_id, sender=Sender.OPERATOR, is_typing=data["isTyping"])
                )
            elif kind == "read":
                await pp.handle_read(
                    ReadRequest(
                        session_id=session_id, message_ids=data["messageIds"], status=MessageStatus(data["status"])
                    )
                )
            elif kind == "assigned":
                await pp.emit_event(session_id, "switchboard.assigned", {"operatorName": data.get("operatorName")})
        finally:
            _preset_id.set(None)
            _applying.reset(token)


async def _respond(send: Callable[..., Any], status: int, answer: dict[str, Any]) -> None:
    body = _json(answer)
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
