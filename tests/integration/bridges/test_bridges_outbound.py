"""Outbound bridges: PocketPing's real Telegram/Slack/Discord bridges, per team, against loopback stand-ins.

Real api (uvicorn), real arq workers, real PostgreSQL and Redis, the real widget protocol; only the
chat platforms are stand-ins (tests/standins), recording every call.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from service.bridges.notify import BridgeRelay
from service.db.models import BridgeLink
from service.events import record_event
from service.settings import Settings
from service.teams.leads import tell_leads
from tests.conftest import RunningApi, run_api
from tests.factories import add_member, bearer, make_operator, make_team, personal_token
from tests.integration.workers.test_worker import run_burst
from tests.standins import DiscordStandIn, SlackStandIn, TelegramStandIn
from tests.support.routing import rows, set_values

TOKEN_A = "111111:team-a-telegram-bot-token"
TOKEN_B = "222222:team-b-telegram-bot-token"
SLACK_TOKEN = "xoxb-team-a-slack-bot-token"
SLACK_SIGNING = "team-a-slack-signing-secret"
DISCORD_TOKEN = "team-a-discord-bot-token.XYZ"
CHAT_A, CHAT_B = "-1001000000001", "-1001000000002"
SLACK_CHANNEL = "C0TEAMA01"
DISCORD_CHANNEL = "300000000000000001"


@dataclass
class Platforms:
    telegram: TelegramStandIn
    slack: SlackStandIn
    discord: DiscordStandIn


@pytest.fixture
def bridged(
    settings: Settings, telegram_api: TelegramStandIn, slack_api: SlackStandIn, discord_api: DiscordStandIn
) -> Settings:
    """The test's settings with every platform API pointed at its stand-in."""
    return settings.model_copy(
        update={
            "telegram_api_base": telegram_api.base_url,
            "slack_api_base": slack_api.base_url,
            "discord_api_base": discord_api.base_url,
        }
    )


@pytest.fixture
def platforms(telegram_api: TelegramStandIn, slack_api: SlackStandIn, discord_api: DiscordStandIn) -> Platforms:
    return Platforms(telegram_api, slack_api, discord_api)


@pytest.fixture
async def bridged_api(bridged: Settings) -> AsyncIterator[RunningApi]:
    async with run_api(bridged) as running:
        yield running


async def member(
    engine: AsyncEngine, name: str, team_id: uuid.UUID, role: str = "operator", **operator: Any
) -> tuple[uuid.UUID, dict[str, str]]:
    operator_id = await make_operator(engine, name, **operator)
    await add_member(engine, team_id, operator_id, role)
    return operator_id, bearer(await personal_token(engine, operator_id))


async def link(engine: AsyncEngine, operator_id: uuid.UUID, platform: str, user: str, chat: str | None) -> None:
    async with engine.begin() as conn:
        await conn.execute(
            BridgeLink.__table__.insert().values(  # type: ignore[attr-defined]
                id=uuid.uuid4(), operator_id=operator_id, platform=platform, external_user_id=user, direct_chat_id=chat
            )
        )


async def configure(http: httpx.AsyncClient, team_id: uuid.UUID, auth: dict[str, str], body: dict[str, Any]) -> Any:
    response = await http.patch(f"/api/v1/teams/{team_id}/bridges", json=body, headers=auth)
    assert response.status_code == 200, response.text
    return response


async def visitor(http: httpx.AsyncClient, name: str, url: str, text: str) -> str:
    connect = await http.post(
        "/pocketping/connect",
        json={"visitorId": f"v-{name}", "metadata": {"url": url}, "identity": {"id": name, "name": name}},
    )
    session_id = str(connect.json()["sessionId"])
    await say(http, session_id, text)
    return session_id


async def say(http: httpx.AsyncClient, session_id: str, text: str) -> None:
    response = await http.post(
        "/pocketping/message", json={"sessionId": session_id, "content": text, "sender": "visitor"}
    )
    assert response.status_code == 200, response.text


async def work(settings: Settings, api: RunningApi) -> None:
    """Route what waits, relay the new events to bridge work, and do that work (as the worker's loops do)."""
    assert (await run_burst(settings, cron_jobs=[])).jobs_failed == 0
    engine = api.app.state.engine
    relay = BridgeRelay(engine, api.app.state.redis, settings)
    [latest] = await rows(engine, "SELECT coalesce(max(id), 0) AS id FROM event")
    # A step stops at an event id not yet committed until it settles, so steps run as the worker's loop runs them.
    while await relay.step() or (await rows(engine, RELAYED))[0]["id"] < latest["id"]:  # noqa: ASYNC110
        await asyncio.sleep(0.05)
    assert (await run_burst(settings, cron_jobs=[])).jobs_failed == 0


RELAYED = "SELECT coalesce((SELECT last_id FROM event_cursor WHERE name = 'bridges'), 0) AS id"


def texts(calls: list[Any]) -> list[str]:
    return [str(call.body.get("text", "")) for call in calls]


async def two_teams(engine: AsyncEngine) -> dict[str, Any]:
    """Team A (default) with Ada (online) and Bob (away), team B with Carl (online), every one linked on Telegram."""
    team_a = await make_team(engine, "Alpha", is_default=True, routing_policy="round_robin")
    team_b = await make_team(engine, "Beta", routing_policy="round_robin")
    lead_a, lead_a_auth = await member(engine, "Lena", team_a, "lead", status="offline")
    _, lead_b_auth = await member(engine, "Lars", team_b, "lead", status="offline")
    ada, _ = await member(engine, "Ada", team_a, status="online", email="ada@example.test")
    bob, _ = await member(engine, "Bob", team_a, status="away", email="bob@example.test")
    carl, _ = await member(engine, "Carl", team_b, status="online", email="carl@example.test")
    for operator_id, telegram_user in ((ada, "5001"), (bob, "5002"), (carl, "5003"), (lead_a, "5004")):
        await link(engine, operator_id, "telegram", telegram_user, telegram_user)
    await link(engine, ada, "slack", "UADA0001", None)
    return {
        "a": team_a,
        "b": team_b,
        "lead_a": lead_a_auth,
        "lead_b": lead_b_auth,
        "ada": ada,
        "bob": bob,
        "carl": carl,
    }


async def test_an_assignment_notifies_only_the_assignee_and_posts_in_the_teams_thread(
    bridged_api: RunningApi, bridged: Settings, platforms: Platforms, clean_db: AsyncEngine
) -> None:
    people = await two_teams(clean_db)
    async with bridged_api.client() as http:
        await configure(
            http,
            people["a"],
            people["lead_a"],
            {
                "telegram": {"enabled": True, "chatId": CHAT_A, "botToken": TOKEN_A},
                "slack": {
                    "enabled": True,
                    "channelId": SLACK_CHANNEL,
                    "botToken": SLACK_TOKEN,
                    "signingSecret": SLACK_SIGNING,
                },
            },
        )
        await configure(
            http, people["b"], people["lead_b"], {"telegram": {"enabled": True, "chatId": CHAT_B, "botToken": TOKEN_B}}
        )
        session_id = await visitor(http, "Vera", "https://shop.example/pricing", "Is there a student discount?")
        await work(bridged, bridged_api)
        [conversation] = await rows(clean_db, "SELECT assignee_id, team_id FROM conversation")
        assert (conversation["team_id"], conversation["assignee_id"]) == (people["a"], people["ada"])

        # Telegram: a forum topic in team A's group, the new-session card and the message in it.
        [topic] = platforms.telegram.calls_to("createForumTopic")
        assert (topic.token, topic.body["chat_id"], topic.body["name"]) == (
            TOKEN_A,
            CHAT_A,
            "Vera · https://shop.example/pricing",
        )
        thread = topic.response["result"]["message_thread_id"]
        in_topic = [c for c in platforms.telegram.calls_to("sendMessage") if c.body.get("message_thread_id") == thread]
        assert [c.body["chat_id"] for c in in_topic] == [CHAT_A, CHAT_A]
        assert "New chat session" in in_topic[0].body["text"]
        assert "Is there a student discount?" in in_topic[1].body["text"]
        # The assignee alone is told, in her linked private chat, with visitor, page and last message.
        direct = [c for c in platforms.telegram.calls_to("sendMessage") if "message_thread_id" not in c.body]
        assert [(c.token, c.body["chat_id"]) for c in direct] == [(TOKEN_A, "5001")]
        assert direct[0].body["text"] == (
            "New conversation assigned to you\nVisitor: Vera\nPage: https://shop.example/pricing\n"
            f"Last message: Is there a student discount?\nOpen: http://127.0.0.1:8000/app/conversations/{session_id}"
        )
        assert all(call.token == TOKEN_A for call in platforms.telegram.calls)  # team B's bot said nothing
        # Slack: the DM channel is opened (and stored) because Ada's link had none; the thread in the channel.
        [opened] = platforms.slack.calls_to("conversations.open")
        assert opened.body == {"users": "UADA0001"}
        posts = platforms.slack.calls_to("chat.postMessage")
        root = next(c for c in posts if c.body["channel"] == SLACK_CHANNEL and "thread_ts" not in c.body)
        assert [c.body["channel"] for c in posts if c.body.get("thread_ts") == root.response["ts"]] == [SLACK_CHANNEL]
        [dm] = [c for c in posts if c.body["channel"] == "DUADA0001"]
        assert dm.body["text"].startswith("New conversation assigned to you\nVisitor: Vera")
        [stored] = await rows(clean_db, "SELECT direct_chat_id FROM bridge_link WHERE platform = 'slack'")
        assert stored["direct_chat_id"] == "DUADA0001"
        threads = await rows(clean_db, "SELECT platform, thread_ref, team_id FROM bridge_thread ORDER BY platform")
        assert threads == [
            {"platform": "slack", "thread_ref": root.response["ts"], "team_id": people["a"]},
            {"platform": "telegram", "thread_ref": str(thread), "team_id": people["a"]},
        ]

        # Later visitor messages go into the topic and the thread (posted by a worker), once each, ids stored.
        platforms.telegram.clear()
        platforms.slack.clear()
        await say(http, session_id, "Hello?")
        await work(bridged, bridged_api)
        [sent] = platforms.telegram.calls_to("sendMessage")
        assert (sent.token, sent.body["chat_id"], sent.body["message_thread_id"]) == (TOKEN_A, CHAT_A, thread)
        [slack_sent] = platforms.slack.calls_to("chat.postMessage")
        assert slack_sent.body["thread_ts"] == root.response["ts"]
        [ids] = await rows(
            clean_db, "SELECT telegram_message_id, slack_message_ts FROM message WHERE content = 'Hello?'"
        )
        assert ids == {
            "telegram_message_id": sent.response["result"]["message_id"],
            "slack_message_ts": slack_sent.response["ts"],
        }
        # The work was done once: relaying and delivering again sends nothing more.
        await work(bridged, bridged_api)
        assert len(platforms.telegram.calls) == 1 and len(platforms.slack.calls) == 1

        # The visitor edits, then deletes it: each platform's copy follows.
        [hello] = await rows(clean_db, "SELECT id FROM message WHERE content = 'Hello?'")
        response = await http.patch(
            f"/pocketping/message/{hello['id']}", json={"sessionId": session_id, "content": "Hello??"}
        )
        assert response.status_code == 200, response.text
        await work(bridged, bridged_api)
        [edit] = platforms.telegram.calls_to("editMessageText")
        assert (edit.body["chat_id"], edit.body["message_id"]) == (CHAT_A, sent.response["result"]["message_id"])
        assert "Hello??" in edit.body["text"]
        [update] = platforms.slack.calls_to("chat.update")
        assert (update.body["channel"], update.body["ts"]) == (SLACK_CHANNEL, slack_sent.response["ts"])
        response = await http.delete(f"/pocketping/message/{hello['id']}", params={"sessionId": session_id})
        assert response.status_code == 200, response.text
        await work(bridged, bridged_api)
        [deleted] = platforms.telegram.calls_to("deleteMessage")
        assert deleted.body == {"chat_id": CHAT_A, "message_id": sent.response["result"]["message_id"]}
        [slack_deleted] = platforms.slack.calls_to("chat.delete")
        assert slack_deleted.body == {"channel": SLACK_CHANNEL, "ts": slack_sent.response["ts"]}


def chats(telegram: TelegramStandIn) -> list[tuple[str | None, str, Any]]:
    """Every Telegram message sent: (bot token, chat, topic)."""
    return [(c.token, c.body["chat_id"], c.body.get("message_thread_id")) for c in telegram.calls_to("sendMessage")]


async def test_each_conversation_reaches_its_current_teams_chat_only(
    bridged_api: RunningApi, bridged: Settings, platforms: Platforms, clean_db: AsyncEngine
) -> None:
    people = await two_teams(clean_db)
    async with bridged_api.client() as http:
        await configure(
            http, people["a"], people["lead_a"], {"telegram": {"enabled": True, "chatId": CHAT_A, "botToken": TOKEN_A}}
        )
        await configure(
            http, people["b"], people["lead_b"], {"telegram": {"enabled": True, "chatId": CHAT_B, "botToken": TOKEN_B}}
        )
        rules = {"rules": [{"name": "German", "conditions": {"language": "de"}}]}
        response = await http.put(f"/api/v1/teams/{people['b']}/rules", json=rules, headers=people["lead_b"])
        assert response.status_code == 200, response.text
        for_a = await visitor(http, "Anna", "https://shop.example/a", "Hello from A")
        connect = await http.post("/pocketping/connect", json={"visitorId": "v-bernd", "metadata": {"language": "de"}})
        for_b = str(connect.json()["sessionId"])
        await say(http, for_b, "Hallo von B")
        await work(bridged, bridged_api)
        topics = {
            c.token: c.response["result"]["message_thread_id"] for c in platforms.telegram.calls_to("createForumTopic")
        }
        assert sorted(c.body["chat_id"] for c in platforms.telegram.calls_to("createForumTopic")) == [CHAT_A, CHAT_B]

        platforms.telegram.clear()
        await say(http, for_a, "Second from A")
        await say(http, for_b, "Zweite von B")
        await work(bridged, bridged_api)  # a worker posts, in order per conversation
        # Two conversations, two workers' jobs: in either order.
        expected = [(TOKEN_A, CHAT_A, topics[TOKEN_A]), (TOKEN_B, CHAT_B, topics[TOKEN_B])]
        assert sorted(chats(platforms.telegram)) == expected
        by_token = {c.token: str(c.body.get("text", "")) for c in platforms.telegram.calls}
        assert ("Second from A" in by_token[TOKEN_A], "Zweite von B" in by_token[TOKEN_B]) == (True, True)

        # Moved to team A: a topic opens in A's group with the messages so far; B's group hears nothing more.
        lead_b = people["lead_b"]
        response = await http.post(
            f"/api/v1/conversations/{for_b}/transfer", json={"teamId": str(people["a"])}, headers=lead_b
        )
        assert response.status_code == 200, response.text
        await work(bridged, bridged_api)
        platforms.telegram.clear()
        await say(http, for_b, "Dritte")
        await work(bridged, bridged_api)
        [(token, chat, topic)] = chats(platforms.telegram)
        assert (token, chat) == (TOKEN_A, CHAT_A) and topic not in topics.values()


async def test_changed_settings_are_followed_without_a_restart(
    bridged_api: RunningApi, bridged: Settings, platforms: Platforms, clean_db: AsyncEngine
) -> None:
    people = await two_teams(clean_db)
    async with bridged_api.client() as http:
        settings_a = {"telegram": {"enabled": True, "chatId": CHAT_A, "botToken": TOKEN_A}}
        await configure(http, people["a"], people["lead_a"], settings_a)
        session_id = await visitor(http, "Vera", "https://shop.example/", "First")
        await work(bridged, bridged_api)
        assert {c.body["chat_id"] for c in platforms.telegram.calls_to("sendMessage")} == {CHAT_A, "5001"}

        # A new group and a new bot: the running api (and worker) use them from the next message on.
        new_token, new_chat = "333333:replacement-telegram-token", "-1001000000009"
        settings_a = {"telegram": {"enabled": True, "chatId": new_chat, "botToken": new_token}}
        await configure(http, people["a"], people["lead_a"], settings_a)
        platforms.telegram.clear()
        await say(http, session_id, "Second")
        await work(bridged, bridged_api)
        [topic] = platforms.telegram.calls_to("createForumTopic")
        assert (topic.token, topic.body["chat_id"]) == (new_token, new_chat)
        thread = topic.response["result"]["message_thread_id"]
        assert chats(platforms.telegram) == [(new_token, new_chat, thread), (new_token, new_chat, thread)]
        assert "Second" in texts(platforms.telegram.calls_to("sendMessage"))[1]

        # Disabled: nothing is sent any more.
        await configure(http, people["a"], people["lead_a"], {"telegram": {"enabled": False}})
        platforms.telegram.clear()
        await say(http, session_id, "Third")
        await work(bridged, bridged_api)
        assert platforms.telegram.calls == []


async def test_operator_replies_are_mirrored_to_the_other_bridges_never_back_to_their_source(
    bridged_api: RunningApi, bridged: Settings, platforms: Platforms, clean_db: AsyncEngine
) -> None:
    people = await two_teams(clean_db)
    async with bridged_api.client() as http:
        body = {
            "telegram": {"enabled": True, "chatId": CHAT_A, "botToken": TOKEN_A},
            "discord": {"enabled": True, "channelId": DISCORD_CHANNEL, "botToken": DISCORD_TOKEN},
        }
        await configure(http, people["a"], people["lead_a"], body)
        session_id = await visitor(http, "Vera", "https://shop.example/", "Anyone there?")
        await work(bridged, bridged_api)
        [thread] = platforms.discord.calls_to("POST /channels/{id}/threads")
        assert thread.path.endswith(f"/channels/{DISCORD_CHANNEL}/threads") and thread.token == DISCORD_TOKEN
        discord_thread = thread.response["id"]
        # An edit reaches the copy in the thread (the message lives in the thread's channel).
        [question] = await rows(clean_db, "SELECT id, discord_message_id FROM message WHERE content = 'Anyone there?'")
        edited = {"sessionId": session_id, "content": "Anyone there at all?"}
        assert (await http.patch(f"/pocketping/message/{question['id']}", json=edited)).status_code == 200
        await work(bridged, bridged_api)
        [patched] = platforms.discord.calls_to("PATCH /channels/{id}/messages/{id}")
        assert patched.path.endswith(f"/channels/{discord_thread}/messages/{question['discord_message_id']}")
        platforms.telegram.clear()
        platforms.discord.clear()

        # A reply from the dashboard (through the worker): both chats show it, attributed.
        ada_auth = bearer(await personal_token(clean_db, people["ada"]))
        response = await http.post(
            f"/api/v1/conversations/{session_id}/messages", json={"content": "Yes, Ada here"}, headers=ada_auth
        )
        assert response.status_code == 201, response.text
        assert (await run_burst(bridged, cron_jobs=[])).jobs_failed == 0
        [telegram_post] = platforms.telegram.calls_to("sendMessage")
        assert "Ada" in telegram_post.body["text"] and "Yes, Ada here" in telegram_post.body["text"]
        [discord_post] = platforms.discord.calls_to("POST /channels/{id}/messages")
        assert discord_post.path.endswith(f"/channels/{discord_thread}/messages")
        assert discord_post.body["embeds"][0]["description"] == "Yes, Ada here"

        # A reply that came from Telegram (as the inbound webhook sends it): Discord only.
        platforms.telegram.clear()
        platforms.discord.clear()
        pocketping = bridged_api.app.state.pocketping
        await pocketping.send_as_operator(
            session_id, "From my phone", operator_id=people["ada"], operator_name="Ada", source_bridge="telegram"
        )
        await work(bridged, bridged_api)
        assert platforms.telegram.calls == []
        [mirrored] = platforms.discord.calls_to("POST /channels/{id}/messages")
        assert mirrored.body["embeds"][0]["author"]["name"] == "Ada via telegram"


async def test_mentions_reach_the_mentioned_operator_and_long_queues_the_team_channel(
    bridged_api: RunningApi, bridged: Settings, platforms: Platforms, clean_db: AsyncEngine
) -> None:
    people = await two_teams(clean_db)
    await set_values(clean_db, "team", {"id": people["a"]}, routing_policy="manual")
    async with bridged_api.client() as http:
        await configure(
            http, people["a"], people["lead_a"], {"telegram": {"enabled": True, "chatId": CHAT_A, "botToken": TOKEN_A}}
        )
        response = await http.patch(
            f"/api/v1/teams/{people['a']}", json={"queueAlertThreshold": 2}, headers=people["lead_a"]
        )
        assert response.json()["queueAlertThreshold"] == 2
        sessions = [await visitor(http, f"V{i}", "https://shop.example/", f"Question {i}") for i in range(4)]
        await work(bridged, bridged_api)
        general = [c for c in platforms.telegram.calls_to("sendMessage") if "message_thread_id" not in c.body]
        # Three and four waiting are both above 2; one alert (at most one per ten minutes).
        assert [(c.body["chat_id"], c.body["text"]) for c in general] == [
            (CHAT_A, "Queue alert: 4 conversations waiting in Alpha (alert above 2)")
        ]

        platforms.telegram.clear()
        ada_auth = bearer(await personal_token(clean_db, people["ada"]))
        note = {"body": "@bob can you take this one? @carl is in another team"}
        response = await http.post(f"/api/v1/conversations/{sessions[0]}/notes", json=note, headers=ada_auth)
        assert response.status_code == 201, response.text
        await work(bridged, bridged_api)
        [told] = platforms.telegram.calls_to("sendMessage")
        assert (told.token, told.body["chat_id"]) == (TOKEN_A, "5002")
        assert told.body["text"].startswith("Ada mentioned you in a note\nVisitor: V0")
        *_, note_line, link_line = told.body["text"].split("\n")
        assert note_line == "Note: @bob can you take this one? @carl is in another team"
        assert link_line == f"Open: http://127.0.0.1:8000/app/conversations/{sessions[0]}"


async def test_a_webhook_disabled_for_failing_is_told_in_the_teams_channel(
    bridged_api: RunningApi, bridged: Settings, platforms: Platforms, clean_db: AsyncEngine
) -> None:
    people = await two_teams(clean_db)
    async with bridged_api.client() as http:
        await configure(
            http, people["a"], people["lead_a"], {"telegram": {"enabled": True, "chatId": CHAT_A, "botToken": TOKEN_A}}
        )
        reason = "every delivery failed since 2026-12-01T00:00:00+00:00; last: HTTP 500: nope"
        async with clean_db.begin() as conn:
            data = {"webhookId": "w-1", "url": "https://hooks.example/x", "reason": reason}
            await record_event(conn, "webhook.disabled", team_id=people["a"], data=data)
        await work(bridged, bridged_api)
    assert [(c.body["chat_id"], c.body["text"]) for c in platforms.telegram.calls_to("sendMessage")] == [
        (CHAT_A, f"Webhook disabled: https://hooks.example/x\n{reason}\nA team lead can enable it again.")
    ]


async def test_outbound_secrets_appear_in_no_response_log_or_error(
    bridged: Settings, platforms: Platforms, clean_db: AsyncEngine, capfd: pytest.CaptureFixture[str]
) -> None:
    # Refused notices are retried until given up: quickly here, so each burst of the worker ends soon.
    debug = bridged.model_copy(update={"log_level": "DEBUG", "outbox_retry_base_seconds": 0.001})
    secrets = (TOKEN_A, SLACK_TOKEN, SLACK_SIGNING, DISCORD_TOKEN)
    people = await two_teams(clean_db)
    await link(clean_db, people["ada"], "discord", "400000000000000001", None)
    async with run_api(debug) as api, api.client() as http:
        body = {
            "telegram": {"enabled": True, "chatId": CHAT_A, "botToken": TOKEN_A},
            "slack": {
                "enabled": True,
                "channelId": SLACK_CHANNEL,
                "botToken": SLACK_TOKEN,
                "signingSecret": SLACK_SIGNING,
            },
            "discord": {"enabled": True, "channelId": DISCORD_CHANNEL, "botToken": DISCORD_TOKEN},
        }
        responses = [await configure(http, people["a"], people["lead_a"], body)]
        session_id = await visitor(http, "Vera", "https://shop.example/", "Hello")
        await work(debug, api)
        assert {c.token for c in platforms.telegram.calls} == {TOKEN_A} and platforms.discord.calls
        ada_auth = bearer(await personal_token(clean_db, people["ada"]))
        responses.append(
            await http.post(f"/api/v1/conversations/{session_id}/messages", json={"content": "Hi"}, headers=ada_auth)
        )
        assert (await run_burst(debug, cron_jobs=[])).jobs_failed == 0
        # Every platform refuses from now on: hooks, a new thread and the assignee's notice all fail, and say so.
        for platform, name, status, answer in (
            (platforms.telegram, "sendMessage", 401, {"ok": False, "error_code": 401, "description": "Unauthorized"}),
            (
                platforms.telegram,
                "createForumTopic",
                401,
                {"ok": False, "error_code": 401, "description": "Unauthorized"},
            ),
            (platforms.slack, "chat.postMessage", 200, {"ok": False, "error": "invalid_auth"}),
            (platforms.discord, "POST /channels/{id}/messages", 401, {"message": "401: Unauthorized", "code": 0}),
            (platforms.discord, "POST /channels/{id}/threads", 401, {"message": "401: Unauthorized", "code": 0}),
        ):
            platform.fail(name, status, answer)
        await say(http, session_id, "Still there?")
        await set_values(clean_db, "conversation", {"id": session_id}, status="closed", assignee_id=None)
        await set_values(clean_db, "operator", {"id": people["ada"]}, open_conversations=0)
        await visitor(http, "Walt", "https://shop.example/", "Second visitor")
        await work(debug, api)
        for path in (f"/api/v1/teams/{people['a']}", f"/api/v1/teams/{people['a']}/bridges", "/api/v1/teams"):
            responses.append(await http.get(path, headers=people["lead_a"]))
    out, err = capfd.readouterr()
    logged = out + err
    assert "bridge thread not opened" in logged and "outbox delivery failed" in logged
    errors = await rows(clean_db, "SELECT last_error FROM outbox WHERE last_error IS NOT NULL")
    assert errors, "the failing notice is recorded"
    for secret in secrets:
        assert secret not in logged
        assert [r.request.url.path for r in responses if secret in r.text or secret in str(r.headers)] == []
        assert all(secret not in e["last_error"] for e in errors)


async def test_leads_told_of_a_conversation_get_a_direct_message_where_linked(
    bridged_api: RunningApi, bridged: Settings, platforms: Platforms, clean_db: AsyncEngine
) -> None:
    people = await two_teams(clean_db)
    async with bridged_api.client() as http:
        await configure(
            http, people["a"], people["lead_a"], {"telegram": {"enabled": True, "chatId": CHAT_A, "botToken": TOKEN_A}}
        )
        session_id = await visitor(http, "Vera", "https://shop.example/", "Anyone there?")
        await work(bridged, bridged_api)
        platforms.telegram.clear()
        async with clean_db.begin() as conn:
            leads = await tell_leads(conn, people["a"], session_id, reason="sla_first_response_breached")
        await work(bridged, bridged_api)
    [lena] = [r["id"] for r in await rows(clean_db, "SELECT id FROM operator WHERE display_name = 'Lena'")]
    assert leads == [lena]
    # Lena (linked on Telegram as 5004) hears of it in her direct chat; the team's channel and members do not.
    assert [(c.token, c.body["chat_id"], c.body["text"]) for c in platforms.telegram.calls_to("sendMessage")] == [
        (
            TOKEN_A,
            "5004",
            "SLA breached: first response\nVisitor: Vera\nPage: https://shop.example/\nLast message: Anyone there?\n"
            f"Open: http://127.0.0.1:8000/app/conversations/{session_id}",
        )
    ]
