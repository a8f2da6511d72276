"""Who may send events, and who may send replies: the site key and signatures both ways, nothing stored otherwise."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from typing import Any

import httpx
from sqlalchemy.ext.asyncio import AsyncEngine

from service import connect
from service.dev import free_port
from tests.conftest import RunningApi
from tests.integration.sites.conftest import create_site, customer_app, eventually, seed, visitor_socket
from tests.support.routing import rows


def events(session_id: str = "site-session-1", event_id: str | None = None) -> list[dict[str, Any]]:
    """A session and one visitor message, as the connector sends them."""
    now = "2026-12-04T12:00:00+00:00"
    session = {"id": session_id, "visitorId": "v-1", "createdAt": now, "lastActivity": now}
    message = {
        "id": f"{session_id}-m1",
        "sessionId": session_id,
        "content": "hi",
        "sender": "visitor",
        "timestamp": now,
    }
    return [
        {"id": event_id or uuid.uuid4().hex, "type": "session", "sessionId": session_id, "data": {"session": session}},
        {"id": uuid.uuid4().hex, "type": "message", "sessionId": session_id, "data": {"message": message}},
    ]


async def send(
    http: httpx.AsyncClient,
    key: str | None,
    batch: list[dict[str, Any]],
    *,
    signing_key: str | None = None,
    signed_body: bytes | None = None,
    at: float | None = None,
) -> httpx.Response:
    """POST a batch as the connector does; ``signing_key``, ``signed_body`` and ``at`` forge parts of it."""
    body = json.dumps({"events": batch}).encode()
    headers = {"Content-Type": "application/json"}
    if key is not None:
        headers[connect.KEY_HEADER] = key
        headers |= connect.signed_headers(signing_key or key, signed_body or body, at)
    return await http.post(connect.EVENTS_PATH, content=body, headers=headers)


async def stored(engine: AsyncEngine) -> dict[str, int]:
    [counts] = await rows(
        engine,
        "SELECT (SELECT count(*) FROM conversation) AS conversations, (SELECT count(*) FROM message) AS messages, "
        "(SELECT count(*) FROM site_event) AS events",
    )
    return counts


async def test_a_wrong_revoked_or_missing_key_or_a_bad_signature_is_401_and_stores_nothing(
    api: RunningApi, clean_db: AsyncEngine
) -> None:
    world = await seed(clean_db)
    async with api.client() as http:
        site = await create_site(http, world)
        key = site["key"]
        nothing = {"conversations": 0, "messages": 0, "events": 0}

        refusals = {
            "missing key": await send(http, None, events()),
            "wrong key": await send(http, "sbk_" + "x" * 43, events()),
            "signed with another key": await send(http, key, events(), signing_key="sbk_other"),
            "body changed after signing": await send(http, key, events(), signed_body=b'{"events":[]}'),
            "stale": await send(http, key, events(), at=time.time() - 301),
        }
        assert {why: r.status_code for why, r in refusals.items()} == dict.fromkeys(refusals, 401)
        assert refusals["stale"].json()["detail"] == "Site request refused: stale timestamp"
        assert refusals["wrong key"].json()["detail"] == "Site request refused: unknown or revoked site key"
        assert await stored(clean_db) == nothing

        # Bad input from a genuine site: a problem naming the field.
        bad = events()
        bad[1]["type"] = "telepathy"
        refused = await send(http, key, bad)
        assert refused.status_code == 400
        assert refused.json()["errors"][0]["field"] == "events.1.type"
        assert await stored(clean_db) == nothing

        # The genuine batch is applied; sent again, it is acknowledged and not applied twice.
        batch = events()
        first = await send(http, key, batch)
        assert first.status_code == 200
        assert first.json() == {"applied": 2, "duplicates": 0, "rejected": []}
        again = await send(http, key, batch)
        assert again.json() == {"applied": 0, "duplicates": 2, "rejected": []}
        assert await stored(clean_db) == {"conversations": 1, "messages": 1, "events": 2}
        # The same message under a new event id (a connector restarted mid-send): still one message.
        replay = [{**e, "id": uuid.uuid4().hex} for e in batch]
        assert (await send(http, key, replay)).json() == {"applied": 2, "duplicates": 0, "rejected": []}
        assert (await stored(clean_db))["messages"] == 1

        # Another site may not write into this site's conversation (nor into a hosted one).
        other = await create_site(http, world)
        taken = await send(http, other["key"], events())
        assert [r["reason"] for r in taken.json()["rejected"]] == ["session belongs to another site"] * 2

        # Revoked: refused, nothing more stored; rotating gives a new key and the old one stays refused.
        assert (await http.post(f"/api/v1/sites/{site['id']}/revoke", headers=world.admin_headers)).status_code == 200
        before = await stored(clean_db)
        revoked = await send(http, key, events("site-session-2"))
        assert revoked.status_code == 401
        assert await stored(clean_db) == before
        rotated = await http.post(f"/api/v1/sites/{site['id']}/rotate-key", headers=world.admin_headers)
        assert rotated.status_code == 200 and rotated.json()["key"] != key and rotated.json()["revokedAt"] is None
        assert (await send(http, key, events("site-session-2"))).status_code == 401
        assert (await send(http, rotated.json()["key"], events("site-session-2"))).status_code == 200

        # Only the key's hash is kept, and the API never shows the key again.
        listed = (await http.get("/api/v1/sites", headers=world.admin_headers)).json()["items"]
        assert all("key" not in item for item in listed)
        hashes = await rows(clean_db, "SELECT key_hash, key_prefix FROM site WHERE id = :id", id=site["id"])
        assert hashes[0]["key_hash"] not in (key, rotated.json()["key"])
        assert rotated.json()["key"].startswith(hashes[0]["key_prefix"])


async def test_a_tampered_or_stale_callback_is_refused_by_the_connector_and_not_shown_to_the_visitor(
    api: RunningApi, clean_db: AsyncEngine
) -> None:
    world = await seed(clean_db)
    async with api.client() as http:
        site = await create_site(http, world)
    secret = connect.callback_secret(site["key"])
    async with customer_app(api.url, site["key"], free_port()) as customer, customer.client() as widget:
        session_id = (await widget.post("/pocketping/connect", json={"visitorId": "v-9"})).json()["sessionId"]
        async with visitor_socket(customer, session_id) as visitor:
            reply = {
                "id": "sb-1",
                "type": "message",
                "sessionId": session_id,
                "data": {"messageId": "sb-message-1", "sender": "operator", "content": "Hello", "operatorName": "Ada"},
            }
            body = json.dumps(reply).encode()
            tampered = body.replace(b"Hello", b"Pay me")

            async def post(content: bytes, headers: dict[str, str]) -> httpx.Response:
                return await widget.post("/switchboard/callbacks", content=content, headers=headers)

            refusals = {
                "changed after signing": await post(tampered, connect.signed_headers(secret, body)),
                "signed with the site key itself": await post(body, connect.signed_headers(site["key"], body)),
                "stale": await post(body, connect.signed_headers(secret, body, time.time() - 301)),
                "unsigned": await post(body, {}),
            }
            assert {why: r.status_code for why, r in refusals.items()} == dict.fromkeys(refusals, 401)
            await asyncio.sleep(0.3)
            assert visitor.of("message", sender="operator") == []

            genuine = await post(body, connect.signed_headers(secret, body))
            assert genuine.json() == {"ok": True}
            again = await post(body, connect.signed_headers(secret, body))
            assert again.json() == {"ok": True, "duplicate": True}
            await eventually(lambda: _shown(visitor))
            await asyncio.sleep(0.3)
            assert [(m["id"], m["content"]) for m in visitor.of("message", sender="operator")] == [
                ("sb-message-1", "Hello")
            ]


async def _shown(visitor: Any) -> bool:
    return bool(visitor.of("message", sender="operator"))
