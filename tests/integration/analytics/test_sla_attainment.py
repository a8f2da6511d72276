"""SLA attainment in analytics: docs/analytics.md's example, over the API (JSON and CSV), exactly."""

from __future__ import annotations

import csv
import io
import re
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from service.db.models import SlaClock
from tests.factories import add_member, bearer, make_operator, make_team, personal_token
from tests.support.routing import make_conversation

IN_PERIOD = datetime(2026, 11, 24, 10, 0, tzinfo=UTC)
PERIOD = {"from": "2026-11-23T00:00:00Z", "to": "2026-11-30T00:00:00Z"}


async def clock(engine: AsyncEngine, team_id: uuid.UUID, target: str, state: str, **values: Any) -> None:
    """A conversation of the team created in the period, with one clock: ``met``, ``missed`` or ``running``."""
    conversation_id, _ = await make_conversation(
        engine, team_id, status="assigned", created_at=values.pop("at", IN_PERIOD)
    )
    started = IN_PERIOD
    row = {
        "conversation_id": conversation_id,
        "target": target,
        "team_id": team_id,
        "started_at": started,
        "due_at": started + timedelta(minutes=5),
        "stopped_at": None if state == "running" else started + timedelta(minutes=3 if state == "met" else 9),
        "ever_breached": state == "missed",
        "breached_at": started + timedelta(minutes=5) if state == "missed" else None,
        **values,
    }
    async with engine.begin() as conn:
        await conn.execute(sa.insert(SlaClock.__table__).values(**row))  # type: ignore[attr-defined]


async def test_attainment_per_target_and_team_matches_the_docs_example(
    http: httpx.AsyncClient, clean_db: AsyncEngine
) -> None:
    support, billing = await make_team(clean_db, "Support"), await make_team(clean_db, "Billing")
    lea = await make_operator(clean_db, "Lea")
    await add_member(clean_db, support, lea, "lead")
    await add_member(clean_db, billing, lea, "lead")
    for state in ("met", "met", "met", "missed", "running"):
        await clock(clean_db, support, "first_response", state)
    await clock(clean_db, billing, "first_response", "missed")
    for state in ("met", "missed", "missed"):
        await clock(clean_db, support, "next_response", state)
    # Not counted: a next-response clock still waiting for the visitor, a conversation from another week.
    await clock(clean_db, support, "next_response", "met", cycles=0)
    await clock(clean_db, support, "resolution", "missed", at=IN_PERIOD - timedelta(days=7))

    auth = bearer(await personal_token(clean_db, lea))
    response = await http.get("/api/v1/analytics", params=PERIOD, headers=auth)
    assert response.status_code == 200, response.text
    sla = response.json()["sla"]
    assert sla["overall"] == [
        {"target": "first_response", "tracked": 6, "met": 3, "missed": 2, "running": 1, "attainment": 0.6},
        {"target": "next_response", "tracked": 3, "met": 1, "missed": 2, "running": 0, "attainment": 0.3333},
        {"target": "resolution", "tracked": 0, "met": 0, "missed": 0, "running": 0, "attainment": None},
    ]
    assert [(t["name"], t["target"], t["attainment"], t["tracked"]) for t in sla["teams"]] == [
        ("Billing", "first_response", 0.0, 1),
        ("Billing", "next_response", None, 0),
        ("Billing", "resolution", None, 0),
        ("Support", "first_response", 0.75, 5),
        ("Support", "next_response", 0.3333, 3),
        ("Support", "resolution", None, 0),
    ]
    exported = await http.get("/api/v1/analytics/export.csv", params={**PERIOD, "metric": "sla"}, headers=auth)
    assert exported.status_code == 200
    assert list(csv.DictReader(io.StringIO(exported.text))) == [
        {"target": "first_response", "tracked": "6", "met": "3", "missed": "2", "running": "1", "attainment": "0.6"},
        {"target": "next_response", "tracked": "3", "met": "1", "missed": "2", "running": "0", "attainment": "0.3333"},
        {"target": "resolution", "tracked": "0", "met": "0", "missed": "0", "running": "0", "attainment": ""},
    ]
    by_team = await http.get("/api/v1/analytics/export.csv", params={**PERIOD, "metric": "slaByTeam"}, headers=auth)
    assert [(r["name"], r["target"], r["attainment"]) for r in csv.DictReader(io.StringIO(by_team.text))][:2] == [
        ("Billing", "first_response", "0.0"),
        ("Billing", "next_response", ""),
    ]
    page = await http.get("/app/analytics", params={"from": "2026-11-23", "to": "2026-11-29"}, headers=auth)
    assert page.status_code == 200, page.text
    rows = re.findall(r'data-sla-overall="(\w+)">(?:<td>[^<]*</td>){5}<td>([^<]+)</td>', page.text)
    assert rows == [("first_response", "60.0 %"), ("next_response", "33.3 %"), ("resolution", "—")]
