"""Connected mode's world: a Switchboard deployment with a team and an operator, and the customer's own app
(docs/examples/connect_app.py, run as written) in a process of its own."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import sys
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import httpx
import websockets
from sqlalchemy.ext.asyncio import AsyncEngine

from service.dev import free_port
from service.routing.placement import DEFAULT_TEAM_NAME
from tests.factories import add_member, bearer, make_operator, make_team, personal_token
from tests.support.cli import ROOT
from tests.support.routing import rows

EXAMPLE_APP = ROOT / "docs" / "examples" / "connect_app.py"


@dataclass
class Deployment:
    """The default team (round robin), Ada in it, and an admin in no team."""

    team_id: uuid.UUID
    ada: uuid.UUID
    ada_headers: dict[str, str]
    admin_headers: dict[str, str]


async def seed(engine: AsyncEngine) -> Deployment:
    team_id = await make_team(engine, DEFAULT_TEAM_NAME, is_default=True, routing_policy="round_robin")
    ada = await make_operator(engine, "Ada")
    await add_member(engine, team_id, ada, capacity=5)
    admin = await make_operator(engine, "Root", is_admin=True)
    return Deployment(
        team_id, ada, bearer(await personal_token(engine, ada)), bearer(await personal_token(engine, admin))
    )


async def create_site(http: httpx.AsyncClient, world: Deployment, callback_url: str | None = None) -> dict[str, Any]:
    """A site through the admin API; its answer carries the key."""
    body: dict[str, Any] = {"name": "Shop", "teamId": str(world.team_id)}
    if callback_url:
        body["callbackUrl"] = callback_url
    created = await http.post("/api/v1/sites", json=body, headers=world.admin_headers)
    assert created.status_code == 201, created.text
    return dict(created.json())


@dataclass
class CustomerApp:
    url: str
    ws_url: str
    process: asyncio.subprocess.Process

    def client(self) -> httpx.AsyncClient:
        return httpx.AsyncClient(base_url=self.url, timeout=10)


@contextlib.asynccontextmanager
async def customer_app(
    switchboard_url: str | None, site_key: str | None, port: int | None = None
) -> AsyncIterator[CustomerApp]:
    """``python docs/examples/connect_app.py`` with the URL and key in its environment, until it answers."""
    port = port or free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("SWITCHBOARD_")}
    env |= {"PORT": str(port), "PYTHONPATH": str(ROOT)}
    if switchboard_url and site_key:
        env |= {"SWITCHBOARD_URL": switchboard_url, "SWITCHBOARD_SITE_KEY": site_key}
    process = await asyncio.create_subprocess_exec(sys.executable, str(EXAMPLE_APP), env=env, cwd=ROOT)
    url = f"http://127.0.0.1:{port}"
    try:
        async with httpx.AsyncClient(base_url=url, timeout=2) as probe:
            deadline = time.monotonic() + 30
            while True:
                assert process.returncode is None, "the customer app exited"
                assert time.monotonic() < deadline, "the customer app did not start"
                with contextlib.suppress(httpx.HTTPError):
                    if (await probe.get("/pocketping/presence")).status_code == 200:
                        break
                await asyncio.sleep(0.1)
        yield CustomerApp(url, f"ws://127.0.0.1:{port}", process)
    finally:
        if process.returncode is None:
            process.terminate()
        # uvicorn shuts down gracefully on SIGTERM, then re-raises it: -15 is a clean stop.
        assert await asyncio.wait_for(process.wait(), timeout=20) in (0, -signal.SIGTERM)


@dataclass
class Visitor:
    """A widget on the customer app: its session, and every frame its socket received."""

    session_id: str
    frames: list[dict[str, Any]] = field(default_factory=list)
    task: asyncio.Task[None] | None = None

    def of(self, kind: str, **data: Any) -> list[dict[str, Any]]:
        return [
            f["data"] for f in self.frames if f["type"] == kind and all(f["data"].get(k) == v for k, v in data.items())
        ]


@contextlib.asynccontextmanager
async def visitor_socket(customer: CustomerApp, session_id: str) -> AsyncIterator[Visitor]:
    """The widget's ``/stream`` socket on the customer app, read in the background."""
    visitor = Visitor(session_id)
    async with websockets.connect(f"{customer.ws_url}/pocketping/stream?sessionId={session_id}") as socket:

        async def read() -> None:
            async for text in socket:
                visitor.frames.append(json.loads(text))

        visitor.task = asyncio.create_task(read())
        try:
            yield visitor
        finally:
            visitor.task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await visitor.task


async def eventually(check: Callable[[], Awaitable[Any]], seconds: float = 20.0) -> Any:
    """``check()`` once it is truthy (polled), else fail."""
    deadline = time.monotonic() + seconds
    while True:
        result = await check()
        if result:
            return result
        assert time.monotonic() < deadline, "timed out waiting"
        await asyncio.sleep(0.05)


async def conversation(engine: AsyncEngine, session_id: str) -> dict[str, Any] | None:
    found = await rows(
        engine,
        "SELECT site_id, team_id, assignee_id, status, identity, visitor_left_at, csat FROM conversation "
        "WHERE id = :id",
        id=session_id,
    )
    return found[0] if found else None
