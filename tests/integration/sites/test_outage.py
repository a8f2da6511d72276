"""Switchboard down while visitors chat on the customer app: no added latency there, nothing lost, nothing twice.

``CONNECT_OUTAGE_SECONDS`` sets the outage (3 s here; e.g. 30 for the long variant:
``CONNECT_OUTAGE_SECONDS=30 pytest tests/integration/sites/test_outage.py``).
"""

from __future__ import annotations

import asyncio
import os
import statistics
import time

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from service.dev import free_port
from service.settings import Settings
from tests.conftest import run_api
from tests.integration.sites.conftest import create_site, customer_app, eventually, seed
from tests.support.routing import rows

OUTAGE_SECONDS = float(os.environ.get("CONNECT_OUTAGE_SECONDS", "3"))
VISITORS = 4


class Chat:
    """Visitors posting messages to the customer app one after another, each call timed."""

    def __init__(self, widget: httpx.AsyncClient) -> None:
        self.widget = widget
        self.sent: dict[str, list[str]] = {}
        self.latencies: dict[str, list[float]] = {}

    async def connect(self, visitor_id: str) -> str:
        started = time.perf_counter()
        response = await self.widget.post("/pocketping/connect", json={"visitorId": visitor_id})
        assert response.status_code == 200
        self.latencies.setdefault("connect", []).append(time.perf_counter() - started)
        session_id = str(response.json()["sessionId"])
        self.sent[session_id] = []
        return session_id

    async def phase(self, name: str, seconds: float) -> None:
        """Every visitor chats for ``seconds``."""
        until = time.monotonic() + seconds

        async def one(session_id: str) -> None:
            while time.monotonic() < until:
                content = f"{name}-{len(self.sent[session_id])}"
                started = time.perf_counter()
                body = {"sessionId": session_id, "content": content, "sender": "visitor"}
                response = await self.widget.post("/pocketping/message", json=body)
                self.latencies.setdefault(name, []).append(time.perf_counter() - started)
                assert response.status_code == 200
                self.sent[session_id].append(content)
                await asyncio.sleep(0.02)

        await asyncio.gather(*(one(session_id) for session_id in self.sent))


def p99(values: list[float]) -> float:
    return statistics.quantiles(values, n=100)[98] if len(values) > 1 else values[0]


@pytest.mark.timeout(120 + 3 * OUTAGE_SECONDS)
async def test_an_outage_of_switchboard_adds_no_latency_and_every_message_arrives_once_in_order(
    settings: Settings, clean_db: AsyncEngine
) -> None:
    world = await seed(clean_db)
    port = free_port()
    api = run_api(settings, port=port)
    running = await api.__aenter__()
    try:
        async with running.client() as http:
            site = await create_site(http, world)
        async with customer_app(running.url, site["key"]) as customer, customer.client() as widget:
            chat = Chat(widget)
            for i in range(VISITORS - 1):
                await chat.connect(f"v-{i}")
            await chat.phase("before", 2.0)

            await api.__aexit__(None, None, None)  # Switchboard is gone
            await chat.connect("v-during")  # a session that starts while it is down
            await chat.phase("outage", OUTAGE_SECONDS)
            api = run_api(settings, port=port)
            running = await api.__aenter__()  # back, on the same address
            await chat.phase("after", 1.0)

            total = sum(len(contents) for contents in chat.sent.values())

            async def all_arrived() -> bool:
                [count] = await rows(clean_db, "SELECT count(*) AS n FROM message")
                return bool(count["n"] >= total)

            await eventually(all_arrived, seconds=30)
    finally:
        await api.__aexit__(None, None, None)

    # The customer app answered as fast while Switchboard was down (generous bound: shared 2-core machine).
    before, outage = p99(chat.latencies["before"]), p99(chat.latencies["outage"])
    assert outage <= max(3 * before, before + 0.1), (before, outage)
    assert max(chat.latencies["outage"]) < 1.0

    # Every message once, in the order the visitor sent it, in the conversation of its session.
    stored = await rows(clean_db, "SELECT conversation_id, content FROM message WHERE sender = 'visitor' ORDER BY seq")
    assert len(stored) == total
    by_session: dict[str, list[str]] = {}
    for row in stored:
        by_session.setdefault(row["conversation_id"], []).append(row["content"])
    assert by_session == chat.sent
    assert all(any(c.startswith("outage-") for c in contents) for contents in chat.sent.values())
