"""Delivery across processes: an event produced anywhere reaches each visitor socket exactly once."""

from __future__ import annotations

import asyncio
import json
import uuid
from typing import Any

import sqlalchemy as sa
import websockets
from pocketping.bridges import Bridge
from pocketping.models import Message, Session
from sqlalchemy.ext.asyncio import AsyncEngine

from service.conversations.delivery import add_widget_message
from service.queue import enqueue_delivery
from service.settings import Settings
from tests.conftest import RunningApi, run_api
from tests.integration.workers.test_worker import run_burst
from workers import jobs


class RecordingBridge(Bridge):
    """Counts the operator messages a process mirrors to its chat bridges."""

    def __init__(self) -> None:
        self.operator_messages: list[str] = []

    @property
    def name(self) -> str:
        return "recording"

    async def on_operator_message(
        self, message: Message, session: Session, source_bridge: str | None = None, operator_name: str | None = None
    ) -> None:
        self.operator_messages.append(message.id)


async def received(socket: Any, quiet: float = 0.5) -> list[dict[str, Any]]:
    """Everything the socket receives until it stays quiet for ``quiet`` seconds."""
    events = []
    while True:
        try:
            events.append(json.loads(await asyncio.wait_for(socket.recv(), quiet)))
        except TimeoutError:
            return events


def message_ids(events: list[dict[str, Any]]) -> list[str]:
    return [event["data"]["id"] for event in events if event["type"] == "message"]


async def open_session(api: RunningApi) -> str:
    async with api.client() as http:
        return str((await http.post("/pocketping/connect", json={"visitorId": "v-1"})).json()["sessionId"])


async def test_two_api_instances_deliver_each_event_once_per_socket(settings: Settings, clean_db: AsyncEngine) -> None:
    async with run_api(settings) as api_a, run_api(settings) as api_b:
        bridges = {"a": RecordingBridge(), "b": RecordingBridge()}
        api_a.app.state.pocketping.bridges.append(bridges["a"])
        api_b.app.state.pocketping.bridges.append(bridges["b"])
        session_id = await open_session(api_a)
        url = f"/pocketping/stream?sessionId={session_id}"
        async with websockets.connect(api_a.ws_url + url) as on_a, websockets.connect(api_b.ws_url + url) as on_b:
            # A visitor message handled by instance B.
            async with api_b.client() as http:
                visitor = (
                    await http.post(
                        "/pocketping/message", json={"sessionId": session_id, "content": "anyone?", "sender": "visitor"}
                    )
                ).json()["messageId"]
            # An operator message produced in instance B's process.
            reply = await api_b.app.state.pocketping.send_as_operator(
                session_id, "Hi, I'm Ana", operator_id=None, operator_name="Ana"
            )
            assert message_ids(await received(on_a)) == [visitor, reply.id]
            assert message_ids(await received(on_b)) == [visitor, reply.id]
        # Bridges mirror the operator message once, from the producing process only.
        assert (bridges["a"].operator_messages, bridges["b"].operator_messages) == ([], [reply.id])


async def test_a_message_produced_by_a_worker_arrives_once(settings: Settings, clean_db: AsyncEngine) -> None:
    async with run_api(settings) as api:
        session_id = await open_session(api)
        operator_id = uuid.uuid4()
        async with clean_db.begin() as conn:
            await conn.execute(
                sa.text("INSERT INTO operator (id, subject, display_name) VALUES (:id, 'sub-ana', 'Ana')"),
                {"id": operator_id},
            )
            outbox_id = await add_widget_message(
                conn,
                conversation_id=session_id,
                content="Your order shipped",
                operator_id=operator_id,
                operator_name="Ana",
            )
        async with websockets.connect(f"{api.ws_url}/pocketping/stream?sessionId={session_id}") as socket:
            arq = api.app.state.redis
            await enqueue_delivery(arq, outbox_id)
            worker = await run_burst(settings)
            assert worker.jobs_failed == 0
            events = await received(socket)
            [event] = [e for e in events if e["type"] == "message"]
            assert (event["data"]["sender"], event["data"]["content"]) == ("operator", "Your order shipped")
            # The same job again (a retry or a duplicate) finds the row delivered and does nothing.
            ctx = {"engine": clean_db, "redis": arq, "settings": settings}
            assert await jobs.deliver_outbox(ctx, outbox_id=outbox_id) == "skipped"
            assert await received(socket, quiet=0.3) == []
        async with clean_db.connect() as conn:
            stored = (await conn.execute(sa.text("SELECT sender, operator_id FROM message"))).all()
            delivered = (await conn.execute(sa.text("SELECT delivered_at IS NOT NULL FROM outbox"))).scalar()
        assert [(row.sender, row.operator_id) for row in stored] == [("operator", operator_id)]
        assert delivered is True


async def test_redelivery_after_a_crash_reuses_the_message_id(settings: Settings, clean_db: AsyncEngine) -> None:
    async with run_api(settings) as api:
        session_id = await open_session(api)
        async with clean_db.begin() as conn:
            outbox_id = await add_widget_message(
                conn, conversation_id=session_id, content="once", operator_id=None, operator_name=None
            )
        ctx = {
            "engine": clean_db,
            "redis": api.app.state.redis,
            "settings": settings,
            "pocketping": api.app.state.pocketping,
        }
        assert await jobs.deliver_outbox(ctx, outbox_id=outbox_id) == "delivered"
        # Simulate a crash between sending and recording delivery: the row looks undelivered.
        async with clean_db.begin() as conn:
            await conn.execute(sa.text("UPDATE outbox SET delivered_at = NULL"))
        assert await jobs.deliver_outbox(ctx, outbox_id=outbox_id) == "delivered"
        async with clean_db.connect() as conn:
            assert (await conn.execute(sa.text("SELECT count(*) FROM message"))).scalar() == 1
