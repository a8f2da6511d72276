"""Real files of each kind, and the widget 2.6's upload sequence (``uploadFile`` in ``client.ts``) over HTTP."""

from __future__ import annotations

import struct
import zlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import sqlalchemy as sa
from pydantic import AnyHttpUrl
from sqlalchemy.ext.asyncio import AsyncEngine

from service.dev import free_port
from service.settings import Settings
from tests.conftest import RunningApi, run_api

WIDGET = {"X-PocketPing-Version": "2.6.0"}


def png(width: int = 4, height: int = 3, rgb: tuple[int, int, int] = (200, 30, 90)) -> bytes:
    """A valid PNG of one colour."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    rows = b"".join(b"\x00" + bytes(rgb) * width for _ in range(height))
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b"")


PDF = b"%PDF-1.4\n1 0 obj << /Type /Catalog >> endobj\ntrailer << /Root 1 0 R >>\n%%EOF\n"
EXE = b"MZ\x90\x00\x03\x00\x00\x00\x04\x00\x00\x00\xff\xff\x00\x00" + b"\x00" * 48 + b"PE\x00\x00"


async def initiate(
    http: httpx.AsyncClient, session_id: str, filename: str, mime_type: str, size: int
) -> httpx.Response:
    """Step 1: ``POST /upload`` with the ``File``'s name, type and size."""
    body = {"sessionId": session_id, "filename": filename, "mimeType": mime_type, "size": size}
    return await http.post("/pocketping/upload", json=body, headers=WIDGET)


async def put_bytes(http: httpx.AsyncClient, upload_url: str, data: bytes, mime_type: str) -> httpx.Response:
    """Step 2: ``uploadToPresignedUrl``: an XHR ``PUT`` of the file with its type as ``Content-Type``."""
    return await http.put(upload_url, content=data, headers={"Content-Type": mime_type})


async def complete(http: httpx.AsyncClient, session_id: str, attachment_id: str) -> httpx.Response:
    """Step 3: ``POST /upload/complete``."""
    body = {"sessionId": session_id, "attachmentId": attachment_id}
    return await http.post("/pocketping/upload/complete", json=body, headers=WIDGET)


async def upload(
    http: httpx.AsyncClient, session_id: str, filename: str, data: bytes, mime_type: str
) -> dict[str, Any]:
    """The whole ``uploadFile(file)``; returns the attachment the widget keeps."""
    started = await initiate(http, session_id, filename, mime_type, len(data))
    assert started.status_code == 200, started.text
    put = await put_bytes(http, started.json()["uploadUrl"], data, mime_type)
    assert put.status_code == 204, put.text
    done = await complete(http, session_id, started.json()["attachmentId"])
    assert done.status_code == 200, done.text
    return done.json()  # type: ignore[no-any-return]


async def attachment_rows(engine: AsyncEngine) -> list[tuple[Any, ...]]:
    async with engine.connect() as conn:
        return [tuple(r) for r in await conn.execute(sa.text("SELECT id, status FROM attachment ORDER BY id"))]


def stored_files(data_dir: str | Path) -> list[str]:
    """The files under the local store's folder (temporary ones included: nothing may be left half-written)."""
    root = Path(data_dir) / "files"
    return sorted(p.name for p in root.iterdir()) if root.is_dir() else []


@asynccontextmanager
async def serving(
    settings: Settings, data_dir: Path, **changes: Any
) -> AsyncIterator[tuple[RunningApi, httpx.AsyncClient, Settings]]:
    """The api listening at its own ``PUBLIC_URL`` (so the upload and download URLs it signs work as given),
    its files under ``data_dir``."""
    port = free_port()
    configured = settings.model_copy(
        update={"data_dir": str(data_dir), "public_url": AnyHttpUrl(f"http://127.0.0.1:{port}"), **changes}
    )
    async with run_api(configured, port=port) as api, api.client() as http:
        yield api, http, configured
