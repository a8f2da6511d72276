"""The signed-in operator's push devices: ``/api/v1/me/devices``."""

from __future__ import annotations

import uuid
from typing import Any

from litestar import Controller, Request, delete, get, post
from litestar.di import NamedDependency
from litestar.params import FromPath, JSONBody

from service.auth.principal import Principal
from service.db.transactions import in_transaction
from service.deps import engine
from service.push import devices
from service.push.schemas import DeviceCreate, DeviceList, DevicePublic


class DeviceController(Controller):
    """Your phones and browsers that get push notifications (assignments, visitor messages, mentions, queue alerts)."""

    path = "/api/v1/me/devices"
    tags = ["Me"]

    @get("", operation_id="listMyDevices", summary="Your push devices")
    async def list_devices(self, request: Request[Any, Any, Any], principal: NamedDependency[Principal]) -> DeviceList:
        async with engine(request).connect() as conn:
            return DeviceList(items=await devices.list_devices(conn, principal.operator_id))

    @post("", operation_id="registerMyDevice", summary="Register a push device", status_code=201)
    async def register(
        self, data: JSONBody[DeviceCreate], request: Request[Any, Any, Any], principal: NamedDependency[Principal]
    ) -> DevicePublic:
        """Registering a token (or Web Push endpoint) again updates that device and answers its same id."""
        return await in_transaction(engine(request), lambda conn: devices.register(conn, principal.operator_id, data))

    @delete("/{device_id:uuid}", operation_id="deleteMyDevice", summary="Stop pushing to a device", status_code=204)
    async def remove(
        self, device_id: FromPath[uuid.UUID], request: Request[Any, Any, Any], principal: NamedDependency[Principal]
    ) -> None:
        """Someone else's device is 404."""
        await in_transaction(engine(request), lambda conn: devices.remove(conn, principal.operator_id, device_id))
