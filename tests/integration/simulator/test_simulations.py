"""The policy simulator through the API on a generated month of history (tests/support/history_month.py)."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from service.simulator import services
from tests.factories import bearer, personal_token
from tests.support.history_month import END, START, Month, build_month

PERIOD = {"from": START.isoformat(), "to": END.isoformat()}
# A real assignment starts a routing job's latency (50-400 ms here) after the decision; the replay's at once.
LATENCY = 1.0


@pytest.fixture
async def month(clean_db: AsyncEngine) -> Month:
    return await build_month(clean_db)


@pytest.fixture
async def lead(clean_db: AsyncEngine, month: Month) -> dict[str, str]:
    assert month.lead_id is not None
    return bearer(await personal_token(clean_db, month.lead_id))


async def simulate(http: httpx.AsyncClient, month: Month, headers: dict[str, str], **body: Any) -> httpx.Response:
    return await http.post(f"/api/v1/teams/{month.team_id}/simulations", json=PERIOD | body, headers=headers)


def within(simulated: float, real: float) -> bool:
    """Within 5% of the real figure (or of the routing latency, for waits near zero)."""
    return abs(simulated - real) <= max(0.05 * abs(real), LATENCY)


async def test_the_real_settings_reproduce_the_real_waits(
    http: httpx.AsyncClient, month: Month, lead: dict[str, str]
) -> None:
    response = await simulate(http, month, lead, draft={"firstResponseTargetSeconds": 120})
    assert response.status_code == 200, response.text
    body = response.json()
    real, simulated = body["real"], body["simulated"]
    assert real["arrivals"] == simulated["arrivals"] == month.conversations
    # The month is busy: a wait at p90 of minutes, a fifth of visitors leaving before anyone took them.
    assert real["waits"]["p90Seconds"] > 300
    assert real["abandonmentRate"] > 0.1
    for key in ("averageSeconds", "p50Seconds", "p90Seconds", "p99Seconds"):
        assert within(simulated["waits"][key], real["waits"][key]), key
    for key in ("answered",):
        assert abs(simulated["waits"][key] - real["waits"][key]) <= 0.05 * real["waits"][key]
    assert abs(simulated["abandoned"] - real["abandoned"]) <= 0.05 * real["abandoned"]
    assert abs(simulated["slaAttainment"] - real["slaAttainment"]) <= 0.05 * real["slaAttainment"]
    assert (real["unanswered"], simulated["unanswered"]) == (0, 0)
    assert abs(simulated["jainIndex"] - real["jainIndex"]) <= 0.05 * real["jainIndex"]
    # Each operator's share comes out as it really was (within 5%); the lead (capacity 0) takes nothing.
    for mine, theirs in zip(simulated["operators"], real["operators"], strict=True):
        assert mine["operatorId"] == theirs["operatorId"]
        assert abs(mine["assignments"] - theirs["assignments"]) <= max(0.05 * theirs["assignments"], 1)
    assert body["draft"]["routingPolicy"] == "least_busy"
    assert [(m["displayName"], m["capacity"]) for m in body["draft"]["members"]] == [
        ("Ada", 2),
        ("Ben", 3),
        ("Cy", 2),
        ("Dee", 2),
        ("Lena", 0),
        ("Nia", 2),
    ]


async def test_more_capacity_gives_lower_waits(http: httpx.AsyncClient, month: Month, lead: dict[str, str]) -> None:
    real = (await simulate(http, month, lead)).json()["simulated"]
    more = {"defaultCapacity": 4, "members": [{"operatorId": str(month.operators["Ben"]), "capacity": 5}]}
    body = (await simulate(http, month, lead, draft=more)).json()
    roomier = body["simulated"]
    assert [m["capacity"] for m in body["draft"]["members"]] == [4, 5, 4, 4, 0, 4]
    assert roomier["waits"]["averageSeconds"] < real["waits"]["averageSeconds"] / 2
    assert roomier["waits"]["p90Seconds"] < real["waits"]["p90Seconds"]
    assert roomier["waits"]["p99Seconds"] < real["waits"]["p99Seconds"]
    assert roomier["abandoned"] < real["abandoned"]
    # And less capacity the other way (abandonment is not asserted: a visitor who stayed in reality is
    # assumed to stay, so fewer slots cannot add leavers beyond the real ones; docs/routing.md).
    less = (await simulate(http, month, lead, draft={"defaultCapacity": 1})).json()["simulated"]
    assert less["waits"]["averageSeconds"] > real["waits"]["averageSeconds"]
    assert less["waits"]["p90Seconds"] > real["waits"]["p90Seconds"]


async def test_business_hours_in_the_draft_make_the_queue_wait_for_them(
    http: httpx.AsyncClient, month: Month, lead: dict[str, str]
) -> None:
    real = (await simulate(http, month, lead)).json()
    assert real["draft"]["businessHours"] is None  # the team has none: 24/7
    hours = {"timeZone": "Europe/Paris", "weekly": {"mon": ["09:00-17:00"], "tue": ["09:00-17:00"]}}
    body = (await simulate(http, month, lead, draft={"businessHours": hours})).json()
    assert body["draft"]["businessHours"] == hours | {"holidays": []}
    # Two days a week instead of every day: conversations wait for Monday or Tuesday.
    assert body["simulated"]["waits"]["averageSeconds"] > 10 * real["simulated"]["waits"]["averageSeconds"]


async def test_two_runs_give_identical_numbers(http: httpx.AsyncClient, month: Month, lead: dict[str, str]) -> None:
    draft = {"routingPolicy": "round_robin", "firstResponseTargetSeconds": 60}
    first = await simulate(http, month, lead, draft=draft)
    second = await simulate(http, month, lead, draft=draft)
    assert first.status_code == second.status_code == 200
    assert first.content == second.content


@pytest.mark.parametrize(
    ("body", "status", "field", "message"),
    [
        ({"to": START.isoformat()}, 400, "to", "must be after from"),
        ({"to": "2026-12-03T00:00:00Z"}, 400, "to", "a simulation may span at most 31 days"),
        (
            {"from": "0001-01-01T00:00:00+01:00"},
            400,
            "from",
            "must be a time between the years 1 and 9999 in UTC",
        ),
        ({"to": "9999-12-31T23:59:59-01:00"}, 400, "to", "must be a time between the years 1 and 9999 in UTC"),
        ({"from": "yesterday"}, 400, "from", None),
        ({"draft": {"routingPolicy": "manual"}}, 400, "draft.routingPolicy", None),
        ({"draft": {"defaultCapacity": -1}}, 400, "draft.defaultCapacity", None),
        ({"draft": {"firstResponseTargetSeconds": 0}}, 400, "draft.firstResponseTargetSeconds", None),
        (
            {"draft": {"members": [{"operatorId": "00000000-0000-0000-0000-0000000000ff"}]}},
            422,
            "draft.members[0].operatorId",
            "is not a member of this team",
        ),
        ({"draft": {"businessHours": {"timeZone": "Mars/Olympus"}}}, 400, "draft.businessHours.timeZone", None),
        ({"draft": {"sla": {}}}, 422, "draft.sla", "is not simulated yet: leave it out (docs/routing.md)"),
    ],
)
async def test_bad_input_is_a_problem_naming_the_field(
    http: httpx.AsyncClient,
    month: Month,
    lead: dict[str, str],
    body: dict[str, Any],
    status: int,
    field: str,
    message: str | None,
) -> None:
    response = await simulate(http, month, lead, **body)
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    [error] = response.json()["errors"]
    assert error["field"] == field
    if message is not None:
        assert error["message"] == message


async def test_the_work_is_bounded(
    http: httpx.AsyncClient, month: Month, lead: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(services, "MAX_ARRIVALS", 100)
    response = await simulate(http, month, lead)
    assert (response.status_code, response.json()["errors"]) == (
        400,
        [{"field": "to", "message": f"the period holds {month.conversations} conversations, at most 100: shorten it"}],
    )
    monkeypatch.setattr(services, "MAX_ARRIVALS", 100_000)
    monkeypatch.setattr(services, "MAX_CONVERSATION_MEMBERS", 1000)
    response = await simulate(http, month, lead)
    assert (response.status_code, response.json()["errors"]) == (
        400,
        [
            {
                "field": "to",
                "message": f"the period holds {month.conversations} conversations for 6 members; "
                "conversations times members may be at most 1000: shorten it",
            }
        ],
    )
    monkeypatch.setattr(services, "MAX_CONVERSATION_MEMBERS", 10**9)
    monkeypatch.setattr(services, "MAX_PRESENCE_CHANGES", 10)
    response = await simulate(http, month, lead)
    assert response.status_code == 400
    assert response.json()["errors"][0]["message"].endswith("presence changes, at most 10: shorten it")


async def test_a_team_whose_policy_is_manual_needs_a_policy_in_the_draft(
    http: httpx.AsyncClient, clean_db: AsyncEngine, month: Month, lead: dict[str, str]
) -> None:
    async with clean_db.begin() as conn:
        await conn.exec_driver_sql("UPDATE team SET routing_policy = 'manual'")
    response = await simulate(http, month, lead)
    assert (response.status_code, response.json()["errors"]) == (
        422,
        [{"field": "draft.routingPolicy", "message": "the team routes manually: give round_robin or least_busy"}],
    )
    assert (await simulate(http, month, lead, draft={"routingPolicy": "least_busy"})).status_code == 200
