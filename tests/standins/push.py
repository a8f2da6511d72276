"""Loopback stand-ins for the push services: APNs (HTTP/2 over TLS), FCM HTTP v1 (with its OAuth token endpoint)
and a Web Push service. Each checks what the real one checks (the provider JWT, the service-account assertion and
the bearer it issued, the VAPID JWT) and records what it accepted; the Web Push one decrypts the payload with the
subscription's private key. ``dead(token)`` makes a token answer as the platform answers a gone device.

    with FcmStandIn() as fcm:
        info = fcm.service_account()  # FCM_SERVICE_ACCOUNT, its token_uri pointing here
        ...
        [sent] = fcm.sent
        assert sent["message"]["token"] == token
"""

from __future__ import annotations

import asyncio
import base64
import itertools
import json
import secrets
import ssl
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import http_ece
import jwt
from cryptography.hazmat.primitives.asymmetric import ec
from h2.config import H2Configuration
from h2.connection import H2Connection
from h2.events import DataReceived, RequestReceived, StreamEnded

from tests.standins import Answer, StandIn, _bearer
from tests.support.push import BrowserKeys, service_account

__all__ = ["ApnsStandIn", "FcmStandIn", "WebPushStandIn"]

# The audience of every service-account assertion, whichever token URI it is posted to (as Google checks it).
GOOGLE_TOKEN_AUDIENCE = "https://oauth2.googleapis.com/token"
# Apple refuses a provider token older than an hour.
PROVIDER_TOKEN_MAX_AGE = 3600


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


# --- APNs --------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ApnsPush:
    """One notification APNs accepted: the device token, the headers that matter, the JWT claims, the payload."""

    device_token: str
    topic: str
    push_type: str
    collapse_id: str | None
    claims: dict[str, Any]
    payload: dict[str, Any]


class ApnsStandIn:
    """``POST /3/device/<token>`` over HTTP/2 and TLS, token auth: an ES256 JWT (``kid``, ``iss`` = team, ``iat``)."""

    def __init__(self, *, public_key_pem: str, key_id: str, team_id: str, topic: str, tls: tuple[Path, Path]) -> None:
        self.public_key_pem, self.key_id, self.team_id, self.topic = public_key_pem, key_id, team_id, topic
        self.pushes: list[ApnsPush] = []
        self.refusals: list[tuple[int, str]] = []
        self.dead_tokens: dict[str, tuple[int, str]] = {}
        self._lock = threading.Lock()
        self._context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        self._context.load_cert_chain(*tls)
        self._context.set_alpn_protocols(["h2"])
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="ApnsStandIn", daemon=True)
        self._server: asyncio.Server | None = None

    @property
    def base_url(self) -> str:
        assert self._server is not None
        return f"https://127.0.0.1:{self._server.sockets[0].getsockname()[1]}"

    def __enter__(self) -> ApnsStandIn:
        self._thread.start()
        started = asyncio.run_coroutine_threadsafe(
            self._loop.create_server(lambda: _H2Server(self), "127.0.0.1", 0, ssl=self._context), self._loop
        )
        self._server = started.result(10)
        return self

    def __exit__(self, *exc: object) -> None:
        assert self._server is not None
        self._loop.call_soon_threadsafe(self._server.close)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop.close()

    def dead(self, token: str, *, bad_device_token: bool = False) -> None:
        """Answer this token 410 Unregistered (the app is gone), or 400 BadDeviceToken."""
        self.dead_tokens[token] = (400, "BadDeviceToken") if bad_device_token else (410, "Unregistered")

    def answer(self, headers: dict[str, str], body: bytes) -> tuple[int, str | None]:
        """(status, reason) for one request, checked as APNs checks it; accepted pushes are recorded."""
        status, reason, push = self._check(headers, body)
        with self._lock:
            if push is not None:
                self.pushes.append(push)
            else:
                self.refusals.append((status, reason or ""))
        return status, reason

    def _check(self, headers: dict[str, str], body: bytes) -> tuple[int, str | None, ApnsPush | None]:
        authorization = headers.get("authorization", "")
        if not authorization.lower().startswith("bearer "):
            return 403, "MissingProviderToken", None
        token = authorization.split(" ", 1)[1]
        try:
            header = jwt.get_unverified_header(token)
            claims = jwt.decode(token, self.public_key_pem, algorithms=["ES256"], options={"require": ["iss", "iat"]})
        except jwt.PyJWTError:
            return 403, "InvalidProviderToken", None
        if header.get("kid") != self.key_id or claims["iss"] != self.team_id:
            return 403, "InvalidProviderToken", None
        if not 0 <= time.time() - claims["iat"] < PROVIDER_TOKEN_MAX_AGE:
            return 403, "ExpiredProviderToken", None
        if headers.get(":method") != "POST" or not headers.get(":path", "").startswith("/3/device/"):
            return 405, "MethodNotAllowed", None
        device_token = headers[":path"].removeprefix("/3/device/")
        if headers.get("apns-topic") != self.topic:
            return 400, "DeviceTokenNotForTopic", None
        if headers.get("apns-push-type") != "alert":
            return 400, "InvalidPushType", None
        if device_token in self.dead_tokens:
            return *self.dead_tokens[device_token], None
        try:
            payload = json.loads(body)
        except ValueError:
            return 400, "PayloadEmpty", None
        if not isinstance(payload.get("aps"), dict) or "alert" not in payload["aps"]:
            return 400, "PayloadEmpty", None
        push = ApnsPush(
            device_token,
            headers["apns-topic"],
            headers["apns-push-type"],
            headers.get("apns-collapse-id"),
            claims,
            payload,
        )
        return 200, None, push


class _H2Server(asyncio.Protocol):
    """The HTTP/2 side of the APNs stand-in: one request per stream, answered when the stream ends."""

    def __init__(self, standin: ApnsStandIn) -> None:
        self._standin = standin
        self._conn = H2Connection(H2Configuration(client_side=False, header_encoding="utf-8"))
        self._streams: dict[int, tuple[dict[str, str], bytearray]] = {}
        self._transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self._transport = transport
        self._conn.initiate_connection()
        transport.write(self._conn.data_to_send())

    def data_received(self, data: bytes) -> None:
        for event in self._conn.receive_data(data):
            if isinstance(event, RequestReceived):
                self._streams[event.stream_id] = (dict(event.headers), bytearray())  # type: ignore[arg-type]
            elif isinstance(event, DataReceived):
                self._streams[event.stream_id][1].extend(event.data)
                self._conn.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
            elif isinstance(event, StreamEnded):
                self._respond(event.stream_id)
        assert self._transport is not None
        self._transport.write(self._conn.data_to_send())

    def _respond(self, stream_id: int) -> None:
        headers, body = self._streams.pop(stream_id)
        status, reason = self._standin.answer(headers, bytes(body))
        answer = [(":status", str(status)), ("apns-id", headers.get("apns-id", ""))]
        if reason is None:
            self._conn.send_headers(stream_id, answer, end_stream=True)
            return
        data = json.dumps({"reason": reason}).encode()
        self._conn.send_headers(stream_id, [*answer, ("content-type", "application/json")])
        self._conn.send_data(stream_id, data, end_stream=True)


# --- FCM HTTP v1 -------------------------------------------------------------------------------------------------


class FcmStandIn(StandIn):
    """``POST /token`` (OAuth 2.0 JWT bearer grant, RS256 assertion) and ``POST /v1/projects/<id>/messages:send``."""

    def __init__(self) -> None:
        super().__init__()
        self.info, self._public_pem = service_account(f"{self.base_url}/token")
        self.issued: set[str] = set()
        self.dead_tokens: set[str] = set()
        self.sent: list[dict[str, Any]] = []

    def service_account(self) -> dict[str, Any]:
        """The service account JSON key to configure (``FCM_SERVICE_ACCOUNT``)."""
        return self.info

    def dead(self, token: str) -> None:
        self.dead_tokens.add(token)

    def route(self, method: str, path: str, headers: dict[str, str]) -> tuple[str, str | None]:
        return ("token" if path == "/token" else "send"), _bearer(headers, "Bearer")

    def answer(self, name: str, method: str, path: str, body: Any, token: str | None) -> Answer:
        if name == "token":
            return self._token(body or {})
        if token not in self.issued:
            return 401, {"error": {"code": 401, "status": "UNAUTHENTICATED", "message": "Invalid credentials"}}
        if path != f"/v1/projects/{self.info['project_id']}/messages:send":
            return 404, {"error": {"code": 404, "status": "NOT_FOUND", "message": "Unknown project"}}
        message = (body or {}).get("message") or {}
        data = message.get("data", {})
        if not isinstance(message.get("token"), str) or not all(isinstance(v, str) for v in data.values()):
            return 400, {"error": {"code": 400, "status": "INVALID_ARGUMENT", "message": "Invalid message"}}
        if message["token"] in self.dead_tokens:
            error = {"@type": "type.googleapis.com/google.firebase.fcm.v1.FcmError", "errorCode": "UNREGISTERED"}
            return 404, {"error": {"code": 404, "status": "NOT_FOUND", "details": [error]}}
        with self._lock:
            self.sent.append(body)
        return 200, {"name": f"projects/{self.info['project_id']}/messages/{self.next_id()}"}

    def _token(self, form: dict[str, str]) -> Answer:
        if form.get("grant_type") != "urn:ietf:params:oauth:grant-type:jwt-bearer":
            return 400, {"error": "unsupported_grant_type"}
        try:
            claims = jwt.decode(
                form.get("assertion", ""),
                self._public_pem,
                algorithms=["RS256"],
                audience=GOOGLE_TOKEN_AUDIENCE,
                issuer=self.info["client_email"],
                options={"require": ["exp", "iat", "iss", "aud"]},
            )
        except jwt.PyJWTError as exc:
            return 400, {"error": "invalid_grant", "error_description": str(exc)}
        if "https://www.googleapis.com/auth/firebase.messaging" not in claims.get("scope", "").split():
            return 400, {"error": "invalid_scope"}
        access = f"ya29.{secrets.token_urlsafe(24)}"
        with self._lock:
            self.issued.add(access)
        return 200, {"access_token": access, "expires_in": 3600, "token_type": "Bearer"}


# --- Web Push ----------------------------------------------------------------------------------------------------


class WebPushStandIn(StandIn):
    """A push service: ``POST /push/<id>`` with a VAPID JWT (``vapid t=…,k=…``) and an aes128gcm body, decrypted
    with the subscription's keys into ``received``."""

    def __init__(self) -> None:
        super().__init__()
        self._browsers: dict[str, BrowserKeys] = {}
        self._subscriptions = itertools.count(1)
        self.dead_endpoints: set[str] = set()
        self.received: list[tuple[str, dict[str, str], dict[str, Any]]] = []  # (endpoint, headers, payload)

    def subscribe(self, keys: BrowserKeys) -> dict[str, Any]:
        """A browser subscribing: its PushSubscription JSON (endpoint here, its public keys)."""
        endpoint = f"{self.base_url}/push/{next(self._subscriptions)}"
        self._browsers[endpoint] = keys
        return {"endpoint": endpoint, "expirationTime": None, "keys": keys.keys}

    def dead(self, endpoint: str) -> None:
        self.dead_endpoints.add(endpoint)

    def route(self, method: str, path: str, headers: dict[str, str]) -> tuple[str, str | None]:
        return "push", None

    def answer_request(
        self, name: str, method: str, path: str, body: Any, token: str | None, headers: dict[str, str]
    ) -> Answer:
        endpoint = f"{self.base_url}{path}"
        browser = self._browsers.get(endpoint)
        if browser is None or endpoint in self.dead_endpoints:
            return 410, {"reason": "subscription gone"}
        refused = self._vapid(headers, endpoint)
        if refused:
            return 401, {"reason": refused}
        if headers.get("content-encoding") != "aes128gcm" or "ttl" not in headers:
            return 400, {"reason": "aes128gcm body and TTL header required"}
        payload = json.loads(http_ece.decrypt(body, private_key=browser.private_key, auth_secret=browser.auth))
        with self._lock:
            self.received.append((endpoint, headers, payload))
        return 201, None

    def _vapid(self, headers: dict[str, str], endpoint: str) -> str | None:
        """Why the VAPID authorization is refused, or None (ES256 by the ``k`` key, aud = origin, exp, sub)."""
        scheme, _, params = headers.get("authorization", "").partition(" ")
        fields = dict(part.strip().split("=", 1) for part in params.split(",") if "=" in part)
        if scheme != "vapid" or "t" not in fields or "k" not in fields:
            return "no vapid authorization"
        key = ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), _unb64(fields["k"]))
        origin = "{0.scheme}://{0.netloc}".format(urlsplit(endpoint))
        try:
            claims = jwt.decode(fields["t"], key, algorithms=["ES256"], audience=origin, options={"require": ["exp"]})
        except jwt.PyJWTError as exc:
            return f"bad vapid token: {exc}"
        if claims["exp"] > time.time() + 24 * 3600:
            return "exp more than 24 hours ahead"
        if not str(claims.get("sub", "")).startswith(("mailto:", "https:")):
            return "sub must be a mailto: or https: contact"
        return None
