"""The widget and its team: team chosen at connect, availability (at connect and pushed), typing and read both ways."""

from __future__ import annotations

import asyncio
import contextlib
import json
import uuid
from collections.abc import AsyncIterator
from datetime import datetime
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
import websockets
from sqlalchemy.ext.asyncio import AsyncEngine

from service.settings import Settings
from tests.conftest import RunningApi, run_api
from tests.factories import add_member, bearer, make_operator, make_team, personal_token
from tests.integration.workers.test_worker import burst_worker, run_burst
from tests.support.routing import rows, set_values
from tests.support.sse import open_stream

BILLING_URL = "https://shop.example/billing/invoice/7"


async def add_rule(engine: AsyncEngine, team_id: uuid.UUID, position: int, conditions: dict[str, Any]) -> None:
    async with engine.begin() as conn:
        await conn.execute(
            sa.text(
                "INSERT INTO routing_rule (id, team_id, position, name, conditions, created_at)"
                " VALUES (:id, :team, :position, 'rule', CAST(:conditions AS jsonb), now())"
            ),
            {"id": uuid.uuid4(), "team": team_id, "position": position, "conditions": json.dumps(conditions)},
        )


async def connect(http: httpx.AsyncClient, visitor: str, url: str | None = None, **body: Any) -> dict[str, Any]:
    metadata = {"url": url} if url else None
    response = await http.post("/pocketping/connect", json={"visitorId": visitor, "metadata": metadata, **body})
    assert response.status_code == 200, response.text
    return response.json()  # type: ignore[no-any-return]


async def operator_of(engine: AsyncEngine, team_id: uuid.UUID, name: str) -> tuple[uuid.UUID, dict[str, str]]:
    """A member of the team and their bearer headers."""
    operator_id = await make_operator(engine, name)
    await add_member(engine, team_id, operator_id)
    return operator_id, bearer(await personal_token(engine, operator_id))


async def set_status(http: httpx.AsyncClient, headers: dict[str, str], status: str) -> None:
    response = await http.put("/api/v1/me/presence", json={"status": status}, headers=headers)
    assert response.status_code == 200, response.text


async def frame(socket: Any, wait: float = 10) -> dict[str, Any]:
    return json.loads(await asyncio.wait_for(socket.recv(), wait))  # type: ignore[no-any-return]


async def no_frame(socket: Any, wait: float = 0.5) -> None:
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(socket.recv(), wait)


@contextlib.asynccontextmanager
async def worker_running(settings: Settings) -> AsyncIterator[None]:
    """A worker as in production (its relays run), without the periodic sweep."""
    worker = burst_worker(settings, burst=False, poll_delay=0.05, cron_jobs=[])
    task = asyncio.create_task(worker.main())
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await worker.close()


# --- The team at connect ------------------------------------------------------------------------------------


async def test_a_url_rule_chooses_the_team_at_connect_its_welcome_and_ai_and_routing_keeps_it(
    http: httpx.AsyncClient, clean_db: AsyncEngine, settings: Settings
) -> None:
    support = await make_team(clean_db, "Support", is_default=True, welcome_message="Hi from Support")
    billing = await make_team(
        clean_db, "Billing", welcome_message="Billing here", ai_enabled=True, ai_takeover_delay_seconds=45
    )
    await add_rule(clean_db, billing, 0, {"url": "https://shop.example/billing/*"})

    on_billing = await connect(http, "v-billing", BILLING_URL)
    assert (on_billing["welcomeMessage"], on_billing["aiEnabled"], on_billing["operatorOnline"]) == (
        "Billing here",
        True,
        False,
    )
    on_pricing = await connect(http, "v-pricing", "https://shop.example/pricing")
    assert (on_pricing["welcomeMessage"], on_pricing["aiEnabled"]) == ("Hi from Support", False)
    # Chosen, not placed: a page view is in nobody's queue, inbox or analytics.
    assert await rows(
        clean_db,
        "SELECT id, status, team_id, selected_team_id FROM conversation ORDER BY selected_team_id = :s",
        s=support,
    ) == [
        {"id": on_billing["sessionId"], "status": "new", "team_id": None, "selected_team_id": billing},
        {"id": on_pricing["sessionId"], "status": "new", "team_id": None, "selected_team_id": support},
    ]

    presence = await http.get("/pocketping/presence", params={"sessionId": on_billing["sessionId"]})
    assert (presence.status_code, presence.json()) == (
        200,
        {"online": False, "operators": None, "aiEnabled": True, "aiActiveAfter": 45},
    )
    # The widget sends no session: the default team answers.
    assert (await http.get("/pocketping/presence")).json() == {
        "online": False,
        "operators": None,
        "aiEnabled": False,
        "aiActiveAfter": None,
    }
    unknown = await http.get("/pocketping/presence", params={"sessionId": "no-such-session"})
    assert (unknown.status_code, unknown.json()["detail"]) == (404, "Session not found")

    # The rules change before the visitor writes: the team that greeted them takes the conversation.
    async with clean_db.begin() as conn:
        await conn.execute(sa.text("DELETE FROM routing_rule"))
    sent = await http.post(
        "/pocketping/message",
        json={"sessionId": on_billing["sessionId"], "content": "My invoice?", "sender": "visitor"},
    )
    assert sent.status_code == 200
    # The routing job only: the burst would otherwise wait out the AI timer's 45 s.
    assert (await run_burst(settings, cron_jobs=[], max_burst_jobs=1)).jobs_failed == 0
    assert await rows(
        clean_db, "SELECT status, team_id FROM conversation WHERE id = :id", id=on_billing["sessionId"]
    ) == [{"status": "queued", "team_id": billing}]


async def test_identify_chooses_again_for_a_conversation_not_placed_yet(
    http: httpx.AsyncClient, clean_db: AsyncEngine
) -> None:
    await make_team(clean_db, "Support", is_default=True, welcome_message="Hi from Support")
    acme = await make_team(clean_db, "Acme accounts", welcome_message="Hello Acme")
    await add_rule(clean_db, acme, 0, {"identity": {"email": "*@acme.example"}})
    session_id = (await connect(http, "v-acme", "https://shop.example/"))["sessionId"]
    response = await http.post(
        "/pocketping/identify", json={"sessionId": session_id, "identity": {"id": "u-1", "email": "jo@acme.example"}}
    )
    assert response.status_code == 200
    assert await rows(clean_db, "SELECT selected_team_id FROM conversation") == [{"selected_team_id": acme}]
    again = await connect(http, "v-acme", "https://shop.example/", sessionId=session_id)
    assert (again["sessionId"], again["welcomeMessage"]) == (session_id, "Hello Acme")


async def test_operator_online_at_connect_is_the_visitors_team_not_any_team(
    http: httpx.AsyncClient, clean_db: AsyncEngine
) -> None:
    support = await make_team(clean_db, "Support", is_default=True)
    other = await make_team(clean_db, "Other")
    _, ana = await operator_of(clean_db, support, "Ana")
    _, oz = await operator_of(clean_db, other, "Oz")
    await set_status(http, oz, "online")
    assert (await connect(http, "v-1"))["operatorOnline"] is False
    await set_status(http, ana, "away")  # away takes no new work: nobody to answer
    assert (await connect(http, "v-1"))["operatorOnline"] is False
    await set_status(http, ana, "online")
    assert (await connect(http, "v-1"))["operatorOnline"] is True
    assert (await http.get("/pocketping/presence")).json()["online"] is True


# --- Availability pushed ------------------------------------------------------------------------------------


async def test_presence_is_pushed_to_the_teams_widgets_on_its_first_operator_online_and_its_last_offline(
    settings: Settings, clean_db: AsyncEngine
) -> None:
    support = await make_team(clean_db, "Support", is_default=True)
    billing = await make_team(clean_db, "Billing")
    await add_rule(clean_db, billing, 0, {"url": "https://shop.example/billing/*"})
    _, ana = await operator_of(clean_db, support, "Ana")
    _, ben = await operator_of(clean_db, support, "Ben")
    _, cy = await operator_of(clean_db, billing, "Cy")
    async with run_api(settings) as api_a, run_api(settings) as api_b, worker_running(settings):
        async with api_a.client() as http_a, api_b.client() as http_b:
            support_visitor = (await connect(http_a, "v-support", "https://shop.example/"))["sessionId"]
            billing_visitor = (await connect(http_b, "v-billing", BILLING_URL))["sessionId"]
            # Each socket held by another api process than the one where presence changes.
            async with (
                websockets.connect(f"{api_b.ws_url}/pocketping/stream?sessionId={support_visitor}") as on_support,
                websockets.connect(f"{api_b.ws_url}/pocketping/stream?sessionId={billing_visitor}") as on_billing,
            ):
                await set_status(http_a, ana, "online")
                assert await frame(on_support) == {"type": "presence", "data": {"online": True}}
                await set_status(http_a, ben, "online")  # someone was online already: nothing to say
                await set_status(http_a, ana, "offline")  # Ben still is
                await set_status(http_a, cy, "online")
                assert await frame(on_billing) == {"type": "presence", "data": {"online": True}}
                await set_status(http_a, ben, "away")  # the last one online leaves
                assert await frame(on_support) == {"type": "presence", "data": {"online": False}}
                await no_frame(on_support)
                await no_frame(on_billing)
    changes = await rows(clean_db, "SELECT team_id, data FROM event WHERE kind = 'team.availability' ORDER BY id")
    assert changes == [
        {"team_id": support, "data": {"teamId": str(support), "online": True}},
        {"team_id": billing, "data": {"teamId": str(billing), "online": True}},
        {"team_id": support, "data": {"teamId": str(support), "online": False}},
    ]


async def test_two_last_members_leaving_at_once_make_the_team_unavailable_once(
    api: RunningApi, http: httpx.AsyncClient, clean_db: AsyncEngine
) -> None:
    support = await make_team(clean_db, "Support", is_default=True)
    members = [await operator_of(clean_db, support, name) for name in ("Ana", "Ben", "Cal", "Dee")]
    await asyncio.gather(*(set_status(http, headers, "online") for _, headers in members))
    await asyncio.gather(*(set_status(http, headers, "offline") for _, headers in members))
    changes = await rows(clean_db, "SELECT data ->> 'online' AS online FROM event WHERE kind = 'team.availability'")
    assert changes == [{"online": "true"}, {"online": "false"}]


# --- Typing -------------------------------------------------------------------------------------------------


async def test_visitor_typing_is_on_the_operator_stream_and_operator_typing_reaches_the_widget(
    settings: Settings, clean_db: AsyncEngine
) -> None:
    support = await make_team(clean_db, "Support", is_default=True)
    ada, ada_headers = await operator_of(clean_db, support, "Ada")
    _, outsider = await operator_of(clean_db, await make_team(clean_db, "Other"), "Oz")
    async with run_api(settings.model_copy(update={"events_poll_seconds": 0.05})) as api, api.client() as http:
        session_id = (await connect(http, "v-typing"))["sessionId"]
        await set_values(
            clean_db, "conversation", {"id": session_id}, team_id=support, status="assigned", assignee_id=ada
        )
        token = ada_headers["Authorization"].removeprefix("Bearer ")
        async with open_stream(api.url, token) as stream:
            typing = {"sessionId": session_id, "sender": "visitor", "isTyping": True}
            assert (await http.post("/pocketping/typing", json=typing)).status_code == 200
            event = await stream.next()
            assert (event.event, event.data["teamId"], event.data["operatorIds"], event.data["data"]) == (
                "visitor.typing",
                str(support),
                [str(ada)],
                {"conversationId": session_id, "isTyping": True},
            )

        path = f"/api/v1/conversations/{session_id}/typing"
        async with websockets.connect(f"{api.ws_url}/pocketping/stream?sessionId={session_id}") as socket:
            for state in (True, False):
                response = await http.post(path, json={"isTyping": state}, headers=ada_headers)
                assert response.status_code == 204
                assert await frame(socket) == {
                    "type": "typing",
                    "data": {"sessionId": session_id, "sender": "operator", "isTyping": state},
                }
            assert (await http.post(path, json={"isTyping": True}, headers=outsider)).status_code == 404
            bad = await http.post(path, json={"isTyping": "maybe"}, headers=ada_headers)
            assert bad.status_code == 400
            assert [e["field"] for e in bad.json()["errors"]] == ["isTyping"]
            await no_frame(socket)


# --- Read ---------------------------------------------------------------------------------------------------


async def test_an_operator_reads_the_visitors_messages_and_the_visitors_receipts_reach_the_stream(
    settings: Settings, clean_db: AsyncEngine
) -> None:
    support = await make_team(clean_db, "Support", is_default=True)
    ada, ada_headers = await operator_of(clean_db, support, "Ada")
    async with run_api(settings.model_copy(update={"events_poll_seconds": 0.05})) as api, api.client() as http:
        session_id = (await connect(http, "v-read"))["sessionId"]
        await set_values(
            clean_db, "conversation", {"id": session_id}, team_id=support, status="assigned", assignee_id=ada
        )
        asked = []
        for content in ("Hello?", "Anyone there?"):
            sent = await http.post(
                "/pocketping/message", json={"sessionId": session_id, "content": content, "sender": "visitor"}
            )
            asked.append(sent.json()["messageId"])
        reply = await http.post(
            f"/api/v1/conversations/{session_id}/messages", json={"content": "Yes!"}, headers=ada_headers
        )
        answer = reply.json()["id"]

        read_path = f"/api/v1/conversations/{session_id}/read"
        async with websockets.connect(f"{api.ws_url}/pocketping/stream?sessionId={session_id}") as socket:
            marked = await http.post(read_path, headers=ada_headers)
            assert marked.status_code == 200
            assert marked.json()["messageIds"] == asked
            read_at = marked.json()["readAt"]
            pushed = await frame(socket)
            assert pushed == {
                "type": "read",
                "data": {
                    "sessionId": session_id,
                    "messageIds": asked,
                    "status": "read",
                    "deliveredAt": pushed["data"]["readAt"],
                    "readAt": pushed["data"]["readAt"],
                },
            }
            assert datetime.fromisoformat(pushed["data"]["readAt"]) == datetime.fromisoformat(read_at)
            again = await http.post(read_path, headers=ada_headers)
            assert again.json() == {"messageIds": [], "readAt": None}
            await no_frame(socket)
        stored = await rows(
            clean_db,
            "SELECT sender, status, read_at IS NOT NULL AS read FROM message WHERE conversation_id = :id ORDER BY seq",
            id=session_id,
        )
        assert stored == [
            {"sender": "visitor", "status": "read", "read": True},
            {"sender": "visitor", "status": "read", "read": True},
            {"sender": "operator", "status": "sent", "read": False},
        ]

        token = ada_headers["Authorization"].removeprefix("Bearer ")
        async with open_stream(api.url, token) as stream:
            receipt = {"sessionId": session_id, "messageIds": [answer], "status": "read"}
            assert (await http.post("/pocketping/read", json=receipt)).json() == {"updated": 1}
            event = await stream.next()
            assert (event.event, event.data["operatorIds"]) == ("message.receipt", [str(ada)])
            data = event.data["data"]
            assert data == {
                "conversationId": session_id,
                "messageIds": [answer],
                "status": "read",
                "by": "visitor",
                "operatorId": None,
                "at": data["at"],
            }
            # A read message stays read: a late "delivered" or a repeat changes nothing.
            for status in ("delivered", "read"):
                receipt = {"sessionId": session_id, "messageIds": [answer], "status": status}
                assert (await http.post("/pocketping/read", json=receipt)).json() == {"updated": 0}
        messages = (await http.get(f"/api/v1/conversations/{session_id}/messages", headers=ada_headers)).json()
        shown = messages["items"][-1]
        assert (shown["id"], shown["status"]) == (answer, "read")
        assert datetime.fromisoformat(shown["readAt"]) == datetime.fromisoformat(data["at"])
