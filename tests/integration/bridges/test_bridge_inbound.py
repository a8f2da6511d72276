"""Inbound bridge webhooks over real HTTP: signatures first, replies attributed to linked operators, commands, links."""

from __future__ import annotations

import io
import json
import logging
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

import httpx
import pytest
import sqlalchemy as sa
import websockets
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy.ext.asyncio import AsyncEngine

from service.bridges import inbound
from service.db.models import BridgeLink, BridgeThread
from service.settings import Settings
from tests.conftest import RunningApi, run_api
from tests.factories import add_member, bearer, make_operator, make_team, personal_token
from tests.integration.realtime.test_fanout import received
from tests.integration.workers.test_worker import run_burst
from tests.standins import DiscordStandIn, SlackStandIn, TelegramStandIn
from tests.support.bridges import (
    DISCORD_BOT_TOKEN,
    DISCORD_CHANNEL_ID,
    DISCORD_PUBLIC_KEY,
    SECRETS,
    SLACK_BOT_TOKEN,
    SLACK_CHANNEL_ID,
    SLACK_SIGNING_SECRET,
    TELEGRAM_BOT_TOKEN,
    TELEGRAM_CHAT_ID,
    TELEGRAM_WEBHOOK_SECRET,
    bridge_settings,
    discord_command,
    discord_interaction,
    slack_event,
    slack_post,
    telegram_message,
    telegram_update,
)
from tests.support.routing import rows, set_values, state

# Each operator's account on each platform.
ACCOUNTS = {
    "ana": {"telegram": "7001", "slack": "U0ANA0001", "discord": "200000000000000001"},
    "ben": {"telegram": "7002", "slack": "U0BEN0002", "discord": "200000000000000002"},
}
STRANGER = {"telegram": "7999", "slack": "U0NOBODY9", "discord": "200000000000000999"}
# Where the conversation lives in the team's chats.
THREADS = {"telegram": "42", "slack": "1800000000.000001", "discord": "300000000000000001"}
# Every table an inbound webhook could write to.
FORM = "application/x-www-form-urlencoded"
WRITTEN = ("message", "bridge_link", "event", "audit_event", "assignment", "conversation")


@dataclass
class Desk:
    """A team with all three bridges, Ana and Ben linked on each platform, and a live widget session."""

    team_id: uuid.UUID
    ids: dict[str, uuid.UUID]
    headers: dict[str, dict[str, str]]
    session_id: str


async def link(engine: AsyncEngine, operator_id: uuid.UUID, platform: str, external_id: str) -> None:
    async with engine.begin() as conn:
        await conn.execute(
            sa.insert(BridgeLink.__table__).values(  # type: ignore[attr-defined]
                operator_id=operator_id, platform=platform, external_user_id=external_id
            )
        )


@pytest.fixture
async def api(
    settings: Settings, telegram_api: TelegramStandIn, slack_api: SlackStandIn, discord_api: DiscordStandIn
) -> AsyncIterator[RunningApi]:
    """The api with the platform APIs pointed at their loopback stand-ins (the team bridges mirror replies there)."""
    bases = {
        "telegram_api_base": telegram_api.base_url,
        "slack_api_base": slack_api.base_url,
        "discord_api_base": discord_api.base_url,
    }
    async with run_api(settings.model_copy(update=bases)) as running:
        yield running


@pytest.fixture
async def desk(http: httpx.AsyncClient, clean_db: AsyncEngine, settings: Settings) -> Desk:
    return await make_desk(http, clean_db, settings)


async def make_desk(http: httpx.AsyncClient, clean_db: AsyncEngine, settings: Settings) -> Desk:
    team_id = await make_team(clean_db, "Support", bridge_settings=bridge_settings(settings.secret_key))
    ids, headers = {}, {}
    for name in ACCOUNTS:
        ids[name] = await make_operator(clean_db, name.title(), email=f"{name}@example.test", status="online")
        await add_member(clean_db, team_id, ids[name])
        headers[name] = bearer(await personal_token(clean_db, ids[name]))
        for platform, external_id in ACCOUNTS[name].items():
            await link(clean_db, ids[name], platform, external_id)
    response = await http.post("/pocketping/connect", json={"visitorId": "v-bridge"})
    session_id = response.json()["sessionId"]
    await set_values(clean_db, "conversation", {"id": session_id}, team_id=team_id)
    async with clean_db.begin() as conn:
        for platform, ref in THREADS.items():
            await conn.execute(
                sa.insert(BridgeThread.__table__).values(  # type: ignore[attr-defined]
                    conversation_id=session_id, team_id=team_id, platform=platform, thread_ref=ref
                )
            )
    return Desk(team_id, ids, headers, session_id)


async def assign(engine: AsyncEngine, desk: Desk, name: str) -> None:
    await set_values(engine, "conversation", {"id": desk.session_id}, status="assigned", assignee_id=desk.ids[name])


async def counts(engine: AsyncEngine) -> dict[str, int]:
    return {table: (await rows(engine, f"SELECT count(*) AS n FROM {table}"))[0]["n"] for table in WRITTEN}


def discord_content(response: httpx.Response) -> str:
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    assert (body["type"], body["data"]["flags"]) == (4, 64)
    return str(body["data"]["content"])


# --- Signatures -------------------------------------------------------------------------------------------------


async def test_unverifiable_webhooks_are_401_and_change_nothing(
    api: RunningApi, http: httpx.AsyncClient, clean_db: AsyncEngine, desk: Desk
) -> None:
    await assign(clean_db, desk, "ana")
    before = await counts(clean_db)
    reply = telegram_message(int(ACCOUNTS["ana"]["telegram"]), "Hello from Telegram", topic=42)
    slack_reply = slack_event(ACCOUNTS["ana"]["slack"], "Hello from Slack", thread_ts=THREADS["slack"])
    discord_reply = discord_command(
        ACCOUNTS["ana"]["discord"], "reply", ("message", "Hi"), channel_id=THREADS["discord"]
    )
    async with websockets.connect(f"{api.ws_url}/pocketping/stream?sessionId={desk.session_id}") as socket:
        refused = [
            await telegram_update(http, desk.team_id, reply, secret="tg_wrong_secret_0000"),
            await telegram_update(http, desk.team_id, reply, secret=None),
            await slack_post(http, desk.team_id, slack_reply, secret="not-the-signing-secret"),
            await slack_post(http, desk.team_id, slack_reply, timestamp=int(time.time()) - 301),
            await discord_interaction(http, desk.team_id, discord_reply, key=Ed25519PrivateKey.generate()),
            # A body changed after signing.
            await http.post(
                f"/bridges/slack/{desk.team_id}",
                content=slack_reply.replace(b"Hello", b"Jello"),
                headers=(await _signed_slack_headers(slack_reply)),
            ),
            # A team that does not exist, or has no such bridge, is refused the same way.
            await telegram_update(http, uuid.uuid4(), reply),
        ]
        assert [r.status_code for r in refused] == [401] * len(refused)
        for response in refused:
            assert response.headers["content-type"] == "application/problem+json"
            assert response.json()["detail"] == "The request's signature could not be verified"
        assert await received(socket) == []
    assert await counts(clean_db) == before


async def _signed_slack_headers(body: bytes) -> dict[str, str]:
    from service.bridges.verify import slack_signature

    ts = str(int(time.time()))
    return {
        "Content-Type": "application/json",
        "X-Slack-Request-Timestamp": ts,
        "X-Slack-Signature": slack_signature(SLACK_SIGNING_SECRET, ts, body),
    }


async def test_handshakes(http: httpx.AsyncClient, desk: Desk) -> None:
    """Slack's url_verification and Discord's PING, each only when signed."""
    body = b'{"type":"url_verification","challenge":"3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P"}'
    response = await slack_post(http, desk.team_id, body)
    assert (response.status_code, response.json()) == (
        200,
        {"challenge": "3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P"},
    )
    response = await discord_interaction(http, desk.team_id, {"type": 1, "id": "1"})
    assert (response.status_code, response.json()) == (200, {"type": 1})
    response = await discord_interaction(http, desk.team_id, {"type": 1, "id": "1"}, key=Ed25519PrivateKey.generate())
    assert response.status_code == 401


# --- Replies ----------------------------------------------------------------------------------------------------


async def test_unlinked_account_and_non_assignee_get_their_answer_and_nothing_is_delivered(
    api: RunningApi, http: httpx.AsyncClient, clean_db: AsyncEngine, desk: Desk
) -> None:
    await assign(clean_db, desk, "ana")
    before = await counts(clean_db)
    async with websockets.connect(f"{api.ws_url}/pocketping/stream?sessionId={desk.session_id}") as socket:
        stranger = discord_command(
            STRANGER["discord"], "reply", ("message", "I am not linked"), channel_id=THREADS["discord"]
        )
        assert discord_content(await discord_interaction(http, desk.team_id, stranger)) == (
            "Nothing was sent to the visitor. Your Discord account is not linked to a Switchboard operator. "
            "Get a link code on your Switchboard profile page (Chat accounts) and send /link CODE here."
        )
        ben = discord_command(
            ACCOUNTS["ben"]["discord"], "reply", ("message", "Let me help"), channel_id=THREADS["discord"]
        )
        assert discord_content(await discord_interaction(http, desk.team_id, ben)) == (
            "This conversation is assigned to Ana, so your message was not sent to the visitor. "
            "Ask them or a lead to transfer it to you."
        )
        assert await received(socket) == []
    assert await counts(clean_db) == before


async def test_a_reply_to_a_waiting_conversation_claims_it(
    api: RunningApi, http: httpx.AsyncClient, clean_db: AsyncEngine, desk: Desk
) -> None:
    await set_values(clean_db, "conversation", {"id": desk.session_id}, status="queued")
    ben = discord_command(ACCOUNTS["ben"]["discord"], "reply", ("message", "Ben here"), channel_id=THREADS["discord"])
    async with websockets.connect(f"{api.ws_url}/pocketping/stream?sessionId={desk.session_id}") as socket:
        assert discord_content(await discord_interaction(http, desk.team_id, ben)) == (
            "You claimed this conversation; your message was sent to the visitor."
        )
        events = [e for e in await received(socket) if e["type"] == "message"]
    assert [(e["data"]["content"], e["data"]["metadata"]["operatorName"]) for e in events] == [("Ben here", "Ben")]
    assert (await state(clean_db, desk.session_id))["assignee_id"] == desk.ids["ben"]
    [message] = await rows(clean_db, "SELECT sender, operator_id FROM message")
    assert message == {"sender": "operator", "operator_id": desk.ids["ben"]}

    # At capacity, Ana cannot take another waiting conversation by replying.
    await set_values(clean_db, "team_member", {"operator_id": desk.ids["ana"]}, capacity=0)
    await set_values(clean_db, "conversation", {"id": desk.session_id}, status="queued", assignee_id=None)
    ana = discord_command(ACCOUNTS["ana"]["discord"], "reply", ("message", "Ana here"), channel_id=THREADS["discord"])
    assert discord_content(await discord_interaction(http, desk.team_id, ana)) == (
        "You are at capacity. Your message was not sent to the visitor."
    )


# --- Commands and links -----------------------------------------------------------------------------------------


async def test_presence_commands_change_only_the_senders_presence(
    http: httpx.AsyncClient, clean_db: AsyncEngine, desk: Desk
) -> None:
    async def statuses() -> dict[str, str]:
        found = await rows(clean_db, "SELECT display_name, status FROM operator ORDER BY display_name")
        return {r["display_name"]: r["status"] for r in found}

    assert await statuses() == {"Ana": "online", "Ben": "online"}
    away = discord_command(ACCOUNTS["ana"]["discord"], "away")
    assert discord_content(await discord_interaction(http, desk.team_id, away)) == "You are now away."
    assert await statuses() == {"Ana": "away", "Ben": "online"}
    offline = discord_command(ACCOUNTS["ben"]["discord"], "offline", dm=True)
    assert discord_content(await discord_interaction(http, desk.team_id, offline)) == "You are now offline."
    assert await statuses() == {"Ana": "away", "Ben": "offline"}
    online = discord_command(ACCOUNTS["ana"]["discord"], "online")
    assert discord_content(await discord_interaction(http, desk.team_id, online)) == "You are now online."
    assert discord_content(await discord_interaction(http, desk.team_id, online)) == "You are already online."
    assert await statuses() == {"Ana": "online", "Ben": "offline"}
    stranger = discord_command(STRANGER["discord"], "online")
    assert discord_content(await discord_interaction(http, desk.team_id, stranger)).startswith(
        "Your Discord account is not linked"
    )
    assert await statuses() == {"Ana": "online", "Ben": "offline"}


async def test_link_code_flow(http: httpx.AsyncClient, clean_db: AsyncEngine, desk: Desk) -> None:
    carla = await make_operator(clean_db, "Carla", email="carla@example.test")
    await add_member(clean_db, desk.team_id, carla)
    auth = bearer(await personal_token(clean_db, carla))
    assert (await http.get("/api/v1/me/bridge-links", headers=auth)).json() == {"items": []}

    response = await http.post("/api/v1/me/bridge-links/codes", headers=auth)
    assert response.status_code == 201, response.text
    code = response.json()["code"]
    assert response.json()["command"] == f"/link {code}"
    # Typed in lower case with a space, from a DM with the bot.
    typed = code[:5].lower() + " " + code[5:]
    dm = discord_command("200000000000000077", "link", ("code", typed), channel_id="400000000000000001", dm=True)
    assert discord_content(await discord_interaction(http, desk.team_id, dm)) == (
        "Linked: what this Discord account writes here now counts as Carla's."
    )
    [listed] = (await http.get("/api/v1/me/bridge-links", headers=auth)).json()["items"]
    assert (listed["platform"], listed["externalUserId"], listed["externalName"], listed["directChat"]) == (
        "discord",
        "200000000000000077",
        "user0077",
        True,
    )
    [stored] = await rows(clean_db, "SELECT direct_chat_id FROM bridge_link WHERE operator_id = :id", id=carla)
    assert stored["direct_chat_id"] == "400000000000000001"

    # Single use: the same code again, or a made-up one, links nothing.
    again = discord_command(STRANGER["discord"], "link", ("code", code))
    assert discord_content(await discord_interaction(http, desk.team_id, again)) == inbound.BAD_CODE
    assert (
        await rows(clean_db, "SELECT count(*) AS n FROM bridge_link WHERE external_user_id = :u", u=STRANGER["discord"])
    )[0]["n"] == 0

    # Now Carla's Discord messages are hers: /status answers her.
    status = discord_command("200000000000000077", "status")
    assert discord_content(await discord_interaction(http, desk.team_id, status)) == (
        "You are offline.\nYour open conversations: 0\nWaiting in the Support queue: 0"
    )

    # Another operator cannot remove Carla's link; Carla can, and then her account is unknown again.
    response = await http.delete(f"/api/v1/me/bridge-links/{listed['id']}", headers=desk.headers["ana"])
    assert response.status_code == 404
    response = await http.delete(f"/api/v1/me/bridge-links/{listed['id']}", headers=auth)
    assert response.status_code == 204
    assert (await http.get("/api/v1/me/bridge-links", headers=auth)).json() == {"items": []}
    assert discord_content(await discord_interaction(http, desk.team_id, status)).startswith(
        "Your Discord account is not linked"
    )


async def test_thread_commands_act_on_the_threads_conversation(
    http: httpx.AsyncClient, clean_db: AsyncEngine, desk: Desk
) -> None:
    await set_values(clean_db, "conversation", {"id": desk.session_id}, status="queued")

    async def run(who: str, name: str, *options: tuple[str, str], channel: str = THREADS["discord"]) -> str:
        command = discord_command(ACCOUNTS[who]["discord"], name, *options, channel_id=channel)
        return discord_content(await discord_interaction(http, desk.team_id, command))

    assert await run("ana", "claim", channel=DISCORD_CHANNEL_ID) == "Use /claim in a conversation's thread."
    assert await run("ana", "reply", ("message", "hi"), channel=DISCORD_CHANNEL_ID) == (
        "Use /reply in a conversation's thread."
    )
    assert await run("ana", "claim") == "You now hold this conversation."
    assert (await state(clean_db, desk.session_id))["assignee_id"] == desk.ids["ana"]
    assert await run("ben", "claim") == "This conversation is not waiting in a queue."
    assert await run("ana", "transfer", ("operator", "@nobody")) == "No member of this team is @nobody."
    assert await run("ana", "transfer", ("operator", "@ben"), ("note", "VIP customer")) == "Transferred to Ben."
    assert (await state(clean_db, desk.session_id))["assignee_id"] == desk.ids["ben"]
    [note] = await rows(clean_db, "SELECT body, author_id FROM internal_note")
    assert note == {"body": "VIP customer", "author_id": desk.ids["ana"]}
    assert await run("ben", "ai") == "AI is not enabled for this conversation's team."
    await set_values(clean_db, "team", {"id": desk.team_id}, ai_enabled=True)
    assert await run("ben", "ai") == "The AI answers this conversation now."
    [ai] = await rows(clean_db, "SELECT ai_active FROM conversation")
    assert ai == {"ai_active": True}
    assert await run("ben", "close") == "Conversation closed."
    assert (await state(clean_db, desk.session_id))["status"] == "closed"
    assert await run("ben", "close") == "The conversation is already closed."
    assert (await run("ben", "frobnicate")).startswith("Unknown command /frobnicate. Commands:")


async def test_slack_slash_commands_answer_in_the_response(
    http: httpx.AsyncClient, clean_db: AsyncEngine, desk: Desk
) -> None:
    def form(command: str, text: str, user: str) -> bytes:
        fields = {"command": command, "text": text, "user_id": user, "channel_id": "C0TEAM0001", "trigger_id": "t1"}
        return urlencode(fields).encode()

    response = await slack_post(http, desk.team_id, form("/away", "", ACCOUNTS["ana"]["slack"]), FORM)
    assert (response.status_code, response.json()) == (200, {"response_type": "ephemeral", "text": "You are now away."})
    # One command for all: "/switchboard online".
    response = await slack_post(http, desk.team_id, form("/switchboard", "online", ACCOUNTS["ana"]["slack"]), FORM)
    assert response.json()["text"] == "You are now online."
    [ana] = await rows(clean_db, "SELECT status FROM operator WHERE id = :id", id=desk.ids["ana"])
    assert ana == {"status": "online"}
    response = await slack_post(http, desk.team_id, form("/online", "", ACCOUNTS["ana"]["slack"]), FORM, secret="wrong")
    assert response.status_code == 401


async def test_telegram_and_slack_answer_in_the_thread_and_deliver_nothing(
    api: RunningApi, clean_db: AsyncEngine, telegram_api: TelegramStandIn, slack_api: SlackStandIn
) -> None:
    async with api.client() as http:
        desk = await make_desk(http, clean_db, api.app.state.settings)
        await assign(clean_db, desk, "ana")
        before = await counts(clean_db)
        socket_url = f"{api.ws_url}/pocketping/stream?sessionId={desk.session_id}"
        async with websockets.connect(socket_url) as socket:
            for n, user in enumerate((STRANGER["telegram"], ACCOUNTS["ben"]["telegram"]), start=10):
                update = telegram_message(int(user), "Can I help?", topic=int(THREADS["telegram"]), message_id=n)
                response = await telegram_update(http, desk.team_id, update)
                assert (response.status_code, response.json()) == (200, {"ok": True})
            for user in (STRANGER["slack"], ACCOUNTS["ben"]["slack"]):
                response = await slack_post(http, desk.team_id, slack_event(user, "Hi", thread_ts=THREADS["slack"]))
                assert (response.status_code, response.json()) == (200, {"ok": True})
            assert await received(socket) == []
    unlinked = "Nothing was sent to the visitor. Your {} account is not linked to a Switchboard operator. " + (
        "Get a link code on your Switchboard profile page (Chat accounts) and send /link CODE here."
    )
    assigned = (
        "This conversation is assigned to Ana, so your message was not sent to the visitor. "
        "Ask them or a lead to transfer it to you."
    )
    answers = [call.body for call in telegram_api.calls_to("sendMessage")]
    assert [(a["chat_id"], a["message_thread_id"], a["text"]) for a in answers] == [
        (TELEGRAM_CHAT_ID, 42, unlinked.format("Telegram")),
        (TELEGRAM_CHAT_ID, 42, assigned),
    ]
    assert {call.token for call in telegram_api.calls_to("sendMessage")} == {TELEGRAM_BOT_TOKEN}
    answers = [call.body for call in slack_api.calls_to("chat.postMessage")]
    assert [(a["channel"], a["thread_ts"], a["text"]) for a in answers] == [
        (SLACK_CHANNEL_ID, THREADS["slack"], unlinked.format("Slack")),
        (SLACK_CHANNEL_ID, THREADS["slack"], assigned),
    ]
    assert await counts(clean_db) == before


async def test_secrets_appear_in_no_response_and_no_log(
    settings: Settings, clean_db: AsyncEngine, telegram_api: TelegramStandIn, slack_api: SlackStandIn
) -> None:
    debug = settings.model_copy(
        update={
            "log_level": "DEBUG",
            "telegram_api_base": telegram_api.base_url,
            "slack_api_base": slack_api.base_url,
        }
    )
    async with run_api(debug) as api, api.client() as http:
        log = io.StringIO()
        capture = logging.StreamHandler(log)
        capture.setFormatter(logging.getLogger().handlers[0].formatter)
        logging.getLogger().addHandler(capture)
        try:
            responses = await exercise_with_secrets(http, clean_db, telegram_api)
        finally:
            logging.getLogger().removeHandler(capture)
    logged = log.getvalue()
    assert "bridge webhook rejected" in logged and "bridge answer not posted" in logged
    for secret in SECRETS:
        assert secret not in logged
        leaks = [r.request.url.path for r in responses if secret in r.text or secret in str(r.headers)]
        assert leaks == [], f"{secret} in {leaks}"


async def exercise_with_secrets(
    http: httpx.AsyncClient, engine: AsyncEngine, telegram_api: TelegramStandIn
) -> list[httpx.Response]:
    """Set every secret through the API, then use each bridge (signed, unsigned, failing); returns the responses."""
    team_id = await make_team(engine, "Support")
    lead = await make_operator(engine, "Lena", email="lena@example.test")
    await add_member(engine, team_id, lead, "lead")
    await link(engine, lead, "telegram", "7001")
    auth = bearer(await personal_token(engine, lead))
    body = {
        "telegram": {
            "enabled": True,
            "chatId": TELEGRAM_CHAT_ID,
            "botToken": TELEGRAM_BOT_TOKEN,
            "webhookSecret": TELEGRAM_WEBHOOK_SECRET,
        },
        "slack": {
            "enabled": True,
            "channelId": SLACK_CHANNEL_ID,
            "botToken": SLACK_BOT_TOKEN,
            "signingSecret": SLACK_SIGNING_SECRET,
        },
        "discord": {
            "enabled": True,
            "channelId": DISCORD_CHANNEL_ID,
            "botToken": DISCORD_BOT_TOKEN,
            "publicKey": DISCORD_PUBLIC_KEY,
        },
    }
    responses = [await http.patch(f"/api/v1/teams/{team_id}/bridges", json=body, headers=auth)]
    assert responses[0].status_code == 200, responses[0].text
    responses += [
        await http.get(f"/api/v1/teams/{team_id}/bridges", headers=auth),
        await http.get(f"/api/v1/teams/{team_id}", headers=auth),
        await http.get("/api/v1/teams", headers=auth),
        await http.post("/api/v1/me/bridge-links/codes", headers=auth),
        await http.get("/api/v1/me/bridge-links", headers=auth),
        await telegram_update(http, team_id, telegram_message(7001, "/status")),
        await telegram_update(http, team_id, telegram_message(7999, "hello", topic=1)),
        await telegram_update(http, team_id, telegram_message(7001, "/online"), secret="tg_wrong_secret_0000"),
        await slack_post(http, team_id, slack_event("U0NOBODY9", "/status")),
        await slack_post(http, team_id, slack_event("U0NOBODY9", "/status"), timestamp=int(time.time()) - 600),
        await discord_interaction(http, team_id, discord_command("200000000000000001", "status")),
        await discord_interaction(http, team_id, {"type": 1}, key=Ed25519PrivateKey.generate()),
    ]
    # The platform refuses the bot's answer: logged, without the token its URL carries.
    telegram_api.fail("sendMessage", 401, {"ok": False, "error_code": 401, "description": "Unauthorized"})
    responses.append(await telegram_update(http, team_id, telegram_message(7001, "/status", message_id=2)))
    return responses


async def test_assignees_reply_reaches_the_visitor_once_and_the_other_bridges_once(
    api: RunningApi,
    clean_db: AsyncEngine,
    telegram_api: TelegramStandIn,
    slack_api: SlackStandIn,
    discord_api: DiscordStandIn,
) -> None:
    async with api.client() as http:
        desk = await make_desk(http, clean_db, api.app.state.settings)
        await assign(clean_db, desk, "ana")
        for standin in (telegram_api, slack_api, discord_api):
            standin.clear()
        socket_url = f"{api.ws_url}/pocketping/stream?sessionId={desk.session_id}"
        async with websockets.connect(socket_url) as socket:
            update = telegram_message(int(ACCOUNTS["ana"]["telegram"]), "We ship to Lyon.", topic=42, message_id=20)
            # Telegram delivers an update again when it did not see a 200: the visitor still gets it once.
            for _ in range(2):
                response = await telegram_update(http, desk.team_id, update)
                assert (response.status_code, response.json()) == (200, {"ok": True})
            events = [e for e in await received(socket) if e["type"] == "message"]
        # A worker mirrors the reply to the other chats.
        assert (await run_burst(api.app.state.settings, cron_jobs=[])).jobs_failed == 0
        await slack_api.wait_for("chat.postMessage")
        await discord_api.wait_for("POST /channels/{id}/messages")
    assert [(e["data"]["content"], e["data"]["sender"], e["data"]["metadata"]["operatorName"]) for e in events] == [
        ("We ship to Lyon.", "operator", "Ana")
    ]
    [message] = await rows(clean_db, "SELECT sender, operator_id, content FROM message")
    assert message == {"sender": "operator", "operator_id": desk.ids["ana"], "content": "We ship to Lyon."}
    [conversation] = await rows(clean_db, "SELECT first_response_at IS NOT NULL AS answered FROM conversation")
    assert conversation == {"answered": True}
    # Mirrored once to each other bridge, in the conversation's thread; nothing back to Telegram.
    [slack] = slack_api.calls_to("chat.postMessage")
    assert (slack.body["thread_ts"], "We ship to Lyon." in json.dumps(slack.body)) == (THREADS["slack"], True)
    [discord] = discord_api.calls_to("POST /channels/{id}/messages")
    assert (THREADS["discord"] in discord.path, "We ship to Lyon." in json.dumps(discord.body)) == (True, True)
    assert telegram_api.calls_to("sendMessage") == []


async def test_a_telegram_reply_to_a_mirrored_message_finds_its_conversation(
    api: RunningApi, http: httpx.AsyncClient, clean_db: AsyncEngine, desk: Desk
) -> None:
    """Outside the topic (the group's General), replying to the bot's copy of a visitor message is enough."""
    await assign(clean_db, desk, "ana")
    async with clean_db.begin() as conn:
        await conn.execute(
            sa.text(
                "INSERT INTO message (id, conversation_id, sender, content, created_at, telegram_message_id) "
                "VALUES ('m-visitor', :c, 'visitor', 'Do you ship to Lyon?', now(), 555)"
            ),
            {"c": desk.session_id},
        )
    update = telegram_message(int(ACCOUNTS["ana"]["telegram"]), "Yes, we do.", message_id=30)
    update["message"]["reply_to_message"] = {"message_id": 555, "chat": update["message"]["chat"]}
    async with websockets.connect(f"{api.ws_url}/pocketping/stream?sessionId={desk.session_id}") as socket:
        assert (await telegram_update(http, desk.team_id, update)).status_code == 200
        events = [e for e in await received(socket) if e["type"] == "message"]
    assert [e["data"]["content"] for e in events] == ["Yes, we do."]
    # The same message id in a direct chat with the bot is another chat's message: nothing is sent.
    direct = telegram_message(int(ACCOUNTS["ana"]["telegram"]), "Private note", message_id=31, private=True)
    direct["message"]["reply_to_message"] = {"message_id": 555}
    assert (await telegram_update(http, desk.team_id, direct)).status_code == 200
    sent = await rows(clean_db, "SELECT content FROM message WHERE sender = 'operator'")
    assert sent == [{"content": "Yes, we do."}]
