"""Hostile values sent to the operator API: each a 4xx problem naming the field, or accepted safely; never a 500."""

from __future__ import annotations

import uuid
from typing import Any

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.factories import add_member, bearer, make_operator, make_team, personal_token
from tests.integration.gateway.test_gateway import connect, scalar, send
from tests.integration.gateway.test_hostile_bodies import DEEP_ARRAYS, DEEP_OBJECTS, JSON, problem


@pytest.fixture
async def lead(clean_db: AsyncEngine) -> tuple[uuid.UUID, dict[str, str]]:
    """A team whose lead is an admin too (analytics of every team), with their token."""
    team = await make_team(clean_db, "Support")
    operator = await make_operator(clean_db, "Lea", is_admin=True, status="online")
    await add_member(clean_db, team, operator, "lead")
    return team, bearer(await personal_token(clean_db, operator))


@pytest.mark.parametrize("deep", [DEEP_ARRAYS, DEEP_OBJECTS], ids=["arrays", "objects"])
async def test_deeply_nested_rules_and_previews_are_400_naming_the_field(
    http: httpx.AsyncClient, clean_db: AsyncEngine, lead: tuple[uuid.UUID, dict[str, str]], deep: str
) -> None:
    team, who = lead
    rules = '{"rules": [{"name": "deep", "conditions": {"identity": ' + deep + "}}]}"
    refused = problem(await http.put(f"/api/v1/teams/{team}/rules", content=rules, headers={**who, **JSON}), 400)
    assert [e["field"] for e in refused["errors"]] == ["rules"]
    assert await scalar(clean_db, "SELECT count(*) FROM routing_rule") == 0
    preview = '{"body": "Hi", "conversationId": ' + deep + "}"
    response = await http.post("/api/v1/canned-responses/preview", content=preview, headers={**who, **JSON})
    assert [e["field"] for e in problem(response, 400)["errors"]] == ["conversationId"]


@pytest.mark.parametrize(
    ("start", "end", "fields"),
    [
        ("0001-01-01", "9999-12-31", ["from", "to"]),  # dates without a time are not date-times
        ("0001-01-01T00:00:00", "0001-01-02T00:00:00", ["from"]),
        ("9999-12-31T00:00:00", "9999-12-31T23:59:59", ["from"]),
        ("2026-06-01T00:00:00", "9999-12-31T23:59:59", ["to"]),
    ],
)
async def test_analytics_at_the_ends_of_the_calendar_are_400(
    http: httpx.AsyncClient, lead: tuple[uuid.UUID, dict[str, str]], start: str, end: str, fields: list[str]
) -> None:
    for tz in ("UTC", "Pacific/Kiritimati", "America/Adak"):
        params = {"from": start, "to": end, "tz": tz}
        refused = problem(await http.get("/api/v1/analytics", params=params, headers=lead[1]), 400)
        assert [e["field"] for e in refused["errors"]] == fields, (tz, refused)


async def test_search_finds_conversations_without_an_identity(
    http: httpx.AsyncClient, clean_db: AsyncEngine, lead: tuple[uuid.UUID, dict[str, str]]
) -> None:
    anonymous = await connect(http, "visitor-anon")
    await send(http, anonymous, "hello there")
    known = await connect(http, "visitor-known")
    identify = {"sessionId": known, "identity": {"id": "u-1", "name": "Hello Kitty"}}
    assert (await http.post("/pocketping/identify", json=identify)).status_code == 200
    # A widget conversation without identify() stores no identity at all (SQL NULL, not JSON null).
    assert await scalar(clean_db, "SELECT count(*) FROM conversation WHERE identity IS NULL") == 1
    response = await http.get("/api/v1/conversations", params={"q": "hello"}, headers=lead[1])
    assert response.status_code == 200, response.text
    assert sorted(item["id"] for item in response.json()["items"]) == sorted([anonymous, known])
    by_visitor = await http.get("/api/v1/conversations", params={"q": "anon"}, headers=lead[1])
    assert [item["id"] for item in by_visitor.json()["items"]] == [anonymous]


async def test_search_survives_identities_that_are_not_objects(
    http: httpx.AsyncClient, clean_db: AsyncEngine, lead: tuple[uuid.UUID, dict[str, str]]
) -> None:
    """Rows written before the fix hold JSON null; nothing must hold a scalar or an array either."""
    session_id = await connect(http, "visitor-x")
    for stored in ("'null'::jsonb", "'[\"hello\"]'::jsonb", "'\"hello\"'::jsonb"):
        async with clean_db.begin() as conn:
            await conn.exec_driver_sql(f"UPDATE conversation SET identity = {stored}")
        response = await http.get("/api/v1/conversations", params={"q": "hello"}, headers=lead[1])
        assert response.status_code == 200, (stored, response.text)
        assert response.json()["items"] == []
    assert session_id


HOSTILE: list[tuple[dict[str, Any], int, str | None]] = [
    ({"q": "%"}, 200, None),
    ({"q": "_"}, 200, None),
    ({"q": "\\"}, 200, None),
    ({"q": "'); DROP TABLE conversation; --"}, 200, None),
    ({"q": "!!! & | <-> :*"}, 200, None),
    ({"q": "\U0001f600" * 50}, 200, None),
    ({"q": "x" * 201}, 400, "q"),
    ({"q": "a\x00b"}, 400, "q"),
    ({"q": ""}, 400, "q"),
    ({"status": "nope"}, 400, "status"),
    ({"status": "open\x00"}, 400, "status"),
    ({"teamId": "not-a-uuid"}, 400, "teamId"),
    ({"teamId": "\x00"}, 400, "teamId"),
    ({"assignee": "nobody"}, 400, "assignee"),
    ({"assignee": "x" * 37}, 400, "assignee"),
    ({"assignee": "\x00"}, 400, "assignee"),
    ({"limit": "0"}, 400, "limit"),
    ({"limit": "-1"}, 400, "limit"),
    ({"limit": "99999999999999999999999"}, 400, "limit"),
    ({"limit": "1e3"}, 400, "limit"),
    ({"limit": "abc"}, 400, "limit"),
    ({"cursor": "garbage"}, 400, "cursor"),
    ({"cursor": "x" * 501}, 400, "cursor"),
    ({"cursor": "\x00"}, 400, "cursor"),
    ({"cursor": "W10"}, 400, "cursor"),
    ({"cursor": "WyJub3QtYS1kYXRlIiwgIngiXQ"}, 400, "cursor"),
    ({"cursor": "WzEsIDJd"}, 400, "cursor"),
    ({"cursor": "WyIwMDAxLTAxLTAxVDAwOjAwOjAwKzE0OjAwIiwgIngiXQ"}, 400, "cursor"),
    ({"cursor": "e30"}, 400, "cursor"),
]


@pytest.mark.parametrize(("params", "status", "field"), HOSTILE, ids=[repr(p)[:40] for p, _, _ in HOSTILE])
async def test_hostile_conversation_filters_are_answered_without_a_500(
    http: httpx.AsyncClient,
    lead: tuple[uuid.UUID, dict[str, str]],
    params: dict[str, Any],
    status: int,
    field: str | None,
) -> None:
    await connect(http, "visitor-hostile")
    response = await http.get("/api/v1/conversations", params=params, headers=lead[1])
    assert response.status_code == status, response.text
    if field is not None:
        assert [e["field"] for e in response.json()["errors"]] == [field]
