"""Push senders, one per platform, each with its real client: APNs (``aioapns``: HTTP/2, ES256 token auth),
FCM HTTP v1 (a ``google-auth`` service-account token, then ``messages:send``) and Web Push (``pywebpush``:
VAPID, RFC 8291 ``aes128gcm``). A token the platform says is gone raises ``DeadToken``; a platform
without its settings raises ``NotConfigured``; any other refusal raises ``DeliveryFailed`` (retried).
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import ssl
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import httpx2
from aioapns import APNs, NotificationRequest, PushType
from aioapns.connection import APNsTLSClientProtocol
from cryptography.hazmat.primitives import serialization
from google.auth.transport.requests import Request as GoogleRequest
from google.oauth2 import service_account
from py_vapid import Vapid
from pywebpush import WebPushException, webpush_async

from service.outbox import DeliveryFailed
from service.settings import Settings

FCM_SCOPE = "https://www.googleapis.com/auth/firebase.messaging"
# How long a push service keeps a notification for a device that is off: an hour-old assignment is still news.
TIME_TO_LIVE = 3600


@dataclass(frozen=True)
class Push:
    """One notification: what it is about (``data``: type, conversationId, teamId), its text, and its collapse key."""

    title: str
    body: str
    collapse_key: str
    data: dict[str, str]

    def web_payload(self) -> dict[str, str]:
        """The JSON the dashboard's service worker receives (decrypted)."""
        return {"title": self.title, "body": self.body, "tag": self.collapse_key, **self.data}


@dataclass(frozen=True)
class Device:
    id: uuid.UUID
    platform: str
    token: str
    keys: dict[str, Any] | None
    app_id: str | None


class DeadToken(Exception):
    """The platform says this device will never receive anything again (uninstalled, unsubscribed)."""

    def __init__(self, message: str, status_code: int) -> None:
        super().__init__(message)
        self.status_code = status_code


class NotConfigured(Exception):
    """The platform's credentials are not set."""


def _text(value: str) -> str:
    """A setting that is a key's text or the path of a file holding it."""
    if value.lstrip().startswith(("{", "-----BEGIN")):
        return value
    try:
        return Path(value).read_text()
    except OSError:
        return value  # not a file: the key itself (a raw VAPID key)


def vapid_key(settings: Settings) -> Vapid | None:
    """The VAPID signing key, from PEM text, a PEM file or the raw base64url key; None when unset."""
    if not settings.vapid_private_key:
        return None
    text = _text(settings.vapid_private_key).strip()
    return Vapid.from_pem(text.encode()) if text.startswith("-----BEGIN") else Vapid.from_string(text)


def vapid_public_key(settings: Settings) -> str | None:
    """The ``applicationServerKey`` browsers subscribe with: the uncompressed P-256 point, base64url."""
    key = vapid_key(settings)
    if key is None:
        return None
    raw = key.public_key.public_bytes(serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint)
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def _short(collapse_key: str, limit: int) -> str:
    """A collapse key within the platform's limit: itself when it fits, else a base64url digest of it."""
    if len(collapse_key) <= limit and collapse_key.replace("-", "").replace("_", "").isalnum():
        return collapse_key
    return base64.urlsafe_b64encode(hashlib.sha256(collapse_key.encode()).digest()).rstrip(b"=").decode()[:limit]


class PushSenders:
    """The process's push clients, built on first use (they need the running loop) and closed by ``aclose``."""

    def __init__(self, settings: Settings, http: httpx2.AsyncClient) -> None:
        self._settings = settings
        self._http = http
        self._apns: APNs | None = None
        self._fcm: tuple[service_account.Credentials, str] | None = None
        self._fcm_lock = asyncio.Lock()
        self._web: aiohttp.ClientSession | None = None

    async def send(self, device: Device, push: Push) -> int:
        """Send one notification to one device; returns the platform's HTTP status."""
        if device.platform == "apns":
            return await self._send_apns(device, push)
        if device.platform == "fcm":
            return await self._send_fcm(device, push)
        return await self._send_web(device, push)

    async def aclose(self) -> None:
        if self._apns is not None:
            self._apns.pool.close()
        if self._web is not None:
            await self._web.close()

    # APNs ------------------------------------------------------------------------------------------------------

    def _apns_client(self) -> APNs:
        settings = self._settings
        if not (settings.apns_key and settings.apns_key_id and settings.apns_team_id):
            raise NotConfigured("APNs is not configured (APNS_KEY, APNS_KEY_ID, APNS_TEAM_ID)")
        if self._apns is None:
            context = ssl.create_default_context()
            if settings.apns_ca_file:
                context.load_verify_locations(settings.apns_ca_file)
            context.set_alpn_protocols(["h2"])
            client = APNs(
                key=_text(settings.apns_key),
                key_id=settings.apns_key_id,
                team_id=settings.apns_team_id,
                # Every request names its topic (the device's app id); this default is aioapns's required one.
                topic=settings.apns_topic or "unset",
                ssl_context=context,
                max_connection_attempts=2,
            )
            # aioapns connects to its class's host and port (Apple's production or sandbox): the configured
            # server is a protocol class of its own, otherwise the library's.
            url = urlsplit(settings.apns_base_url)
            client.pool.protocol_class = type(
                "ConfiguredAPNsProtocol",
                (APNsTLSClientProtocol,),
                {"APNS_SERVER": url.hostname, "APNS_PORT": url.port or 443},
            )
            self._apns = client
        return self._apns

    async def _send_apns(self, device: Device, push: Push) -> int:
        client = self._apns_client()
        topic = device.app_id or self._settings.apns_topic
        if topic is None:
            raise NotConfigured("An APNs device without an app id, and no APNS_TOPIC")
        request = NotificationRequest(
            device_token=device.token,
            message={
                "aps": {
                    "alert": {"title": push.title, "body": push.body},
                    "sound": "default",
                    "thread-id": push.collapse_key,
                },
                **push.data,
            },
            time_to_live=TIME_TO_LIVE,
            collapse_key=_short(push.collapse_key, 64),
            push_type=PushType.ALERT,
            apns_topic=topic,
        )
        result = await client.send_notification(request)
        status = int(result.status or 0)
        if result.is_successful:
            return status
        if status == 410 or (status == 400 and result.description == "BadDeviceToken"):
            raise DeadToken(f"APNs {status} {result.description}", status)
        raise DeliveryFailed(f"APNs {status} {result.description}", status_code=status)

    # FCM -------------------------------------------------------------------------------------------------------

    async def _fcm_token(self, *, renew: bool = False) -> tuple[str, str]:
        """A bearer token for FCM (renewed when it has expired) and the project id."""
        if not self._settings.fcm_service_account:
            raise NotConfigured("FCM is not configured (FCM_SERVICE_ACCOUNT)")
        async with self._fcm_lock:
            if self._fcm is None:
                info = json.loads(_text(self._settings.fcm_service_account))
                credentials = service_account.Credentials.from_service_account_info(info, scopes=[FCM_SCOPE])
                self._fcm = credentials, info["project_id"]
            credentials, project = self._fcm
            if renew or not credentials.valid:
                # google-auth's transport is synchronous: the token endpoint is asked in a thread.
                await asyncio.to_thread(credentials.refresh, GoogleRequest())
            return str(credentials.token), project

    async def _send_fcm(self, device: Device, push: Push) -> int:
        collapse = _short(push.collapse_key, 64)
        message = {
            "token": device.token,
            "notification": {"title": push.title, "body": push.body},
            "data": push.data,
            "android": {"collapse_key": collapse, "priority": "HIGH", "ttl": f"{TIME_TO_LIVE}s"},
            "apns": {"headers": {"apns-collapse-id": collapse}},
        }
        response = None
        for renew in (False, True):  # a 401 once: the token may have been revoked early
            token, project = await self._fcm_token(renew=renew)
            response = await self._http.post(
                f"{self._settings.fcm_base_url.rstrip('/')}/v1/projects/{project}/messages:send",
                json={"message": message},
                headers={"Authorization": f"Bearer {token}"},
                timeout=30,
            )
            if response.status_code != 401:
                break
        assert response is not None
        if response.status_code == 200:
            return 200
        if _fcm_unregistered(response):
            raise DeadToken(f"FCM {response.status_code} UNREGISTERED", response.status_code)
        raise DeliveryFailed(f"FCM {response.status_code}: {response.text[:200]}", status_code=response.status_code)

    # Web Push --------------------------------------------------------------------------------------------------

    async def _send_web(self, device: Device, push: Push) -> int:
        key = vapid_key(self._settings)
        if key is None:
            raise NotConfigured("Web Push is not configured (VAPID_PRIVATE_KEY)")
        if self._web is None:
            self._web = aiohttp.ClientSession()
        try:
            response = await webpush_async(
                {"endpoint": device.token, "keys": device.keys or {}},
                data=json.dumps(push.web_payload()),
                vapid_private_key=key,
                vapid_claims={"sub": self._settings.vapid_subject},
                ttl=TIME_TO_LIVE,
                headers={"Topic": _short(push.collapse_key, 32), "Urgency": "high"},
                timeout=30,
                aiohttp_session=self._web,
            )
        except WebPushException as exc:
            status = exc.status_code or 0
            if status in (404, 410):
                raise DeadToken(f"Web Push {status}", status) from exc
            raise DeliveryFailed(f"Web Push {status}: {exc.message[:200]}", status_code=status or None) from exc
        assert isinstance(response, aiohttp.ClientResponse)
        response.release()
        return response.status


def _fcm_unregistered(response: httpx2.Response) -> bool:
    if response.status_code != 404:
        return False
    try:
        details = response.json().get("error", {}).get("details", [])
    except ValueError:
        return False
    return any(detail.get("errorCode") == "UNREGISTERED" for detail in details)
