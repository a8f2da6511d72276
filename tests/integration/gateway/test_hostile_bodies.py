"""Hostile widget bodies: deep nesting, invalid UTF-8, NUL characters and huge receipts are 4xx naming the field."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from service.bodies import MAX_JSON_DEPTH
from service.gateway.controllers import SSE_REPLAY_LIMIT
from service.gateway.hub import MAX_RECEIPT_IDS
from tests.integration.gateway.test_gateway import _sse_events, connect, scalar, send

DEEP_ARRAYS = "[" * 20_000 + "]" * 20_000
DEEP_OBJECTS = '{"a":' * 5_000 + "1" + "}" * 5_000
JSON = {"Content-Type": "application/json"}


def problem(response: httpx.Response, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    return response.json()  # type: ignore[no-any-return]


@pytest.mark.parametrize("deep", [DEEP_ARRAYS, DEEP_OBJECTS], ids=["arrays", "objects"])
async def test_deeply_nested_metadata_and_identity_are_400_naming_the_field(
    http: httpx.AsyncClient, clean_db: AsyncEngine, deep: str
) -> None:
    body = '{"visitorId": "v-deep", "metadata": {"url": "https://shop.example/", "custom": ' + deep + "}}"
    refused = problem(await http.post("/pocketping/connect", content=body, headers=JSON), 400)
    assert refused["detail"] == f"The JSON body may nest at most {MAX_JSON_DEPTH} arrays or objects deep"
    assert [e["field"] for e in refused["errors"]] == ["metadata"]
    assert await scalar(clean_db, "SELECT count(*) FROM conversation") == 0

    session_id = await connect(http, "v-deep")
    body = '{"sessionId": "' + session_id + '", "identity": ' + deep + "}"
    refused = problem(await http.post("/pocketping/identify", content=body, headers=JSON), 400)
    assert [e["field"] for e in refused["errors"]] == ["identity"]
    assert await scalar(clean_db, "SELECT identity FROM conversation") is None


async def test_nesting_up_to_the_limit_is_accepted(http: httpx.AsyncClient, clean_db: AsyncEngine) -> None:
    session_id = await connect(http, "v-nested")
    # The body itself and "identity" are two levels; "custom" may go down to the limit.
    nested: Any = 1
    for _ in range(MAX_JSON_DEPTH - 2):
        nested = [nested]
    body = {"sessionId": session_id, "identity": {"id": "u-1", "custom": nested}}
    response = await http.post("/pocketping/identify", json=body)
    assert response.status_code == 200, response.text
    stored = await scalar(clean_db, "SELECT identity -> 'custom' FROM conversation")
    assert stored == nested
    too_deep = {"sessionId": session_id, "identity": {"id": "u-1", "custom": [nested]}}
    refused = problem(await http.post("/pocketping/identify", json=too_deep), 400)
    assert [e["field"] for e in refused["errors"]] == ["identity"]


@pytest.mark.parametrize("path", ["/pocketping/connect", "/pocketping/message"])
async def test_invalid_utf8_is_400(http: httpx.AsyncClient, clean_db: AsyncEngine, path: str) -> None:
    session_id = await connect(http, "v-bytes")
    ids = b'{"visitorId": "v-\xff", "sessionId": "' + session_id.encode()
    body = ids + b'", "content": "caf\xc3", "sender": "visitor"}'
    refused = problem(await http.post(path, content=body, headers=JSON), 400)
    assert refused["detail"] == "The body is not valid UTF-8"
    assert refused["errors"] == [{"field": "body", "message": "invalid byte at position 17"}]
    assert await scalar(clean_db, "SELECT count(*) FROM message") == 0
    assert await scalar(clean_db, "SELECT count(*) FROM conversation") == 1


async def test_nul_in_metadata_url_or_identity_is_400_naming_the_field(
    http: httpx.AsyncClient, clean_db: AsyncEngine
) -> None:
    connect_body = {"visitorId": "v-nul", "metadata": {"url": "https://shop.example/\x00admin"}}
    refused = problem(await http.post("/pocketping/connect", json=connect_body), 400)
    assert refused["detail"] == "metadata.url must not contain NUL characters"
    assert refused["errors"] == [{"field": "metadata.url", "message": "NUL characters are not allowed"}]
    assert await scalar(clean_db, "SELECT count(*) FROM conversation") == 0

    session_id = await connect(http, "v-nul")
    identify = {"sessionId": session_id, "identity": {"id": "u-1", "name": "Ana\x00"}}
    refused = problem(await http.post("/pocketping/identify", json=identify), 400)
    assert refused["errors"] == [{"field": "identity.name", "message": "NUL characters are not allowed"}]
    # A NUL in a key is named by the path to it, too.
    identify = {"sessionId": session_id, "identity": {"id": "u-1", "tags": [{"a\x00": 1}]}}
    refused = problem(await http.post("/pocketping/identify", json=identify), 400)
    assert [e["field"] for e in refused["errors"]] == ["identity.tags.0"]
    assert await scalar(clean_db, "SELECT identity FROM conversation") is None
    # An escaped backslash before "u0000" is text, not a NUL.
    fine = json.dumps({"sessionId": session_id, "identity": {"id": "u-1", "name": "C:\\u0000"}})
    assert (await http.post("/pocketping/identify", content=fine, headers=JSON)).status_code == 200
    assert await scalar(clean_db, "SELECT identity ->> 'name' FROM conversation") == "C:\\u0000"


async def test_a_read_receipt_names_at_most_the_limit_of_messages(
    http: httpx.AsyncClient, clean_db: AsyncEngine
) -> None:
    session_id = await connect(http, "v-read")
    sent = (await send(http, session_id, "hello")).json()["messageId"]
    ids = [sent] + [f"m-{n}" for n in range(6_000)]
    body = {"sessionId": session_id, "messageIds": ids, "status": "read"}
    refused = problem(await http.post("/pocketping/read", json=body), 422)
    assert [e["field"] for e in refused["errors"]] == ["messageIds"]
    assert await scalar(clean_db, "SELECT status FROM message") == "sent"
    body["messageIds"] = ids[:MAX_RECEIPT_IDS]
    accepted = await http.post("/pocketping/read", json=body)
    assert accepted.status_code == 200, accepted.text
    assert accepted.json() == {"updated": 1}


@pytest.mark.parametrize("cursor", ["id", "timestamp"])
async def test_sse_replay_in_a_long_conversation_starts_at_the_cursor(
    api: Any, http: httpx.AsyncClient, clean_db: AsyncEngine, cursor: str
) -> None:
    """1,100 messages: the replay after the 1,050th is exactly the 50 newer ones, oldest first."""
    session_id = await connect(http, "v-long")
    async with clean_db.begin() as conn:
        await conn.exec_driver_sql(
            "INSERT INTO message (id, conversation_id, sender, content, created_at) "
            "SELECT 'm-' || lpad(n::text, 5, '0'), $1, 'visitor', 'n' || n, "
            "timestamptz '2026-01-01 00:00Z' + n * interval '1 second' FROM generate_series(1, 1100) AS n",
            (session_id,),
        )
    assert SSE_REPLAY_LIMIT < 1100
    after = "m-01050" if cursor == "id" else "2026-01-01T00:17:30Z"  # the 1,050th message's instant
    params = {"sessionId": session_id, "after": after}
    async with api.client() as sse, sse.stream("GET", "/pocketping/stream", params=params) as response:
        events = _sse_events(response)
        assert await anext(events) == ("connected", {"sessionId": session_id})
        replayed = [(await anext(events))[1]["data"]["id"] for _ in range(50)]
    assert replayed == [f"m-{n:05d}" for n in range(1051, 1101)]
