"""Operators' files: uploaded through the REST API, sent with a reply, received by the visitor's widget socket."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import websockets
from sqlalchemy.ext.asyncio import AsyncEngine

from service.settings import Settings
from tests.conftest import RunningApi
from tests.factories import add_member, bearer, make_operator, make_team, personal_token
from tests.support.files import PDF, WIDGET, attachment_rows, png, serving, stored_files, upload
from tests.support.routing import set_values


@dataclass
class Desk:
    api: RunningApi
    http: httpx.AsyncClient
    settings: Settings
    team_id: uuid.UUID
    ada: dict[str, str]  # a member of the team, holding the visitor's conversation
    otto: dict[str, str]  # an operator of another team


@pytest.fixture
async def desk(settings: Settings, clean_db: AsyncEngine, tmp_path: Path) -> AsyncIterator[Desk]:
    async with serving(settings, tmp_path) as (api, http, configured):
        team_id = await make_team(clean_db, "Support", is_default=True, attachment_max_bytes=2000)
        ada, otto = await make_operator(clean_db, "Ada"), await make_operator(clean_db, "Otto")
        await add_member(clean_db, team_id, ada)
        await add_member(clean_db, await make_team(clean_db, "Other"), otto)
        yield Desk(
            api,
            http,
            configured,
            team_id,
            bearer(await personal_token(clean_db, ada)),
            bearer(await personal_token(clean_db, otto)),
        )


async def held_conversation(desk: Desk, engine: AsyncEngine, visitor_id: str = "visitor-1") -> str:
    response = await desk.http.post("/pocketping/connect", json={"visitorId": visitor_id}, headers=WIDGET)
    session_id = str(response.json()["sessionId"])
    ada_id = await _operator_of(engine, desk.ada)
    where = {"id": session_id}
    await set_values(engine, "conversation", where, team_id=desk.team_id, status="assigned", assignee_id=ada_id)
    return session_id


async def _operator_of(engine: AsyncEngine, headers: dict[str, str]) -> Any:
    from tests.support.routing import rows

    [row] = await rows(engine, "SELECT id FROM operator WHERE display_name = 'Ada'")
    return row["id"]


def attach(desk: Desk, conversation_id: str, name: str, data: bytes, mime: str, headers: dict[str, str]) -> Any:
    return desk.http.post(
        f"/api/v1/conversations/{conversation_id}/attachments", files={"file": (name, data, mime)}, headers=headers
    )


async def next_message(socket: Any) -> dict[str, Any]:
    while True:
        event = json.loads(await asyncio.wait_for(socket.recv(), timeout=5))
        if event["type"] == "message":
            return event["data"]  # type: ignore[no-any-return]


async def test_an_operators_image_reaches_the_visitors_socket_with_a_url_of_the_same_bytes(
    desk: Desk, clean_db: AsyncEngine
) -> None:
    session_id = await held_conversation(desk, clean_db)
    image = png(6, 5, (10, 200, 30))
    uploaded = await attach(desk, session_id, "map.png", image, "image/png", desk.ada)
    assert uploaded.status_code == 201, uploaded.text
    attachment = uploaded.json()
    assert (attachment["filename"], attachment["mimeType"], attachment["size"], attachment["status"]) == (
        "map.png",
        "image/png",
        len(image),
        "ready",
    )
    async with websockets.connect(f"{desk.api.ws_url}/pocketping/stream?sessionId={session_id}") as socket:
        reply = {"content": "Here is the map.", "attachmentIds": [attachment["id"]]}
        sent = await desk.http.post(f"/api/v1/conversations/{session_id}/messages", json=reply, headers=desk.ada)
        assert sent.status_code == 201, sent.text
        assert [a["id"] for a in sent.json()["attachments"]] == [attachment["id"]]
        data = await next_message(socket)
    assert (data["sender"], data["content"], data["metadata"]["operatorName"]) == (
        "operator",
        "Here is the map.",
        "Ada",
    )
    [shown] = data["attachments"]
    # The widget's Attachment shape.
    assert {k: shown[k] for k in ("id", "filename", "mimeType", "size", "status")} == {
        "id": attachment["id"],
        "filename": "map.png",
        "mimeType": "image/png",
        "size": len(image),
        "status": "ready",
    }
    download = await desk.http.get(shown["url"])
    assert (download.status_code, download.content) == (200, image)
    # The widget's history carries it too.
    [message] = (await desk.http.get("/pocketping/messages", params={"sessionId": session_id})).json()["messages"]
    assert [a["id"] for a in message["attachments"]] == [attachment["id"]]
    listed = await desk.http.get(f"/api/v1/conversations/{session_id}/messages", headers=desk.ada)
    assert [a["filename"] for a in listed.json()["items"][0]["attachments"]] == ["map.png"]


async def test_a_reply_may_carry_only_files(desk: Desk, clean_db: AsyncEngine) -> None:
    session_id = await held_conversation(desk, clean_db)
    attachment = (await attach(desk, session_id, "terms.pdf", PDF, "application/pdf", desk.ada)).json()
    reply = {"content": "", "attachmentIds": [attachment["id"]]}
    sent = await desk.http.post(f"/api/v1/conversations/{session_id}/messages", json=reply, headers=desk.ada)
    assert sent.status_code == 201, sent.text
    assert (sent.json()["content"], sent.json()["attachments"][0]["mimeType"]) == ("", "application/pdf")


@pytest.mark.parametrize(
    ("name", "data", "declared", "status", "message"),
    [
        ("big.png", png() + bytes(3000), "image/png", 413, "at most 2000 bytes"),
        ("tool.exe", b"MZ\x90\x00" + b"\x00" * 60, "application/octet-stream", 415, None),
        ("fake.png", PDF.replace(b"%PDF", b"%PDX"), "image/png", 415, None),
    ],
)
async def test_a_refused_operator_file_leaves_nothing(
    desk: Desk, clean_db: AsyncEngine, name: str, data: bytes, declared: str, status: int, message: str | None
) -> None:
    session_id = await held_conversation(desk, clean_db)
    refused = await attach(desk, session_id, name, data, declared, desk.ada)
    assert refused.status_code == status, refused.text
    assert refused.headers["content-type"] == "application/problem+json"
    [error] = refused.json()["errors"]
    assert error["field"] == "file"
    if message is not None:
        assert error["message"] == message
    assert await attachment_rows(clean_db) == []
    assert stored_files(desk.settings.data_dir) == []


async def test_operators_attach_only_in_their_teams_conversations_and_only_their_conversations_files(
    desk: Desk, clean_db: AsyncEngine
) -> None:
    session_id = await held_conversation(desk, clean_db)
    other_session = await held_conversation(desk, clean_db, "visitor-2")
    outsider = await attach(desk, session_id, "a.png", png(), "image/png", desk.otto)
    assert outsider.status_code == 404
    assert await attachment_rows(clean_db) == []
    # A visitor's file of another conversation cannot be sent here, nor can a visitor's file by an operator.
    visitor_file = await upload(desk.http, other_session, "v.png", png(), "image/png")
    reply = {"content": "look", "attachmentIds": [visitor_file["id"]]}
    refused = await desk.http.post(f"/api/v1/conversations/{session_id}/messages", json=reply, headers=desk.ada)
    assert refused.status_code == 400
    assert refused.json()["errors"][0]["field"] == "attachmentIds"
