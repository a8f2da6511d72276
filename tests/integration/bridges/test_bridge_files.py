"""Files through the bridges: a visitor's files reach each platform as its API takes them, and an operator's file
from a platform reaches the visitor (downloaded from the platform, kept under the team's limits)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from service.settings import Settings
from tests.conftest import RunningApi
from tests.factories import add_member, make_operator, make_team
from tests.integration.bridges.test_bridge_inbound import ACCOUNTS, THREADS, Desk, assign, make_desk
from tests.integration.bridges.test_bridges_outbound import Platforms, platforms, work
from tests.standins import DiscordStandIn, SlackStandIn, TelegramStandIn, Upload
from tests.support.bridges import (
    DISCORD_BOT_TOKEN,
    SLACK_BOT_TOKEN,
    SLACK_CHANNEL_ID,
    TELEGRAM_BOT_TOKEN,
    TELEGRAM_CHAT_ID,
    bridge_settings,
    discord_command,
    discord_interaction,
    slack_event,
    slack_post,
    telegram_message,
    telegram_update,
)
from tests.support.files import EXE, PDF, png, serving, upload
from tests.support.routing import rows

PICTURE = png(5, 4)
__all__ = ["platforms"]  # the fixture, shared with the outbound tests


@pytest.fixture
async def served(
    settings: Settings,
    tmp_path: Path,
    telegram_api: TelegramStandIn,
    slack_api: SlackStandIn,
    discord_api: DiscordStandIn,
) -> AsyncIterator[tuple[RunningApi, httpx.AsyncClient, Settings]]:
    """The api at its own public URL (its signed file URLs work), the platform APIs at their stand-ins."""
    bases = {
        "telegram_api_base": telegram_api.base_url,
        "slack_api_base": slack_api.base_url,
        "discord_api_base": discord_api.base_url,
    }
    async with serving(settings.model_copy(update=bases), tmp_path) as (api, http, configured):
        yield api, http, configured


@pytest.fixture
async def desk(
    served: tuple[RunningApi, httpx.AsyncClient, Settings], clean_db: AsyncEngine, settings: Settings
) -> Desk:
    return await make_desk(served[1], clean_db, settings)


def multipart_file(call: Any, field: str) -> Upload:
    upload_part = call.body[field]
    assert isinstance(upload_part, Upload), call.body
    return upload_part


async def test_a_visitors_files_reach_each_platform_as_its_api_takes_them(
    served: tuple[RunningApi, httpx.AsyncClient, Settings],
    desk: Desk,
    clean_db: AsyncEngine,
    platforms: Platforms,
) -> None:
    api, http, configured = served
    telegram_api, slack_api, discord_api = platforms.telegram, platforms.slack, platforms.discord
    picture = await upload(http, desk.session_id, "screen.png", PICTURE, "image/png")
    invoice = await upload(http, desk.session_id, "invoice.pdf", PDF, "application/pdf")
    for standin in (telegram_api, slack_api, discord_api):
        standin.clear()
    body = {"sessionId": desk.session_id, "content": "", "sender": "visitor", "attachmentIds": []}
    body["attachmentIds"] = [picture["id"], invoice["id"]]
    response = await http.post("/pocketping/message", json=body)
    assert response.status_code == 200, response.text
    await work(configured, api)  # a worker posts to the chats, not the widget's request

    # Telegram: the picture as a photo, the PDF as a document, multipart, into the topic; no empty text line.
    assert telegram_api.calls_to("sendMessage") == []
    [photo] = telegram_api.calls_to("sendPhoto")
    [document] = telegram_api.calls_to("sendDocument")
    assert photo.token == document.token == TELEGRAM_BOT_TOKEN
    assert photo.headers["content-type"].startswith("multipart/form-data; boundary=")
    assert {k: v for k, v in photo.body.items() if k != "photo"} == {
        "chat_id": TELEGRAM_CHAT_ID,
        "message_thread_id": THREADS["telegram"],
        "caption": "v-bridge:",
    }
    assert multipart_file(photo, "photo") == Upload("screen.png", "image/png", PICTURE)
    assert {k: v for k, v in document.body.items() if k != "document"} == {
        "chat_id": TELEGRAM_CHAT_ID,
        "message_thread_id": THREADS["telegram"],
    }
    assert multipart_file(document, "document") == Upload("invoice.pdf", "application/pdf", PDF)

    # Slack: the external upload, form-encoded, then the bytes, then shared into the conversation's thread.
    assert slack_api.calls_to("chat.postMessage") == []
    asked = slack_api.calls_to("files.getUploadURLExternal")
    assert [(c.token, c.body) for c in asked] == [
        (SLACK_BOT_TOKEN, {"filename": "screen.png", "length": str(len(PICTURE))}),
        (SLACK_BOT_TOKEN, {"filename": "invoice.pdf", "length": str(len(PDF))}),
    ]
    assert [c.body for c in slack_api.calls_to("upload")] == [PICTURE, PDF]
    shared = slack_api.calls_to("files.completeUploadExternal")
    file_ids = [c.response["file_id"] for c in asked]
    assert [c.body for c in shared] == [
        {
            "files": [{"id": file_ids[0], "title": "screen.png"}],
            "channel_id": SLACK_CHANNEL_ID,
            "thread_ts": THREADS["slack"],
            "initial_comment": "v-bridge:",
        },
        {
            "files": [{"id": file_ids[1], "title": "invoice.pdf"}],
            "channel_id": SLACK_CHANNEL_ID,
            "thread_ts": THREADS["slack"],
        },
    ]
    assert [slack_api.files[i]["data"] for i in file_ids] == [PICTURE, PDF]

    # Discord: one multipart message per file (payload_json + files[0]) into the thread.
    posts = discord_api.calls_to("POST /channels/{id}/messages")
    assert [(c.path, c.token) for c in posts] == [
        (f"/api/v10/channels/{THREADS['discord']}/messages", DISCORD_BOT_TOKEN)
    ] * 2
    assert [json.loads(c.body["payload_json"]) for c in posts] == [
        {"attachments": [{"id": 0, "filename": "screen.png"}], "content": "v-bridge:"},
        {"attachments": [{"id": 0, "filename": "invoice.pdf"}]},
    ]
    assert [multipart_file(c, "files[0]") for c in posts] == [
        Upload("screen.png", "image/png", PICTURE),
        Upload("invoice.pdf", "application/pdf", PDF),
    ]
    # The first file's message stands for the message on each platform (replies to it map back).
    [ids] = await rows(clean_db, "SELECT telegram_message_id, discord_message_id FROM message WHERE sender = 'visitor'")
    assert ids == {
        "telegram_message_id": photo.response["result"]["message_id"],
        "discord_message_id": posts[0].response["id"],
    }


async def test_a_first_message_with_only_a_file_opens_the_thread_with_the_file(
    served: tuple[RunningApi, httpx.AsyncClient, Settings],
    clean_db: AsyncEngine,
    settings: Settings,
    telegram_api: TelegramStandIn,
) -> None:
    """The usual path: the conversation has no team until routing places it; the thread then opens and the
    messages so far are posted into it, files and all."""
    api, http, configured = served
    stored = bridge_settings(settings.secret_key)
    team_id = await make_team(
        clean_db,
        "Support",
        is_default=True,
        routing_policy="round_robin",
        bridge_settings={"telegram": stored["telegram"]},
    )
    await add_member(clean_db, team_id, await make_operator(clean_db, "Ana", email="ana@example.test", status="online"))
    connect = await http.post(
        "/pocketping/connect", json={"visitorId": "v-files", "identity": {"id": "v", "name": "Vera"}}
    )
    session_id = connect.json()["sessionId"]
    picture = await upload(http, session_id, "screen.png", PICTURE, "image/png")
    body = {"sessionId": session_id, "content": "", "sender": "visitor", "attachmentIds": [picture["id"]]}
    assert (await http.post("/pocketping/message", json=body)).status_code == 200
    assert telegram_api.calls_to("sendPhoto") == []  # no team yet

    await work(configured, api)
    [topic] = telegram_api.calls_to("createForumTopic")
    thread = str(topic.response["result"]["message_thread_id"])
    [photo] = telegram_api.calls_to("sendPhoto")
    assert {k: v for k, v in photo.body.items() if k != "photo"} == {
        "chat_id": TELEGRAM_CHAT_ID,
        "message_thread_id": thread,
        "caption": "Vera:",
    }
    assert multipart_file(photo, "photo") == Upload("screen.png", "image/png", PICTURE)
    # In the topic: the new-session card and the photo, no empty text line.
    in_topic = [c for c in telegram_api.calls_to("sendMessage") if str(c.body.get("message_thread_id")) == thread]
    assert len(in_topic) == 1 and "New chat session" in in_topic[0].body["text"]
    [ids] = await rows(clean_db, "SELECT telegram_message_id FROM message WHERE sender = 'visitor'")
    assert ids == {"telegram_message_id": photo.response["result"]["message_id"]}
    # Relaying and delivering again sends nothing more.
    await work(configured, api)
    assert len(telegram_api.calls_to("sendPhoto")) == 1


# --- From the platforms to the visitor ------------------------------------------------------------------------


def telegram_document(
    telegram: TelegramStandIn, data: bytes, filename: str, mime_type: str, message_id: int
) -> dict[str, Any]:
    """An update: Ana sends a document (no caption) in the conversation's topic."""
    file_id = telegram.host_file(data, filename)
    document = {"file_id": file_id, "file_unique_id": file_id[-8:], "file_name": filename, "mime_type": mime_type}
    update = telegram_message(
        int(ACCOUNTS["ana"]["telegram"]), "", topic=int(THREADS["telegram"]), message_id=message_id, document=document
    )
    del update["message"]["text"]
    return update


async def from_platform(platform: str, http: httpx.AsyncClient, desk: Desk, platforms: Platforms) -> httpx.Response:
    """Ana sends ``PICTURE`` (named map.png) from the conversation's thread on ``platform``, no text."""
    telegram_api, slack_api, discord_api = platforms.telegram, platforms.slack, platforms.discord
    if platform == "telegram":
        update = telegram_document(telegram_api, PICTURE, "map.png", "image/png", 50)
        return await telegram_update(http, desk.team_id, update)
    if platform == "slack":
        payload = json.loads(slack_event(ACCOUNTS["ana"]["slack"], "", thread_ts=THREADS["slack"]))
        payload["event"] |= {"subtype": "file_share", "files": [slack_api.host_file(PICTURE, "map.png", "image/png")]}
        return await slack_post(http, desk.team_id, json.dumps(payload).encode())
    interaction = discord_command(ACCOUNTS["ana"]["discord"], "reply", channel_id=THREADS["discord"])
    attachment = discord_api.host_file(PICTURE, "map.png", "image/png", THREADS["discord"])
    interaction["data"]["options"] = [{"name": "file", "type": 11, "value": attachment["id"]}]
    interaction["data"]["resolved"] = {"attachments": {attachment["id"]: attachment}}
    return await discord_interaction(http, desk.team_id, interaction)


@pytest.mark.parametrize("platform", ["telegram", "slack", "discord"])
async def test_a_file_sent_from_a_platform_reaches_the_visitor(
    platform: str,
    served: tuple[RunningApi, httpx.AsyncClient, Settings],
    desk: Desk,
    clean_db: AsyncEngine,
    platforms: Platforms,
) -> None:
    api, http, configured = served
    telegram_api, slack_api, discord_api = platforms.telegram, platforms.slack, platforms.discord
    await assign(clean_db, desk, "ana")
    response = await from_platform(platform, http, desk, platforms)
    assert response.status_code == 200, response.text

    # The widget's history has Ana's message with the file; its URL serves the same bytes.
    listed = await http.get("/pocketping/messages", params={"sessionId": desk.session_id})
    [message] = [m for m in listed.json()["messages"] if m["sender"] == "operator"]
    assert message["content"] == ""
    [shown] = message["attachments"]
    assert {k: shown[k] for k in ("filename", "mimeType", "size", "status", "uploadedFrom")} == {
        "filename": "map.png",
        "mimeType": "image/png",
        "size": len(PICTURE),
        "status": "ready",
        "uploadedFrom": platform,
    }
    download = await http.get(shown["url"])
    assert (download.status_code, download.content) == (200, PICTURE)
    # Fetched the way each platform serves files: Telegram's getFile, then the file URL with the bot token.
    if platform == "telegram":
        [asked] = telegram_api.calls_to("getFile")
        [fetched] = telegram_api.calls_to("file")
        assert (asked.token, fetched.token, fetched.method) == (TELEGRAM_BOT_TOKEN, TELEGRAM_BOT_TOKEN, "GET")
    if platform == "slack":
        [fetched] = slack_api.calls_to("files-pri")
        assert (fetched.token, fetched.status) == (SLACK_BOT_TOKEN, 200)
    if platform == "discord":
        [fetched] = discord_api.calls_to("GET /attachments")
        assert "authorization" not in fetched.headers  # the bot token stays with the API
    # The other two chats get Ana's file (her name as its caption), from a worker; the one it came from does not.
    await work(configured, api)
    mirrored = {
        "telegram": [multipart_file(c, "photo") for c in telegram_api.calls_to("sendPhoto")],
        "slack": [
            slack_api.files[c.body["files"][0]["id"]]["data"]
            for c in slack_api.calls_to("files.completeUploadExternal")
        ],
        "discord": [multipart_file(c, "files[0]") for c in discord_api.calls_to("POST /channels/{id}/messages")],
    }
    upload_part = Upload("map.png", "image/png", PICTURE)
    as_sent: dict[str, Any] = {"telegram": upload_part, "slack": PICTURE, "discord": upload_part}
    assert mirrored == {p: [] if p == platform else [as_sent[p]] for p in mirrored}


async def test_a_file_the_team_does_not_accept_is_not_kept_and_the_bot_says_why(
    served: tuple[RunningApi, httpx.AsyncClient, Settings],
    desk: Desk,
    clean_db: AsyncEngine,
    telegram_api: TelegramStandIn,
) -> None:
    _, http, _ = served
    await assign(clean_db, desk, "ana")
    update = telegram_document(telegram_api, EXE, "setup.exe", "application/pdf", 51)
    telegram_api.clear()
    response = await telegram_update(http, desk.team_id, update)
    assert response.status_code == 200, response.text

    assert await rows(clean_db, "SELECT id FROM attachment") == []
    assert await rows(clean_db, "SELECT id FROM message WHERE sender = 'operator'") == []
    [answer] = telegram_api.calls_to("sendMessage")
    assert (answer.body["chat_id"], answer.body["message_thread_id"]) == (TELEGRAM_CHAT_ID, int(THREADS["telegram"]))
    assert answer.body["text"] == (
        "The file's content is application/x-msdownload, which is not accepted here (this team accepts "
        "image/jpeg, image/png, image/gif, image/webp, application/pdf, text/plain). Nothing was sent to the visitor."
    )
