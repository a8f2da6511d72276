"""CSAT end to end: a close asks the widget, the visitor rates through the widget protocol, the conversation, the
webhooks and the analytics show it. Real api, arq workers, PostgreSQL and Redis; the widget as client.ts speaks."""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
import websockets
from sqlalchemy.ext.asyncio import AsyncEngine

from service.realtime.relay import EventRelay
from service.settings import Settings
from tests.conftest import RunningApi
from tests.factories import add_member, bearer, make_operator, make_team, personal_token
from tests.integration.gateway.test_gateway import connect, next_event, send
from tests.integration.webhooks.test_webhooks import Receiver, documented_verifier, serve
from tests.integration.workers.test_worker import run_burst
from tests.support.routing import make_conversation, rows

START = datetime(2026, 11, 23, tzinfo=UTC)
END = datetime(2026, 11, 25, tzinfo=UTC)


async def test_a_close_asks_the_visitor_who_rates_once_and_everyone_hears_of_it(
    api: RunningApi, http: httpx.AsyncClient, settings: Settings, clean_db: AsyncEngine
) -> None:
    team = await make_team(clean_db, "Support", is_default=True, routing_policy="round_robin")
    lena, ada = await make_operator(clean_db, "Lena"), await make_operator(clean_db, "Ada", status="online")
    await add_member(clean_db, team, lena, "lead")
    await add_member(clean_db, team, ada)
    as_lena, as_ada = bearer(await personal_token(clean_db, lena)), bearer(await personal_token(clean_db, ada))
    response = await http.patch(f"/api/v1/teams/{team}", json={"csatEnabled": True}, headers=as_lena)
    assert (response.status_code, response.json()["csatEnabled"]) == (200, True)
    receiver = Receiver()
    async with serve(receiver) as url:
        hook = await http.post(
            f"/api/v1/teams/{team}/webhooks", json={"url": url, "events": ["conversation.rated"]}, headers=as_lena
        )
        assert hook.status_code == 201, hook.text
        session_id = await connect(http, "v-rita")
        assert (await send(http, session_id, "My parcel is late")).status_code == 200
        assert (await run_burst(settings)).jobs_failed == 0  # routed to Ada

        async with websockets.connect(f"{api.ws_url}/pocketping/stream?sessionId={session_id}") as socket:
            closed = await http.post(f"/api/v1/conversations/{session_id}/close", headers=as_ada)
            assert closed.status_code == 200, closed.text
            assert (await run_burst(settings)).jobs_failed == 0  # fires the csat_request timer
            event = await next_event(socket)
            [stored] = await rows(clean_db, "SELECT csat, csat_operator_id FROM conversation")
            assert event == {"type": "csat_request", "data": {"requestedAt": stored["csat"]["requested_at"]}}
            assert (stored["csat"]["pending"], stored["csat_operator_id"]) == (True, ada)

        # What the widget's rating card sends (client.ts submitCsat), refused when malformed, naming the field.
        for bad, field in (
            ({"score": 0}, "score"),
            ({"score": "5"}, "score"),
            ({"score": True}, "score"),
            ({"score": 4, "comment": "x" * 1001}, "comment"),
        ):
            response = await http.post("/pocketping/csat", json={"sessionId": session_id, **bad})
            assert (response.status_code, [e["field"] for e in response.json()["errors"]]) == (400, [field]), bad
        response = await http.post(
            "/pocketping/csat", json={"sessionId": session_id, "score": 5, "comment": " Quick and kind "}
        )
        assert (response.status_code, response.json()) == (200, {"ok": True, "alreadyRated": None})
        # Once: a second answer changes nothing and says so.
        response = await http.post("/pocketping/csat", json={"sessionId": session_id, "score": 1})
        assert (response.status_code, response.json()) == (200, {"ok": True, "alreadyRated": True})
        missing = await http.post("/pocketping/csat", json={"sessionId": "no-such-session", "score": 3})
        assert missing.status_code == 404

        conversation = (await http.get(f"/api/v1/conversations/{session_id}", headers=as_lena)).json()
        rating = conversation["csat"]
        assert (rating["score"], rating["comment"], rating["operator"]) == (
            5,
            "Quick and kind",
            {"id": str(ada), "displayName": "Ada"},
        )
        assert datetime.fromisoformat(rating["requestedAt"]) < datetime.fromisoformat(rating["ratedAt"])

        # The team's webhook receiver gets conversation.rated, signed like every delivery.
        await EventRelay(clean_db, api.app.state.redis, settings).step()
        assert (await run_burst(settings)).jobs_failed == 0
        [(headers, body, status)] = receiver.requests
    assert (headers["switchboard-event"], status) == ("conversation.rated", 200)
    assert documented_verifier()(hook.json()["secret"], headers["switchboard-signature"], body) is True
    delivered = json.loads(body)
    assert (delivered["type"], delivered["teamId"], delivered["conversationId"]) == (
        "conversation.rated",
        str(team),
        session_id,
    )
    data = delivered["data"]
    assert {key: value for key, value in data.items() if not key.endswith("At")} == {
        "conversationId": session_id,
        "score": 5,
        "comment": "Quick and kind",
        "operatorId": str(ada),
    }
    times = [datetime.fromisoformat(data[key]) for key in ("requestedAt", "ratedAt")]
    assert times == [datetime.fromisoformat(rating[key]) for key in ("requestedAt", "ratedAt")]


async def test_a_team_that_does_not_ask_and_a_rated_conversation_are_not_asked_again(
    api: RunningApi, http: httpx.AsyncClient, settings: Settings, clean_db: AsyncEngine
) -> None:
    quiet = await make_team(clean_db, "Quiet")
    asking = await make_team(clean_db, "Asking", csat_enabled=True)
    lead = await make_operator(clean_db, "Lena", is_admin=True)
    auth = bearer(await personal_token(clean_db, lead))
    not_asked, _ = await make_conversation(clean_db, quiet, status="queued")
    rated, _ = await make_conversation(
        clean_db, asking, status="queued", csat={"pending": False, "score": 4, "responded_at": "2026-11-23T10:00:00Z"}
    )
    asked_again, _ = await make_conversation(
        clean_db, asking, status="queued", csat={"pending": True, "requested_at": "2026-11-23T10:00:00+00:00"}
    )
    for conversation_id in (not_asked, rated, asked_again):
        assert (await http.post(f"/api/v1/conversations/{conversation_id}/close", headers=auth)).status_code == 200
    found = {r["id"]: r for r in await rows(clean_db, "SELECT id, csat FROM conversation")}
    assert found[not_asked]["csat"] is None
    assert found[rated]["csat"] == {"pending": False, "score": 4, "responded_at": "2026-11-23T10:00:00Z"}
    assert found[asked_again]["csat"]["pending"] is True
    assert found[asked_again]["csat"]["requested_at"] != "2026-11-23T10:00:00+00:00"  # asked again, now
    timers = await rows(clean_db, "SELECT kind, subject FROM timer")
    assert timers == [{"kind": "csat_request", "subject": asked_again}]


# --- Analytics on a fixed data set -----------------------------------------------------------------------------
#
# Sales (Ada, Ben), Support (Dan); "asked" is when the conversation closed and the rating was requested.
#   C1 Sales    asked Mon 10:00 for Ada   rated 5
#   C2 Sales    asked Mon 11:00 for Ada   not rated
#   C3 Sales    asked Tue 09:00 for Ben   rated 3
#   C4 Sales    asked Sun 12:00 for Ada   rated 1          (before the period)
#   C5 Sales    never asked               rated 2          (a rating nobody asked for: counts for nothing)
#   C6 Support  asked Tue 15:00 for Dan   rated 4
#   C7 Support  asked Tue 16:00, closed without an assignee, not rated
# Sales: 3 asked, 2 rated (5, 3): average 4.00, response rate 2/3; Ada 2 asked, 1 rated (5); Ben 1 of 1 (3).
# Both teams: 5 asked, 3 rated (5, 3, 4): average 4.00, response rate 3/5.


@dataclass
class Rated:
    sales: uuid.UUID
    support: uuid.UUID
    ops: dict[str, uuid.UUID]
    lead: dict[str, str]


def _csat(asked: str | None, score: int | None) -> dict[str, Any]:
    value: dict[str, Any] = {"pending": score is None}
    if asked is not None:
        value["requested_at"] = asked
    if score is not None:
        value |= {"score": score, "responded_at": "2026-11-24T23:00:00+00:00"}
    return value


@pytest.fixture
async def rated(clean_db: AsyncEngine) -> Rated:
    sales, support = await make_team(clean_db, "Sales"), await make_team(clean_db, "Support")
    ops = {name: await make_operator(clean_db, name) for name in ("Ada", "Ben", "Dan", "Root")}
    await add_member(clean_db, sales, ops["Ada"])
    await add_member(clean_db, sales, ops["Ben"])
    await add_member(clean_db, support, ops["Dan"])
    dataset = [
        ("C1", sales, "2026-11-23T10:00:00+00:00", "Ada", 5),
        ("C2", sales, "2026-11-23T11:00:00+00:00", "Ada", None),
        ("C3", sales, "2026-11-24T09:00:00+00:00", "Ben", 3),
        ("C4", sales, "2026-11-22T12:00:00+00:00", "Ada", 1),
        ("C5", sales, None, None, 2),
        ("C6", support, "2026-11-24T15:00:00+00:00", "Dan", 4),
        ("C7", support, "2026-11-24T16:00:00+00:00", None, None),
    ]
    for conversation_id, team, asked, operator, score in dataset:
        await make_conversation(
            clean_db,
            team,
            id=conversation_id,
            status="closed",
            created_at=START,
            csat=_csat(asked, score),
            csat_operator_id=ops[operator] if operator else None,
        )
    admin = await make_operator(clean_db, "Admin", is_admin=True)
    return Rated(sales, support, ops, bearer(await personal_token(clean_db, admin)))


def period(**extra: Any) -> dict[str, Any]:
    return {"from": START.isoformat(), "to": END.isoformat(), **extra}


async def test_csat_analytics_are_exact_overall_per_team_and_per_operator(
    http: httpx.AsyncClient, rated: Rated
) -> None:
    response = await http.get("/api/v1/analytics", params=period(teamId=str(rated.sales)), headers=rated.lead)
    assert response.status_code == 200, response.text
    ada, ben, dan = (str(rated.ops[name]) for name in ("Ada", "Ben", "Dan"))
    assert response.json()["csat"] == {
        "overall": {"requested": 3, "rated": 2, "averageScore": 4.0, "responseRate": 0.6667},
        "teams": [
            {
                "teamId": str(rated.sales),
                "name": "Sales",
                "requested": 3,
                "rated": 2,
                "averageScore": 4.0,
                "responseRate": 0.6667,
            }
        ],
        "operators": [
            {
                "operatorId": ada,
                "displayName": "Ada",
                "requested": 2,
                "rated": 1,
                "averageScore": 5.0,
                "responseRate": 0.5,
            },
            {
                "operatorId": ben,
                "displayName": "Ben",
                "requested": 1,
                "rated": 1,
                "averageScore": 3.0,
                "responseRate": 1.0,
            },
        ],
    }
    both = period(teamId=[str(rated.sales), str(rated.support)])
    report = (await http.get("/api/v1/analytics", params=both, headers=rated.lead)).json()["csat"]
    assert report["overall"] == {"requested": 5, "rated": 3, "averageScore": 4.0, "responseRate": 0.6}
    assert [(t["name"], t["requested"], t["rated"], t["averageScore"], t["responseRate"]) for t in report["teams"]] == [
        ("Sales", 3, 2, 4.0, 0.6667),
        ("Support", 2, 1, 4.0, 0.5),
    ]
    assert [o["displayName"] for o in report["operators"]] == ["Ada", "Ben", "Dan"]

    # CSV: one table per metric, the JSON names as the header.
    csv = {
        metric: (
            await http.get("/api/v1/analytics/export.csv", params=both | {"metric": metric}, headers=rated.lead)
        ).text
        for metric in ("csat", "csatByTeam", "csatByOperator")
    }
    assert csv["csat"] == "requested,rated,averageScore,responseRate\r\n5,3,4.0,0.6\r\n"
    assert csv["csatByTeam"] == (
        "teamId,name,requested,rated,averageScore,responseRate\r\n"
        f"{rated.sales},Sales,3,2,4.0,0.6667\r\n{rated.support},Support,2,1,4.0,0.5\r\n"
    )
    assert csv["csatByOperator"] == (
        "operatorId,displayName,requested,rated,averageScore,responseRate\r\n"
        f"{ada},Ada,2,1,5.0,0.5\r\n{ben},Ben,1,1,3.0,1.0\r\n{dan},Dan,1,1,4.0,1.0\r\n"
    )

    # The analytics page shows the same numbers.
    days = {"teamId": str(rated.sales), "from": "2026-11-23", "to": "2026-11-24"}
    html = (await http.get("/app/analytics", params=days, headers=rated.lead)).text
    assert (
        'Average <strong data-csat="average">4.00</strong> / 5 · response rate <strong data-csat="rate">66.7 %</strong>'
        " (2 rated of 3 asked)"
    ) in html
    assert f'<tr data-csat-operator="{ada}"><td>Ada</td><td>2</td><td>1</td><td>5.00</td><td>50.0 %</td></tr>' in html
    assert f'<tr data-csat-operator="{ben}"><td>Ben</td><td>1</td><td>1</td><td>3.00</td><td>100.0 %</td></tr>' in html
