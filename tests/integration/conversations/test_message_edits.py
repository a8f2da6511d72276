"""Operators edit and delete their own messages within the team's window: REST API, the widget's socket, the chats.

Real api (uvicorn), real arq workers, PostgreSQL and Redis, the widget protocol over HTTP and WebSocket; the
team's Telegram and Slack are the loopback stand-ins (tests/standins).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
import websockets
from sqlalchemy.ext.asyncio import AsyncEngine

from service.settings import Settings
from tests.conftest import RunningApi, run_api
from tests.factories import make_team
from tests.integration.bridges.test_bridges_outbound import configure, member, visitor, work
from tests.integration.gateway.test_gateway import next_event
from tests.standins import SlackStandIn, TelegramStandIn
from tests.support.routing import rows, set_values

TELEGRAM_TOKEN = "444444:edits-telegram-bot-token"
SLACK_TOKEN = "xoxb-edits-slack-bot-token"
CHAT, CHANNEL = "-1001000000044", "C0EDITS01"
QUIET = 0.5  # seconds a socket must stay silent when nothing may be pushed


@dataclass
class Chat:
    """A routed conversation of team Alpha (Telegram and Slack on) that Ada holds."""

    team_id: uuid.UUID
    session_id: str
    lead: dict[str, str]
    ada: dict[str, str]
    bob: dict[str, str]
    outsider: dict[str, str]


@pytest.fixture
def bridged(settings: Settings, telegram_api: TelegramStandIn, slack_api: SlackStandIn) -> Settings:
    return settings.model_copy(
        update={"telegram_api_base": telegram_api.base_url, "slack_api_base": slack_api.base_url}
    )


async def ada_holds_a_conversation(
    engine: AsyncEngine, http: httpx.AsyncClient, settings: Settings, api: RunningApi
) -> Chat:
    team_id = await make_team(engine, "Alpha", is_default=True, routing_policy="round_robin")
    _, lead = await member(engine, "Lena", team_id, "lead", status="offline")
    _, ada = await member(engine, "Ada", team_id, status="online")
    _, bob = await member(engine, "Bob", team_id, status="away")
    _, outsider = await member(engine, "Carl", await make_team(engine, "Beta"), status="online")
    slack = {"enabled": True, "channelId": CHANNEL, "botToken": SLACK_TOKEN, "signingSecret": "edits-signing-secret"}
    await configure(
        http,
        team_id,
        lead,
        {"telegram": {"enabled": True, "chatId": CHAT, "botToken": TELEGRAM_TOKEN}, "slack": slack},
    )
    session_id = await visitor(http, "Vera", "https://shop.example/orders", "Can I still change my order?")
    await work(settings, api)
    return Chat(team_id, session_id, lead, ada, bob, outsider)


async def reply(http: httpx.AsyncClient, chat: Chat, content: str) -> dict[str, Any]:
    response = await http.post(
        f"/api/v1/conversations/{chat.session_id}/messages", json={"content": content}, headers=chat.ada
    )
    assert response.status_code == 201, response.text
    return response.json()  # type: ignore[no-any-return]


def message_url(chat: Chat, message_id: str) -> str:
    return f"/api/v1/conversations/{chat.session_id}/messages/{message_id}"


async def test_an_edit_within_the_window_reaches_the_widget_and_the_chats_and_one_after_it_is_refused(
    bridged: Settings, clean_db: AsyncEngine, telegram_api: TelegramStandIn, slack_api: SlackStandIn
) -> None:
    async with run_api(bridged) as api, api.client() as http:
        chat = await ada_holds_a_conversation(clean_db, http, bridged, api)
        sent = await reply(http, chat, "Yes, until it ships on Friday.")
        await work(bridged, api)  # a worker posts to the chats
        [posted] = [c for c in telegram_api.calls_to("sendMessage") if "until it ships" in c.body["text"]]
        [slack_posted] = [c for c in slack_api.calls_to("chat.postMessage") if "until it ships" in c.body["text"]]
        telegram_id, slack_ts = posted.response["result"]["message_id"], slack_posted.response["ts"]
        telegram_api.clear()
        slack_api.clear()

        async with websockets.connect(f"{api.ws_url}/pocketping/stream?sessionId={chat.session_id}") as socket:
            response = await http.patch(
                message_url(chat, sent["id"]), json={"content": "Yes, until it ships on Monday."}, headers=chat.ada
            )
            assert response.status_code == 200, response.text
            edited = response.json()
            assert (edited["id"], edited["content"], edited["deletedAt"]) == (
                sent["id"],
                "Yes, until it ships on Monday.",
                None,
            )
            assert edited["editedAt"] is not None
            # The widget gets the event client.ts handles, in its shape.
            event = await next_event(socket)
            assert event == {
                "type": "message_edited",
                "data": {
                    "messageId": sent["id"],
                    "content": "Yes, until it ships on Monday.",
                    "editedAt": event["data"]["editedAt"],
                },
            }
            [stored] = await rows(clean_db, "SELECT content, edited_at FROM message WHERE id = :id", id=sent["id"])
            assert stored["content"] == "Yes, until it ships on Monday."
            assert stored["edited_at"] == datetime.fromisoformat(event["data"]["editedAt"])
            assert stored["edited_at"] == datetime.fromisoformat(edited["editedAt"])
            # The chats' copies follow, under the operator's name (the SDK's own edit hooks).
            await work(bridged, api)
            [telegram_edit] = telegram_api.calls_to("editMessageText")
            assert (telegram_edit.token, telegram_edit.body["chat_id"], telegram_edit.body["message_id"]) == (
                TELEGRAM_TOKEN,
                CHAT,
                telegram_id,
            )
            assert telegram_edit.body["text"] == "<b>Ada:</b>\nYes, until it ships on Monday.\n<i>(edited)</i>"
            [slack_edit] = slack_api.calls_to("chat.update")
            assert (slack_edit.body["channel"], slack_edit.body["ts"], slack_edit.body["text"]) == (
                CHANNEL,
                slack_ts,
                "Ada: Yes, until it ships on Monday. (edited)",
            )
            # The operators' stream hears of it.
            [recorded] = await rows(clean_db, "SELECT data FROM event WHERE kind = 'message.edited'")
            assert recorded["data"]["content"] == "Yes, until it ships on Monday."
            # What the widget reads back: GET /messages and the history at connect.
            page = (await http.get("/pocketping/messages", params={"sessionId": chat.session_id})).json()
            [widget_copy] = [m for m in page["messages"] if m["id"] == sent["id"]]
            assert (widget_copy["content"], widget_copy["editedAt"] is not None) == (
                "Yes, until it ships on Monday.",
                True,
            )
            history = (await http.post("/pocketping/connect", json={"visitorId": "v-Vera"})).json()["messages"]
            assert [m["content"] for m in history if m["id"] == sent["id"]] == ["Yes, until it ships on Monday."]

            # Past the team's window (900 s by default): 409, and nothing changes anywhere.
            sent_at = datetime.now(UTC) - timedelta(seconds=901)
            await set_values(clean_db, "message", {"id": sent["id"]}, created_at=sent_at)
            telegram_api.clear()
            slack_api.clear()
            late = await http.patch(message_url(chat, sent["id"]), json={"content": "Too late"}, headers=chat.ada)
            assert (late.status_code, late.json()["detail"]) == (
                409,
                "Messages can be edited or deleted for 900 seconds after they are sent",
            )
            late_delete = await http.delete(message_url(chat, sent["id"]), headers=chat.ada)
            assert late_delete.status_code == 409
            assert await rows(clean_db, "SELECT content, deleted_at FROM message WHERE id = :id", id=sent["id"]) == [
                {"content": "Yes, until it ships on Monday.", "deleted_at": None}
            ]
            assert (telegram_api.calls, slack_api.calls) == ([], [])
            with pytest.raises(TimeoutError):
                await next_event(socket, wait=QUIET)
            changes = await rows(clean_db, "SELECT kind FROM event WHERE kind IN ('message.edited', 'message.deleted')")
            assert changes == [{"kind": "message.edited"}]


async def test_a_deletion_reaches_the_widget_and_the_chats_and_only_the_author_may_change_a_message(
    bridged: Settings, clean_db: AsyncEngine, telegram_api: TelegramStandIn, slack_api: SlackStandIn
) -> None:
    async with run_api(bridged) as api, api.client() as http:
        chat = await ada_holds_a_conversation(clean_db, http, bridged, api)
        sent = await reply(http, chat, "Your order number is 4711.")
        await work(bridged, api)  # a worker posts to the chats
        [posted] = [c for c in telegram_api.calls_to("sendMessage") if "4711" in c.body["text"]]
        [slack_posted] = [c for c in slack_api.calls_to("chat.postMessage") if "4711" in c.body["text"]]
        url = message_url(chat, sent["id"])

        # Someone else's message: another operator of the team (even its lead) 403, another team's 404.
        for caller in (chat.bob, chat.lead):
            response = await http.patch(url, json={"content": "mine now"}, headers=caller)
            assert (response.status_code, response.json()["detail"]) == (
                403,
                "Only the operator who sent a message may edit or delete it",
            )
            assert (await http.delete(url, headers=caller)).status_code == 403
        assert (await http.patch(url, json={"content": "x"}, headers=chat.outsider)).status_code == 404
        assert (await http.delete(url, headers=chat.outsider)).status_code == 404
        # The visitor's message is nobody's to change here; an unknown one is 404; blank text names the field.
        [visitors] = await rows(clean_db, "SELECT id FROM message WHERE sender = 'visitor'")
        response = await http.patch(message_url(chat, visitors["id"]), json={"content": "x"}, headers=chat.ada)
        assert response.status_code == 403
        assert (await http.delete(message_url(chat, "no-such-message"), headers=chat.ada)).status_code == 404
        blank = await http.patch(url, json={"content": "   "}, headers=chat.ada)
        assert (blank.status_code, [e["field"] for e in blank.json()["errors"]]) == (400, ["content"])
        assert await rows(clean_db, "SELECT content, edited_at FROM message WHERE id = :id", id=sent["id"]) == [
            {"content": "Your order number is 4711.", "edited_at": None}
        ]

        telegram_api.clear()
        slack_api.clear()
        async with websockets.connect(f"{api.ws_url}/pocketping/stream?sessionId={chat.session_id}") as socket:
            response = await http.delete(url, headers=chat.ada)
            assert response.status_code == 200, response.text
            assert response.json()["deletedAt"] is not None
            event = await next_event(socket)
            assert event == {
                "type": "message_deleted",
                "data": {"messageId": sent["id"], "deletedAt": event["data"]["deletedAt"]},
            }
        # Soft-deleted as the SDK does it: the row stays, with deletedAt, and the widget reads it so.
        [stored] = await rows(clean_db, "SELECT content, deleted_at FROM message WHERE id = :id", id=sent["id"])
        assert (stored["content"], stored["deleted_at"].isoformat()) == (
            "Your order number is 4711.",
            event["data"]["deletedAt"],
        )
        page = (await http.get("/pocketping/messages", params={"sessionId": chat.session_id})).json()
        assert [m["deletedAt"] is not None for m in page["messages"] if m["id"] == sent["id"]] == [True]
        await work(bridged, api)
        [telegram_delete] = telegram_api.calls_to("deleteMessage")
        assert telegram_delete.body == {"chat_id": CHAT, "message_id": posted.response["result"]["message_id"]}
        [slack_delete] = slack_api.calls_to("chat.delete")
        assert slack_delete.body == {"channel": CHANNEL, "ts": slack_posted.response["ts"]}
        again = await http.delete(url, headers=chat.ada)
        assert (again.status_code, again.json()["detail"]) == (409, "The message is deleted")

        # A team that allows no changes (window 0): refused at once.
        response = await http.patch(
            f"/api/v1/teams/{chat.team_id}", json={"messageEditWindowSeconds": 0}, headers=chat.lead
        )
        assert (response.status_code, response.json()["messageEditWindowSeconds"]) == (200, 0)
        fresh = await reply(http, chat, "Anything else?")
        response = await http.patch(message_url(chat, fresh["id"]), json={"content": "More?"}, headers=chat.ada)
        assert (response.status_code, response.json()["detail"]) == (
            409,
            "This team does not let operators edit or delete sent messages",
        )
        bad = await http.patch(
            f"/api/v1/teams/{chat.team_id}", json={"messageEditWindowSeconds": -1}, headers=chat.lead
        )
        assert (bad.status_code, [e["field"] for e in bad.json()["errors"]]) == (400, ["messageEditWindowSeconds"])
