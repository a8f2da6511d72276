"""Connected mode end to end: visitors on the customer's own PocketPing app, routed and answered in Switchboard."""

from __future__ import annotations

import asyncio
import uuid

from sqlalchemy.ext.asyncio import AsyncEngine

from service.dev import free_port
from service.settings import Settings
from tests.conftest import RunningApi
from tests.integration.sites.conftest import (
    conversation,
    create_site,
    customer_app,
    eventually,
    seed,
    visitor_socket,
)
from tests.support.routing import rows
from tests.support.routing_worker import worker_processes


async def test_a_visitor_of_the_customer_app_is_routed_in_switchboard_and_gets_the_operator_reply_once(
    api: RunningApi, settings: Settings, clean_db: AsyncEngine
) -> None:
    world = await seed(clean_db)
    port = free_port()
    async with api.client() as http:
        site = await create_site(http, world, callback_url=f"http://127.0.0.1:{port}/switchboard/callbacks")
        online = await http.put("/api/v1/me/presence", json={"status": "online"}, headers=world.ada_headers)
        assert online.status_code == 200

    async with (
        worker_processes(settings, 1),
        customer_app(api.url, site["key"], port) as customer,
        customer.client() as widget,
        api.client() as operator,
    ):
        connected = await widget.post(
            "/pocketping/connect", json={"visitorId": "v-1", "metadata": {"url": "https://shop.example/cart"}}
        )
        assert connected.status_code == 200
        session_id = connected.json()["sessionId"]
        async with visitor_socket(customer, session_id) as visitor:
            sent = await widget.post(
                "/pocketping/message",
                json={"sessionId": session_id, "content": "Where is my order?", "sender": "visitor"},
            )
            assert sent.status_code == 200
            typing = {"sessionId": session_id, "sender": "visitor", "isTyping": True}
            assert (await widget.post("/pocketping/typing", json=typing)).status_code == 200
            identity = {"sessionId": session_id, "identity": {"id": "u-1", "email": "eve@example.test"}}
            assert (await widget.post("/pocketping/identify", json=identity)).status_code == 200

            # Stored as an ordinary conversation of the site, and routed by the worker to Ada, who is online.
            routed = await eventually(lambda: _assigned(clean_db, session_id), seconds=30)
            assert routed["site_id"] == uuid.UUID(site["id"])
            assert routed["team_id"] == world.team_id and routed["assignee_id"] == world.ada
            assert await eventually(lambda: _identified(clean_db, session_id))

            # Ada answers in Switchboard; the visitor's socket on the customer app gets it, once.
            reply = await operator.post(
                f"/api/v1/conversations/{session_id}/messages",
                json={"content": "It ships today."},
                headers=world.ada_headers,
            )
            assert reply.status_code == 201, reply.text
            reply_id = reply.json()["id"]
            await eventually(lambda: _shown(visitor, "It ships today."))
            typed = await operator.post(
                f"/api/v1/conversations/{session_id}/typing", json={"isTyping": True}, headers=world.ada_headers
            )
            assert typed.status_code == 204
            await eventually(lambda: _typing_shown(visitor))
            await asyncio.sleep(1.5)  # a duplicate callback would have arrived by now
            operator_frames = visitor.of("message", sender="operator")
            assert [(m["id"], m["content"]) for m in operator_frames] == [(reply_id, "It ships today.")]

            # The visitor reads it (the customer app names it with Switchboard's id): Switchboard sees it read.
            read = {"sessionId": session_id, "messageIds": [reply_id], "status": "read"}
            assert (await widget.post("/pocketping/read", json=read)).status_code == 200
            assert await eventually(lambda: _read(clean_db, reply_id))

            bye = {"sessionId": session_id, "duration": 42, "reason": "page_unload"}
            assert (await widget.post("/pocketping/disconnect", json=bye)).status_code == 200
            assert await eventually(lambda: _left(clean_db, session_id))

        # The customer's own history holds both messages, with Switchboard's id for the reply.
        history = (await widget.get("/pocketping/messages", params={"sessionId": session_id})).json()["messages"]
        # The SDK's MemoryStorage appends a message again when a read receipt re-saves it (pocketping 1.12.0, with
        # or without a bridge): one entry per id is what the widget shows.
        shown = list(dict.fromkeys((m["id"], m["sender"], m["content"]) for m in history))
        assert [(sender, content) for _, sender, content in shown] == [
            ("visitor", "Where is my order?"),
            ("operator", "It ships today."),
        ]
        assert shown[1][0] == reply_id

    stored = await rows(
        clean_db, "SELECT sender, content FROM message WHERE conversation_id = :id ORDER BY seq", id=session_id
    )
    assert stored == [
        {"sender": "visitor", "content": "Where is my order?"},
        {"sender": "operator", "content": "It ships today."},
    ]
    callbacks = await rows(
        clean_db,
        "SELECT payload ->> 'type' AS type, delivered_at IS NOT NULL AS delivered FROM outbox "
        "WHERE kind = 'site_callback' ORDER BY id",
    )
    assert {"type": "message", "delivered": True} in callbacks
    assert all(c["delivered"] for c in callbacks)


async def _assigned(engine: AsyncEngine, session_id: str) -> dict | None:
    found = await conversation(engine, session_id)
    return found if found is not None and found["status"] == "assigned" else None


async def _identified(engine: AsyncEngine, session_id: str) -> bool:
    found = await conversation(engine, session_id)
    return found is not None and (found["identity"] or {}).get("email") == "eve@example.test"


async def _left(engine: AsyncEngine, session_id: str) -> bool:
    found = await conversation(engine, session_id)
    return found is not None and found["visitor_left_at"] is not None


async def _read(engine: AsyncEngine, message_id: str) -> bool:
    found = await rows(engine, "SELECT read_at FROM message WHERE id = :id", id=message_id)
    return bool(found) and found[0]["read_at"] is not None


async def _shown(visitor, content: str) -> bool:
    return any(m["content"] == content for m in visitor.of("message", sender="operator"))


async def _typing_shown(visitor) -> bool:
    return bool(visitor.of("typing", sender="operator", isTyping=True))
