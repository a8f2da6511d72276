"""API schemas for operators' push devices (camelCase on the wire)."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Literal

from pydantic import Field

from service.schemas import ApiModel

Platform = Literal["apns", "fcm", "webpush"]


class SubscriptionKeys(ApiModel):
    # The browser names it so; not camelCased.
    p256dh: str = Field(alias="p256dh", min_length=1, max_length=200, pattern=r"^[A-Za-z0-9_-]+={0,2}$")
    auth: str = Field(min_length=1, max_length=100, pattern=r"^[A-Za-z0-9_-]+={0,2}$")


class PushSubscription(ApiModel):
    """The browser's ``PushSubscription.toJSON()``."""

    endpoint: str = Field(min_length=1, max_length=2000, pattern=r"^https?://")
    keys: SubscriptionKeys
    expiration_time: int | None = None


class DeviceCreate(ApiModel):
    """A device to push to: ``token`` for ``apns`` and ``fcm``, ``subscription`` for ``webpush``."""

    platform: Platform
    token: str | None = Field(
        None, min_length=1, max_length=4096, description="APNs device token (hex) or FCM registration token"
    )
    subscription: PushSubscription | None = Field(None, description="Web Push: the browser's PushSubscription JSON")
    app_id: str | None = Field(
        None, min_length=1, max_length=255, description="APNs topic (the app's bundle id); FCM: the package name"
    )
    name: str | None = Field(None, max_length=200, description="Shown to you in the device list, e.g. 'Ada's iPhone'")


class DevicePublic(ApiModel):
    """One of your devices; the token itself is not shown back, only its end."""

    id: uuid.UUID
    platform: Platform
    token_end: str = Field(description="The last 8 characters of the token (or of the Web Push endpoint)")
    app_id: str | None
    name: str | None
    created_at: datetime
    registered_at: datetime = Field(description="When it was last registered")


class DeviceList(ApiModel):
    items: list[DevicePublic]
