"""Operators' push devices: register (an upsert on the token), list, remove; dead tokens are removed by the senders."""

from __future__ import annotations

import re
import uuid
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncConnection

from service.db.tables import device_t
from service.errors import Invalid, NotFound
from service.push.schemas import DeviceCreate, DevicePublic

_APNS_TOKEN = re.compile(r"^[0-9a-fA-F]{64,200}$")
_FCM_TOKEN = re.compile(r"^[A-Za-z0-9_:.\-]+$")


def _token_and_keys(body: DeviceCreate) -> tuple[str, dict[str, Any] | None]:
    """The row's token (and Web Push keys), or ``Invalid`` naming the field that does not fit the platform."""
    if body.platform == "webpush":
        if body.subscription is None:
            raise Invalid("A webpush device needs the browser's subscription", field="subscription")
        if body.token is not None:
            raise Invalid("A webpush device is registered by its subscription, not a token", field="token")
        keys = body.subscription.keys
        return body.subscription.endpoint, {"p256dh": keys.p256dh, "auth": keys.auth}
    if body.subscription is not None:
        raise Invalid(f"An {body.platform} device is registered by its token, not a subscription", field="subscription")
    if body.token is None:
        raise Invalid(f"An {body.platform} device needs its token", field="token")
    if body.platform == "apns" and not _APNS_TOKEN.match(body.token):
        raise Invalid("An APNs device token is hexadecimal (64 digits or more)", field="token")
    if body.platform == "fcm" and not _FCM_TOKEN.match(body.token):
        raise Invalid("An FCM registration token has no spaces or other punctuation", field="token")
    return body.token.lower() if body.platform == "apns" else body.token, None


def _public(row: Any) -> DevicePublic:
    return DevicePublic.model_validate({**row._mapping, "token_end": row.token[-8:]})


async def register(conn: AsyncConnection, operator_id: uuid.UUID, body: DeviceCreate) -> DevicePublic:
    """Add the device, or update it when its token is known: the same id, now the caller's (a token is one install)."""
    token, keys = _token_and_keys(body)
    values = {"keys": keys, "app_id": body.app_id, "name": body.name, "operator_id": operator_id}
    statement = insert(device_t).values(platform=body.platform, token=token, **values)
    row = (
        await conn.execute(
            statement.on_conflict_do_update(
                index_elements=[device_t.c.platform, device_t.c.token],
                set_={**values, "registered_at": sa.func.now()},
            ).returning(device_t)
        )
    ).one()
    return _public(row)


async def list_devices(conn: AsyncConnection, operator_id: uuid.UUID) -> list[DevicePublic]:
    rows = await conn.execute(
        sa.select(device_t).where(device_t.c.operator_id == operator_id).order_by(device_t.c.created_at, device_t.c.id)
    )
    return [_public(row) for row in rows]


async def remove(conn: AsyncConnection, operator_id: uuid.UUID, device_id: uuid.UUID) -> None:
    """Remove one of the operator's devices (404 for anyone else's)."""
    removed = await conn.scalar(
        sa.delete(device_t)
        .where(device_t.c.id == device_id, device_t.c.operator_id == operator_id)
        .returning(device_t.c.id)
    )
    if removed is None:
        raise NotFound("Device not found")


async def delete_devices(conn: AsyncConnection, operator_id: uuid.UUID) -> int:
    """Remove every device of the operator (deactivation); returns how many there were."""
    result = await conn.execute(sa.delete(device_t).where(device_t.c.operator_id == operator_id))
    return result.rowcount


async def remove_dead(conn: AsyncConnection, device_id: uuid.UUID) -> None:
    """The push service said the token is gone (app uninstalled, subscription ended): forget the device."""
    await conn.execute(sa.delete(device_t).where(device_t.c.id == device_id))
