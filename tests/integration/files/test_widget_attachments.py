"""Visitors' files: the widget 2.6's upload sequence, the team's limits, sniffing, signed downloads, the sweep."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from service.crypto import sign
from service.files import services as files
from service.settings import Settings
from tests.conftest import SECRET, RunningApi
from tests.factories import make_team
from tests.support.files import (
    EXE,
    PDF,
    WIDGET,
    attachment_rows,
    complete,
    initiate,
    png,
    put_bytes,
    serving,
    stored_files,
    upload,
)


@pytest.fixture
async def local(
    settings: Settings, clean_db: AsyncEngine, tmp_path: Path
) -> AsyncIterator[tuple[RunningApi, httpx.AsyncClient, Settings]]:
    """The api at its PUBLIC_URL, files in this test's own folder, a default team taking 1000-byte images and PDFs."""
    async with serving(settings, tmp_path) as (api, http, configured):
        await make_team(
            clean_db,
            "Support",
            is_default=True,
            attachment_max_bytes=1000,
            attachment_types=["image/png", "image/jpeg", "application/pdf"],
        )
        yield api, http, configured


async def connect(http: httpx.AsyncClient, visitor_id: str = "visitor-1") -> str:
    response = await http.post("/pocketping/connect", json={"visitorId": visitor_id}, headers=WIDGET)
    assert response.status_code == 200, response.text
    return str(response.json()["sessionId"])


async def test_the_widgets_upload_sequence_sends_a_file_that_downloads_as_sent(
    local: tuple[RunningApi, httpx.AsyncClient, Settings], clean_db: AsyncEngine
) -> None:
    _, http, settings = local
    session_id = await connect(http)
    image = png()
    started = await initiate(http, session_id, "receipt.png", "image/png", len(image))
    assert started.status_code == 200, started.text
    attachment_id, upload_url = started.json()["attachmentId"], started.json()["uploadUrl"]
    assert upload_url.startswith(f"{settings.public_url}pocketping/upload/{attachment_id}?expires=")
    assert await attachment_rows(clean_db) == [(attachment_id, "pending")]
    assert (await put_bytes(http, upload_url, image, "image/png")).status_code == 204
    assert await attachment_rows(clean_db) == [(attachment_id, "uploading")]
    done = await complete(http, session_id, attachment_id)
    assert done.status_code == 200, done.text
    ready = done.json()
    assert (ready["id"], ready["filename"], ready["mimeType"], ready["size"], ready["status"]) == (
        attachment_id,
        "receipt.png",
        "image/png",
        len(image),
        "ready",
    )
    body = {"sessionId": session_id, "content": "", "sender": "visitor", "attachmentIds": [attachment_id]}
    sent = await http.post("/pocketping/message", json=body, headers=WIDGET)
    assert sent.status_code == 200, sent.text
    assert [a["id"] for a in sent.json()["attachments"]] == [attachment_id]
    [message] = (await http.get("/pocketping/messages", params={"sessionId": session_id})).json()["messages"]
    [attached] = message["attachments"]
    assert (attached["id"], attached["messageId"], attached["mimeType"]) == (
        attachment_id,
        sent.json()["messageId"],
        "image/png",
    )
    download = await http.get(attached["url"])
    assert download.status_code == 200
    assert download.content == image
    assert download.headers["content-type"] == "image/png"
    assert download.headers["x-content-type-options"] == "nosniff"
    assert stored_files(settings.data_dir) == [attachment_id]
    # Sent once: the same file cannot ride on a second message.
    again = await http.post("/pocketping/message", json=body, headers=WIDGET)
    assert again.status_code == 400
    assert again.json()["errors"][0]["field"] == "attachmentIds"


async def test_a_file_of_another_session_cannot_be_completed_or_sent(
    local: tuple[RunningApi, httpx.AsyncClient, Settings],
) -> None:
    _, http, _ = local
    owner, other = await connect(http, "owner"), await connect(http, "other")
    attachment = await upload(http, owner, "a.png", png(), "image/png")
    assert (await complete(http, other, attachment["id"])).status_code == 404
    body = {"sessionId": other, "content": "mine now", "sender": "visitor", "attachmentIds": [attachment["id"]]}
    refused = await http.post("/pocketping/message", json=body, headers=WIDGET)
    assert refused.status_code == 400
    assert refused.json()["errors"] == [
        {
            "field": "attachmentIds",
            "message": "each must be a file uploaded and completed in this conversation, not yet sent",
        }
    ]


@pytest.mark.parametrize(
    ("declared", "size", "status", "field", "message"),
    [
        ("image/png", 5000, 413, "size", "at most 1000 bytes"),
        ("application/zip", 10, 415, "mimeType", "one of image/png, image/jpeg, application/pdf"),
        ("image/png", 0, 400, "size", "the file's size in bytes, more than 0"),
    ],
)
async def test_a_file_refused_when_announced_leaves_nothing(
    local: tuple[RunningApi, httpx.AsyncClient, Settings],
    clean_db: AsyncEngine,
    declared: str,
    size: int,
    status: int,
    field: str,
    message: str,
) -> None:
    _, http, settings = local
    session_id = await connect(http)
    refused = await initiate(http, session_id, "thing.bin", declared, size)
    assert refused.status_code == status
    assert refused.headers["content-type"] == "application/problem+json"
    assert refused.json()["errors"] == [{"field": field, "message": message}]
    assert await attachment_rows(clean_db) == []
    assert stored_files(settings.data_dir) == []


@pytest.mark.parametrize(
    ("declared", "data", "status", "detail"),
    [
        # Announced as an image, the bytes are a PDF: a type the team accepts, but not the one declared.
        ("image/png", PDF, 415, "The file's content is application/pdf, not image/png as declared"),
        # Announced as a PDF, the bytes are a Windows program.
        ("application/pdf", EXE, 415, "The file's content is application/x-msdownload, which is not accepted here"),
        # More bytes than announced.
        ("image/png", png(40, 40) + b"\x00" * 200, 400, None),
    ],
)
async def test_bytes_that_are_not_what_was_announced_are_refused_and_deleted(
    local: tuple[RunningApi, httpx.AsyncClient, Settings],
    clean_db: AsyncEngine,
    declared: str,
    data: bytes,
    status: int,
    detail: str | None,
) -> None:
    _, http, settings = local
    session_id = await connect(http)
    announced = 100 if detail is None else len(data)
    started = await initiate(http, session_id, "thing", declared, announced)
    assert started.status_code == 200, started.text
    refused = await put_bytes(http, started.json()["uploadUrl"], data, declared)
    assert refused.status_code == status
    assert refused.headers["content-type"] == "application/problem+json"
    problem = refused.json()
    if detail is None:
        assert problem["errors"] == [{"field": "size", "message": f"is {len(data)}"}]
    else:
        assert (problem["detail"], problem["errors"][0]["field"]) == (detail, "file")
    assert await attachment_rows(clean_db) == []
    assert stored_files(settings.data_dir) == []
    assert (await complete(http, session_id, started.json()["attachmentId"])).status_code == 404


async def test_an_expired_or_altered_download_url_is_403(
    local: tuple[RunningApi, httpx.AsyncClient, Settings],
) -> None:
    _, http, _ = local
    session_id = await connect(http)
    attachment = await upload(http, session_id, "a.png", png(), "image/png")
    path = f"/files/{attachment['id']}"
    query = parse_qs(urlsplit(attachment["url"]).query)
    assert (await http.get(path, params={k: v[0] for k, v in query.items()})).status_code == 200
    past = str(int(time.time()) - 1)
    expired = await http.get(
        path, params={"expires": past, "signature": sign(SECRET, files.DOWNLOAD, attachment["id"], past)}
    )
    assert expired.status_code == 403
    assert expired.headers["content-type"] == "application/problem+json"
    assert expired.json()["errors"] == [
        {"field": "expires", "message": "This file URL has expired; ask for the message again for a fresh one"}
    ]
    later = str(int(time.time()) + 7200)  # a longer life than the URL was signed for
    tampered = await http.get(path, params={"expires": later, "signature": query["signature"][0]})
    assert tampered.status_code == 403
    assert tampered.json()["detail"] == "This file URL's signature does not match"
    # An upload URL does not download: each purpose has its own key.
    upload_signed = sign(SECRET, files.UPLOAD, attachment["id"], later)
    assert (await http.get(path, params={"expires": later, "signature": upload_signed})).status_code == 403
    assert (await http.get(path)).status_code == 403


async def test_uploads_never_finished_are_swept_with_their_bytes(
    local: tuple[RunningApi, httpx.AsyncClient, Settings], clean_db: AsyncEngine
) -> None:
    api, http, settings = local
    session_id = await connect(http)
    never_put = (await initiate(http, session_id, "a.png", "image/png", 10)).json()["attachmentId"]
    image = png()
    put_only = (await initiate(http, session_id, "b.png", "image/png", len(image))).json()
    assert (await put_bytes(http, put_only["uploadUrl"], image, "image/png")).status_code == 204
    sent = await upload(http, session_id, "c.png", image, "image/png")
    body = {"sessionId": session_id, "content": "here", "sender": "visitor", "attachmentIds": [sent["id"]]}
    assert (await http.post("/pocketping/message", json=body, headers=WIDGET)).status_code == 200
    assert stored_files(settings.data_dir) == sorted([put_only["attachmentId"], sent["id"]])
    swept = await files.sweep(clean_db, api.app.state.files)
    assert swept == 0  # nothing is past its time yet
    async with clean_db.begin() as conn:
        await conn.execute(sa.text("UPDATE attachment SET expires_at = now() - interval '1 second'"))
    assert await files.sweep(clean_db, api.app.state.files) == 2
    assert await attachment_rows(clean_db) == [(sent["id"], "ready")]
    assert stored_files(settings.data_dir) == [sent["id"]]
    assert never_put not in stored_files(settings.data_dir)
