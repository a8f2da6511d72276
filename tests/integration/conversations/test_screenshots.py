"""Screenshots end to end, as the widget 2.6 speaks them: asked over REST, requested on the widget's socket and
poll, uploaded (upload URL, PUT, complete), stored once, shown in the REST API and on the dashboard."""

from __future__ import annotations

import struct
import zlib
from typing import Any
from urllib.parse import urlsplit

import httpx
import sqlalchemy as sa
import websockets
from redis.asyncio import Redis
from sqlalchemy.ext.asyncio import AsyncEngine

from service.settings import Settings
from tests.conftest import RunningApi
from tests.factories import add_member, bearer, make_operator, make_team, personal_token
from tests.integration.gateway.test_team_presence_typing_read import connect, frame, no_frame
from tests.support.routing import rows


def png(width: int = 2, height: int = 1) -> bytes:
    """A real (tiny, grey) PNG, as the widget's canvas.toBlob('image/png') makes one."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    raw = b"".join(b"\x00" + b"\x80" * width for _ in range(height))
    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b"")


async def lena_and_visitor(http: httpx.AsyncClient, engine: AsyncEngine) -> tuple[dict[str, str], str]:
    """Lena of Support, and a visitor connected through the widget protocol whose conversation is Support's."""
    team = await make_team(engine, "Support", is_default=True)
    lena = await make_operator(engine, "Lena")
    await add_member(engine, team, lena)
    session_id = (await connect(http, "v-shots", "https://shop.example/cart"))["sessionId"]
    async with engine.begin() as conn:
        await conn.execute(
            sa.text("UPDATE conversation SET team_id = :t WHERE id = :id"), {"t": team, "id": session_id}
        )
    return bearer(await personal_token(engine, lena)), session_id


async def signals(redis: Redis, settings: Settings) -> int:
    """The signals counted so far in this test (every address, every window)."""
    keys = [key async for key in redis.scan_iter(match=f"{settings.redis_prefix}:rate:signal:*")]
    return sum([int(await redis.get(key)) for key in keys])


async def ask(http: httpx.AsyncClient, headers: dict[str, str], session_id: str) -> dict[str, Any]:
    response = await http.post(f"/api/v1/conversations/{session_id}/screenshots", headers=headers)
    assert response.status_code == 201, response.text
    return response.json()  # type: ignore[no-any-return]


async def start_upload(http: httpx.AsyncClient, session_id: str, request_id: str) -> httpx.Response:
    return await http.post("/pocketping/screenshot/upload", json={"sessionId": session_id, "requestId": request_id})


async def test_an_operator_asks_the_widget_uploads_as_client_ts_does_and_operators_see_it(
    api: RunningApi, http: httpx.AsyncClient, clean_db: AsyncEngine, settings: Settings
) -> None:
    headers, session_id = await lena_and_visitor(http, clean_db)
    async with websockets.connect(f"{api.ws_url}/pocketping/stream?sessionId={session_id}") as socket:
        asked = await ask(http, headers, session_id)
        request_id = asked["id"]
        assert asked == {
            "id": request_id,
            "conversationId": session_id,
            "status": "pending",
            "requestedBy": {"id": asked["requestedBy"]["id"], "displayName": "Lena"},
            "requestedAt": asked["requestedAt"],
            "expiresAt": asked["expiresAt"],
            "capturedAt": None,
            "mimeType": None,
            "size": None,
            "imageUrl": None,
        }
        widget_request = {
            "requestId": request_id,
            "requestedBy": "Lena",
            "requestedFrom": "switchboard",
            "silent": True,
        }
        assert await frame(socket) == {"type": "screenshot_request", "data": widget_request}

        # The polling fallback hands the same request out once; then there is nothing pending.
        first = await http.get("/pocketping/screenshot/requests", params={"sessionId": session_id})
        assert (first.status_code, first.json()) == (200, {"requests": [widget_request]})
        again = await http.get("/pocketping/screenshot/requests", params={"sessionId": session_id})
        assert (again.status_code, again.json()) == (200, {"requests": []})

        # client.ts: POST /screenshot/upload, PUT the PNG to uploadUrl, POST /screenshot/upload/complete.
        started = await start_upload(http, session_id, request_id)
        assert started.status_code == 200, started.text
        upload = started.json()
        key = upload["attachmentId"]
        assert upload == {
            "attachmentId": key,
            "uploadUrl": f"http://127.0.0.1:8000/pocketping/screenshot/upload/{key}",
            "expiresAt": upload["expiresAt"],
            "storageKey": f"screenshot/{request_id}",
        }
        image = png()
        put = await http.put(urlsplit(upload["uploadUrl"]).path, content=image, headers={"Content-Type": "image/png"})
        assert (put.status_code, put.content) == (204, b"")
        done = await http.post(
            "/pocketping/screenshot/upload/complete",
            json={"sessionId": session_id, "requestId": request_id, "attachmentId": key, "size": len(image)},
        )
        assert (done.status_code, done.json()) == (
            200,
            {"success": True, "attachmentId": key, "screenshotId": request_id},
        )
        await no_frame(socket)  # nothing of it is shown in the widget's chat

    listed = await http.get(f"/api/v1/conversations/{session_id}/screenshots", headers=headers)
    image_url = f"/api/v1/conversations/{session_id}/screenshots/{request_id}/image"
    [shown] = listed.json()["items"]
    assert (listed.status_code, listed.json()["nextCursor"]) == (200, None)
    assert shown == {
        **asked,
        "status": "done",
        "capturedAt": shown["capturedAt"],
        "mimeType": "image/png",
        "size": len(image),
        "imageUrl": image_url,
    }
    served = await http.get(image_url, headers=headers)
    assert (served.status_code, served.content, served.headers["content-type"]) == (200, image, "image/png")
    assert (served.headers["x-content-type-options"], served.headers["content-security-policy"]) == (
        "nosniff",
        "default-src 'none'; sandbox",
    )
    assert (await http.get(image_url)).status_code == 401

    page = await http.get(f"/app/conversations/{session_id}", headers=headers)
    assert f'<a href="{image_url}" target="_blank" rel="noopener"><img src="{image_url}"' in page.text
    [event] = await rows(clean_db, "SELECT kind, conversation_id, data FROM event WHERE kind LIKE 'screenshot.%'")
    assert event == {
        "kind": "screenshot.captured",
        "conversation_id": session_id,
        "data": {
            "conversationId": session_id,
            "screenshotId": request_id,
            "requestedBy": asked["requestedBy"]["id"],
            "mimeType": "image/png",
            "size": len(image),
        },
    }

    # Stored once: the upload URL and the request are used up.
    replay = await http.put(urlsplit(upload["uploadUrl"]).path, content=image)
    assert (replay.status_code, replay.json()["detail"]) == (404, "Upload not found")
    restart = await start_upload(http, session_id, request_id)
    assert (restart.status_code, restart.json()["errors"]) == (
        409,
        [{"field": "requestId", "message": "This screenshot is already uploaded"}],
    )


async def test_a_poll_with_nothing_pending_is_an_empty_answer_costing_one_signal(
    http: httpx.AsyncClient, clean_db: AsyncEngine, settings: Settings, redis: Redis
) -> None:
    _, session_id = await lena_and_visitor(http, clean_db)
    before = await signals(redis, settings)
    polled = await http.get("/pocketping/screenshot/requests", params={"sessionId": session_id})
    assert (polled.status_code, polled.json()) == (200, {"requests": []})
    assert await signals(redis, settings) == before + 1
    unknown = await http.get("/pocketping/screenshot/requests", params={"sessionId": "no-such-session"})
    assert (unknown.status_code, unknown.json()["detail"]) == (404, "Session not found")


async def test_uploads_that_are_not_images_too_big_late_or_mismatched_store_nothing(
    http: httpx.AsyncClient, clean_db: AsyncEngine, settings: Settings
) -> None:
    headers, session_id = await lena_and_visitor(http, clean_db)
    request_id = (await ask(http, headers, session_id))["id"]
    key = (await start_upload(http, session_id, request_id)).json()["attachmentId"]
    path = f"/pocketping/screenshot/upload/{key}"

    html = await http.put(path, content=b"<svg onload=alert(1)>", headers={"Content-Type": "image/png"})
    assert (html.status_code, html.json()["errors"]) == (
        422,
        [{"field": "body", "message": "The upload is not a PNG, JPEG or WebP image"}],
    )
    too_big = png() + b"\x00" * settings.screenshot_max_bytes
    assert (await http.put(path, content=too_big)).status_code == 413
    early = await http.post(
        "/pocketping/screenshot/upload/complete",
        json={"sessionId": session_id, "requestId": request_id, "attachmentId": key, "size": 10},
    )
    assert (early.status_code, early.json()["errors"][0]["field"]) == (409, "attachmentId")
    assert await rows(clean_db, "SELECT status, content, mime_type, size FROM screenshot") == [
        {"status": "uploading", "content": None, "mime_type": None, "size": None}
    ]

    image = png(3, 3)
    assert (await http.put(path, content=image)).status_code == 204
    wrong_size = await http.post(
        "/pocketping/screenshot/upload/complete",
        json={"sessionId": session_id, "requestId": request_id, "attachmentId": key, "size": len(image) + 1},
    )
    assert (wrong_size.status_code, wrong_size.json()["errors"]) == (
        400,
        [{"field": "size", "message": f"size is not valid: the stored image has {len(image)} bytes"}],
    )

    # A request the widget did not take up in time expires: no upload, shown as expired.
    late_id = (await ask(http, headers, session_id))["id"]
    async with clean_db.begin() as conn:
        await conn.execute(sa.text("UPDATE screenshot SET expires_at = now() WHERE id = :id"), {"id": late_id})
    late = await start_upload(http, session_id, late_id)
    assert (late.status_code, late.json()["errors"]) == (
        409,
        [{"field": "requestId", "message": "This screenshot request has expired"}],
    )
    polled = await http.get("/pocketping/screenshot/requests", params={"sessionId": session_id})
    assert polled.json() == {"requests": []}
    listed = (await http.get(f"/api/v1/conversations/{session_id}/screenshots", headers=headers)).json()
    assert [(item["id"], item["status"]) for item in listed["items"]] == [(request_id, "done"), (late_id, "expired")]
    page = await http.get(f"/app/conversations/{session_id}/thread", headers=headers)
    assert "The visitor's widget did not send it in time." in page.text

    # Another session cannot take up this conversation's request; a bad id is a 400 naming it.
    other = (await connect(http, "v-other"))["sessionId"]
    assert (await start_upload(http, other, request_id)).status_code == 404
    bad = await start_upload(http, session_id, "not-a-uuid")
    assert (bad.status_code, bad.json()["errors"][0]["field"]) == (400, "requestId")
    missing = await http.get(f"/api/v1/conversations/{session_id}/screenshots/{late_id}/image", headers=headers)
    assert (missing.status_code, missing.json()["detail"]) == (404, "Screenshot not found")
