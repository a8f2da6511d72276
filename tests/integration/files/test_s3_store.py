"""Attachments in an S3-compatible bucket (moto's S3 server on loopback as the stand-in): stored, served through
presigned URLs, and nothing kept of a refused file. (moto does not check presigned signatures or expiry, so
refusing an altered or expired URL is the real store's part; our own signed URLs are tested in
test_widget_attachments.py.)"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import boto3
import httpx
import pytest
from moto.server import ThreadedMotoServer
from sqlalchemy.ext.asyncio import AsyncEngine

from service.settings import Settings
from tests.factories import make_team
from tests.support.files import PDF, WIDGET, attachment_rows, initiate, png, put_bytes, serving, upload

BUCKET = "switchboard-files"
CREDENTIALS = {"aws_access_key_id": "test-key", "aws_secret_access_key": "test-secret", "region_name": "us-east-1"}


@pytest.fixture(scope="module")
def s3_url() -> Iterator[str]:
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    try:
        yield f"http://{host}:{port}"
    finally:
        server.stop()


@pytest.fixture
def bucket(s3_url: str) -> Iterator[Any]:
    client = boto3.client("s3", endpoint_url=s3_url, **CREDENTIALS)
    client.create_bucket(Bucket=BUCKET)
    yield client
    for item in client.list_objects_v2(Bucket=BUCKET).get("Contents", []):
        client.delete_object(Bucket=BUCKET, Key=item["Key"])
    client.delete_bucket(Bucket=BUCKET)
    client.close()


@pytest.fixture
async def s3_api(
    settings: Settings, clean_db: AsyncEngine, tmp_path: Path, s3_url: str, bucket: Any
) -> AsyncIterator[httpx.AsyncClient]:
    store = {
        "file_store": "s3",
        "s3_bucket": BUCKET,
        "s3_endpoint_url": s3_url,
        "s3_region": CREDENTIALS["region_name"],
        "s3_access_key_id": CREDENTIALS["aws_access_key_id"],
        "s3_secret_access_key": CREDENTIALS["aws_secret_access_key"],
    }
    async with serving(settings, tmp_path, **store) as (_, http, _):
        await make_team(clean_db, "Support", is_default=True, attachment_max_bytes=1000)
        yield http


def keys(bucket: Any) -> list[str]:
    return sorted(item["Key"] for item in bucket.list_objects_v2(Bucket=BUCKET).get("Contents", []))


async def test_a_widget_file_is_kept_in_the_bucket_and_served_by_a_presigned_url(
    s3_api: httpx.AsyncClient, bucket: Any, s3_url: str, tmp_path: Path
) -> None:
    session_id = (await s3_api.post("/pocketping/connect", json={"visitorId": "v"}, headers=WIDGET)).json()["sessionId"]
    image = png()
    attachment = await upload(s3_api, session_id, "photo.png", image, "image/png")
    assert keys(bucket) == [f"attachments/{attachment['id']}"]
    assert not (tmp_path / "files").exists()  # nothing on local disk
    stored = bucket.get_object(Bucket=BUCKET, Key=f"attachments/{attachment['id']}")
    assert (stored["Body"].read(), stored["ContentType"]) == (image, "image/png")
    body = {"sessionId": session_id, "content": "see", "sender": "visitor", "attachmentIds": [attachment["id"]]}
    assert (await s3_api.post("/pocketping/message", json=body, headers=WIDGET)).status_code == 200
    [message] = (await s3_api.get("/pocketping/messages", params={"sessionId": session_id})).json()["messages"]
    url = message["attachments"][0]["url"]
    assert url.startswith(f"{s3_url}/{BUCKET}/attachments/{attachment['id']}?")
    assert "X-Amz-Signature=" in url and "X-Amz-Expires=3600" in url
    async with httpx.AsyncClient() as outside:
        download = await outside.get(url)
        assert (download.status_code, download.content) == (200, image)
        assert download.headers["content-type"] == "image/png"


async def test_a_refused_file_never_reaches_the_bucket(
    s3_api: httpx.AsyncClient, bucket: Any, clean_db: AsyncEngine
) -> None:
    session_id = (await s3_api.post("/pocketping/connect", json={"visitorId": "v"}, headers=WIDGET)).json()["sessionId"]
    started = (await initiate(s3_api, session_id, "x.png", "image/png", len(PDF))).json()
    refused = await put_bytes(s3_api, started["uploadUrl"], PDF, "image/png")
    assert refused.status_code == 415
    assert (await initiate(s3_api, session_id, "big.png", "image/png", 5000)).status_code == 413
    assert keys(bucket) == []
    assert await attachment_rows(clean_db) == []
