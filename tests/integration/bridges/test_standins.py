"""The platform stand-ins answer PocketPing's real bridge code as the real APIs do, and record every call."""

from __future__ import annotations

from datetime import UTC, datetime

import httpx
from pocketping.bridges import DiscordBridge, SlackBridge, TelegramBridge
from pocketping.models import Message, Sender, Session

from tests.standins import DiscordStandIn, SlackStandIn, TelegramStandIn

TOKEN = "123456:telegram-test-token"


def _session() -> Session:
    now = datetime.now(UTC)
    return Session(id="sess-1", visitor_id="visitor-1", created_at=now, last_activity=now)


def _message(content: str) -> Message:
    return Message(id="m-1", session_id="sess-1", content=content, sender=Sender.VISITOR, timestamp=datetime.now(UTC))


async def test_telegram_bridge_against_the_stand_in(telegram_api: TelegramStandIn) -> None:
    bridge = TelegramBridge(bot_token=TOKEN, chat_id="-100200300")
    bridge._base_url = f"{telegram_api.base_url}/bot{TOKEN}"
    await bridge.init(None)  # type: ignore[arg-type]
    try:
        result = await bridge.on_visitor_message(_message("Hello"), _session())
        await bridge.on_message_edit(_message("Hello!"), _session(), result.message_id if result else None)
    finally:
        await bridge.destroy()
    [sent] = telegram_api.calls_to("sendMessage")
    assert sent.token == TOKEN
    assert sent.body["chat_id"] == "-100200300"
    assert "Hello" in sent.body["text"]
    assert result is not None and result.message_id == sent.response["result"]["message_id"]
    [edited] = telegram_api.calls_to("editMessageText")
    assert edited.body["message_id"] == result.message_id


async def test_telegram_topics_threads_and_refusals() -> None:
    with TelegramStandIn(tokens={TOKEN}) as telegram:
        async with httpx.AsyncClient(base_url=telegram.base_url) as client:
            topic = (await client.post(f"/bot{TOKEN}/createForumTopic", json={"chat_id": -1001, "name": "x"})).json()
            thread = topic["result"]["message_thread_id"]
            sent = await client.post(
                f"/bot{TOKEN}/sendMessage", json={"chat_id": -1001, "message_thread_id": thread, "text": "hi"}
            )
            wrong = await client.post("/botnope:token/sendMessage", json={"chat_id": -1001, "text": "hi"})
            unknown = await client.post(f"/bot{TOKEN}/noSuchMethod", json={})
    assert sent.json()["result"]["message_thread_id"] == thread
    assert sent.json()["result"]["is_topic_message"] is True
    assert (wrong.status_code, wrong.json()["description"]) == (401, "Unauthorized")
    assert unknown.status_code == 404
    assert [call.name for call in telegram.calls] == ["createForumTopic", "sendMessage", "sendMessage", "noSuchMethod"]


async def test_slack_bridge_and_threads(slack_api: SlackStandIn) -> None:
    bridge = SlackBridge(bot_token="xoxb-slack-test-token", channel_id="C0TEAMA1")
    bridge._api_base = slack_api.base_url
    await bridge.init(None)  # type: ignore[arg-type]
    try:
        root = await bridge._send_message("root")
        reply = await bridge._send_message("in thread", thread_ts=root["ts"] if root else None)
    finally:
        await bridge.destroy()
    assert root is not None and reply is not None and reply["ts"] > root["ts"]
    first, second = slack_api.calls_to("chat.postMessage")
    assert first.token == "xoxb-slack-test-token"
    assert (first.body["channel"], second.body["thread_ts"]) == ("C0TEAMA1", root["ts"])
    async with httpx.AsyncClient(base_url=slack_api.base_url) as client:
        dm = await client.post("/conversations.open", json={"users": "U123ABC"}, headers={"authorization": "Bearer x"})
        anonymous = await client.post("/chat.postMessage", json={"channel": "C1", "text": "x"})
    assert dm.json() == {"ok": True, "channel": {"id": "DU123ABC"}}
    assert anonymous.json() == {"ok": False, "error": "not_authed"}


async def test_discord_bridge_threads_and_direct_messages(discord_api: DiscordStandIn) -> None:
    bridge = DiscordBridge(bot_token="discord-test-token", channel_id="111111111111111111")
    bridge._api_base = discord_api.base_url
    await bridge.init(None)  # type: ignore[arg-type]
    try:
        result = await bridge.on_visitor_message(_message("Hello"), _session())
    finally:
        await bridge.destroy()
    [sent] = discord_api.calls_to("POST /channels/{id}/messages")
    assert sent.path.endswith("/channels/111111111111111111/messages")
    assert sent.token == "discord-test-token"
    assert result is not None and result.message_id == sent.response["id"]
    headers = {"authorization": "Bot discord-test-token"}
    async with httpx.AsyncClient(base_url=discord_api.base_url, headers=headers) as client:
        thread = await client.post("/channels/111111111111111111/threads", json={"name": "Visitor", "type": 11})
        dm = await client.post("/users/@me/channels", json={"recipient_id": "222222222222222222"})
        again = await client.post("/users/@me/channels", json={"recipient_id": "222222222222222222"})
    assert thread.status_code == 201 and thread.json()["parent_id"] == "111111111111111111"
    assert dm.json()["id"] == again.json()["id"] and dm.json()["type"] == 1
    discord_api.fail("POST /channels/{id}/messages", 403, {"message": "Missing Access", "code": 50001})
    async with httpx.AsyncClient(base_url=discord_api.base_url, headers=headers) as client:
        refused = await client.post("/channels/1/messages", json={"content": "x"})
    assert refused.status_code == 403


async def test_file_calls_are_refused_as_the_real_apis_refuse_them() -> None:
    """A file method without its file part, Slack's upload URL asked for in JSON, a private download without
    the bot token, a Discord attachment without its ``files[n]`` part."""
    with (
        TelegramStandIn(tokens={TOKEN}) as telegram,
        SlackStandIn(tokens={"xoxb-1"}) as slack,
        DiscordStandIn() as discord,
    ):
        async with httpx.AsyncClient() as client:
            no_photo = await client.post(f"{telegram.base_url}/bot{TOKEN}/sendPhoto", data={"chat_id": "-1001"})
            bad_file = await client.post(f"{telegram.base_url}/bot{TOKEN}/getFile", json={"file_id": "nope"})
            file_id = telegram.host_file(b"bytes", "a.txt")
            path = (await client.post(f"{telegram.base_url}/bot{TOKEN}/getFile", json={"file_id": file_id})).json()
            got = await client.get(
                f"{telegram.base_url.removesuffix('/')}/file/bot{TOKEN}/{path['result']['file_path']}"
            )
            auth = {"Authorization": "Bearer xoxb-1"}
            as_json = await client.post(
                f"{slack.base_url}/files.getUploadURLExternal", json={"filename": "a.txt", "length": 5}, headers=auth
            )
            shared = slack.host_file(b"bytes", "a.txt", "text/plain")
            anonymous = await client.get(shared["url_private"])
            with_token = await client.get(shared["url_private"], headers=auth)
            missing_part = await client.post(
                f"{discord.base_url}/channels/300000000000000001/messages",
                data={"payload_json": '{"attachments": [{"id": 0, "filename": "a.txt"}]}'},
                files={"files[1]": ("a.txt", b"bytes", "text/plain")},
                headers={"Authorization": "Bot token"},
            )
    assert (no_photo.status_code, no_photo.json()["description"]) == (
        400,
        "Bad Request: there is no photo in the request",
    )
    assert (bad_file.status_code, bad_file.json()["description"]) == (400, "Bad Request: invalid file_id")
    assert (got.status_code, got.content) == (200, b"bytes")
    # Slack's getUploadURLExternal reads form fields only: JSON's integer length is not one.
    assert as_json.json() == {"ok": False, "error": "invalid_arguments"}
    assert (anonymous.status_code, with_token.status_code, with_token.content) == (302, 200, b"bytes")
    assert (missing_part.status_code, missing_part.json()["code"]) == (400, 50035)
