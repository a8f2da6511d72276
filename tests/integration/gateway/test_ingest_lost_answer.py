"""A visitor message whose database connection dies under its statement: committed or not, the answer says so.

The connection loss is made where it is ambiguous, after the statement reached PostgreSQL (the batch's own
``_insert`` runs, then its connection "resets"), and where it is not (the reset comes before the statement)."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from pocketping.models import Message
from sqlalchemy.ext.asyncio import AsyncEngine

from service.gateway.bridge import RoutingBridge
from tests.conftest import RunningApi
from tests.integration.gateway.test_gateway import connect, send


async def _stored(engine: AsyncEngine, session_id: str) -> list[str]:
    async with engine.connect() as conn:
        rows = await conn.execute(sa.text("SELECT content FROM message WHERE conversation_id = :s"), {"s": session_id})
        return list(rows.scalars())


async def test_an_answer_lost_after_the_commit_is_a_200_and_one_row(
    api: RunningApi, http: httpx.AsyncClient, clean_db: AsyncEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    session_id = await connect(http)
    insert = RoutingBridge._insert

    async def committed_then_reset(self: RoutingBridge, messages: list[Message]) -> list[Any]:
        await insert(self, messages)
        raise ConnectionResetError("connection reset by peer")

    monkeypatch.setattr(RoutingBridge, "_insert", committed_then_reset)
    answer = await send(http, session_id, "Is anyone there?")
    assert answer.status_code == 200, answer.text
    assert answer.json()["messageId"]
    # The visitor has no reason to send it again, and it is there once.
    assert await _stored(clean_db, session_id) == ["Is anyone there?"]


async def test_a_connection_lost_before_the_statement_is_a_503_and_no_row(
    api: RunningApi, http: httpx.AsyncClient, clean_db: AsyncEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    session_id = await connect(http)

    async def reset_first(self: RoutingBridge, messages: list[Message]) -> list[Any]:
        raise ConnectionResetError("connection reset by peer")

    monkeypatch.setattr(RoutingBridge, "_insert", reset_first)
    answer = await send(http, session_id, "Hello?")
    assert answer.status_code == 503, answer.text
    assert answer.headers["Retry-After"] == "5"
    assert await _stored(clean_db, session_id) == []
