"""Analytics against a hand-made data set: every metric equals the number worked out by hand in the comments.

The data set (all times UTC; Monday 2026-11-23 and Tuesday 2026-11-24):

Sales (default capacity 4; Ada capacity 2, Ben, Cy; Eve is no member but was assigned once)
  S0 Sun 23:59  no url, no messages                     (UTC: outside; Europe/Paris: Mon 00:59, inside)
  S1 Mon 09:10  /pricing?utm=x  V 09:10:00  O(Ada) 09:11:00        Ada 09:10:30-09:20, Ada again 09:25
  S2 Mon 09:40  /pricing#plans  V 09:40:00  AI 09:40:20  O(Ben) 09:45:00          Ben 09:42:00
  S3 Mon 14:05  /checkout       V 14:05:00  O(Ada) 14:07:00        Ada 14:05:10-14:20, Ben 14:20:00
  S4 Mon 23:30  /               V 23:30:00  AI 23:30:05  AI 23:31:00             (never assigned)
  S5 Tue 08:00  /pricing        SYS 08:00:00  V 08:00:30  O(Ben) 08:05:30        Ben 08:01:30
  S6 Tue 08:20  no url          V 08:20:00                                       (never answered)
  S7 Tue 17:45  /checkout?step=2  O(Ada) 17:45:00  V 17:46:00  O(Ada) 17:50:00   Ada 17:46:00
  S8 Tue 21:00  /pricing        no messages                                      Eve 21:05
  S9 Wed 00:30  /pricing        V 00:30:00  O(Ben) 00:32:00 (outside)            Ben 00:31 (outside)
Support (default capacity 3; Dan, Lea its lead)
  P1 Mon 10:00  help/docs       V 10:00:00  O(Dan) 10:03:00                      Dan 10:01:00
  P2 Tue 10:30  help/docs       V 10:30:00  AI 10:30:10                          (never assigned)
  P3 Tue 23:50  help/contact    V 23:50:00  O(Dan) 23:52:00                      Dan 23:51:00
  P4 Mon 12:00  "=cmd|' /C calc'!A0"  V 12:00:00                                 (never answered)

Shop pages are https://shop.example/..., help pages https://help.example/...
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from service.analytics import services
from service.db.models import Assignment, Message
from tests.factories import add_member, bearer, make_operator, make_team, personal_token
from tests.support.routing import make_conversation

SHOP = "https://shop.example"
HELP = "https://help.example"
INJECTION = "=cmd|' /C calc'!A0"
START = datetime(2026, 11, 23, tzinfo=UTC)
END = datetime(2026, 11, 25, tzinfo=UTC)


@dataclass
class Data:
    sales: uuid.UUID
    support: uuid.UUID
    ops: dict[str, uuid.UUID]


def at(day: int, clock: str) -> datetime:
    hour, minute, *second = (int(part) for part in clock.split(":"))
    return datetime(2026, 11, day, hour, minute, second[0] if second else 0, tzinfo=UTC)


async def build(engine: AsyncEngine) -> Data:
    sales = await make_team(engine, "Sales", default_capacity=4)
    support = await make_team(engine, "Support", default_capacity=3)
    ops = {name: await make_operator(engine, name) for name in ("Ada", "Ben", "Cy", "Dan", "Lea", "Eve", "Root")}
    await add_member(engine, sales, ops["Ada"], capacity=2)
    await add_member(engine, sales, ops["Ben"])
    await add_member(engine, sales, ops["Cy"])
    await add_member(engine, support, ops["Dan"])
    await add_member(engine, support, ops["Lea"], "lead")
    async with engine.begin() as conn:
        await conn.execute(sa.text("UPDATE operator SET is_admin = true WHERE id = :id"), {"id": ops["Root"]})

    # (id, team, created, url, messages [(sender, operator, day, clock)], assignments [(operator, start, end)])
    Conv = tuple[str, uuid.UUID, datetime, str | None, list[tuple[str, str | None, int, str]], list[Any]]
    conversations: list[Conv] = [
        ("S0", sales, at(22, "23:59"), None, [], []),
        (
            "S1",
            sales,
            at(23, "09:10"),
            f"{SHOP}/pricing?utm=x",
            [("visitor", None, 23, "09:10:00"), ("operator", "Ada", 23, "09:11:00")],
            [("Ada", at(23, "09:10:30"), at(23, "09:20")), ("Ada", at(23, "09:25"), None)],
        ),
        (
            "S2",
            sales,
            at(23, "09:40"),
            f"{SHOP}/pricing#plans",
            [("visitor", None, 23, "09:40:00"), ("ai", None, 23, "09:40:20"), ("operator", "Ben", 23, "09:45:00")],
            [("Ben", at(23, "09:42"), None)],
        ),
        (
            "S3",
            sales,
            at(23, "14:05"),
            f"{SHOP}/checkout",
            [("visitor", None, 23, "14:05:00"), ("operator", "Ada", 23, "14:07:00")],
            [("Ada", at(23, "14:05:10"), at(23, "14:20")), ("Ben", at(23, "14:20"), None)],
        ),
        (
            "S4",
            sales,
            at(23, "23:30"),
            f"{SHOP}/",
            [("visitor", None, 23, "23:30:00"), ("ai", None, 23, "23:30:05"), ("ai", None, 23, "23:31:00")],
            [],
        ),
        (
            "S5",
            sales,
            at(24, "08:00"),
            f"{SHOP}/pricing",
            [("system", None, 24, "08:00:00"), ("visitor", None, 24, "08:00:30"), ("operator", "Ben", 24, "08:05:30")],
            [("Ben", at(24, "08:01:30"), None)],
        ),
        ("S6", sales, at(24, "08:20"), None, [("visitor", None, 24, "08:20:00")], []),
        (
            "S7",
            sales,
            at(24, "17:45"),
            f"{SHOP}/checkout?step=2",
            [
                ("operator", "Ada", 24, "17:45:00"),
                ("visitor", None, 24, "17:46:00"),
                ("operator", "Ada", 24, "17:50:00"),
            ],
            [("Ada", at(24, "17:46"), None)],
        ),
        ("S8", sales, at(24, "21:00"), f"{SHOP}/pricing", [], [("Eve", at(24, "21:05"), None)]),
        (
            "S9",
            sales,
            at(25, "00:30"),
            f"{SHOP}/pricing",
            [("visitor", None, 25, "00:30:00"), ("operator", "Ben", 25, "00:32:00")],
            [("Ben", at(25, "00:31"), None)],
        ),
        (
            "P1",
            support,
            at(23, "10:00"),
            f"{HELP}/docs",
            [("visitor", None, 23, "10:00:00"), ("operator", "Dan", 23, "10:03:00")],
            [("Dan", at(23, "10:01"), None)],
        ),
        (
            "P2",
            support,
            at(24, "10:30"),
            f"{HELP}/docs",
            [("visitor", None, 24, "10:30:00"), ("ai", None, 24, "10:30:10")],
            [],
        ),
        (
            "P3",
            support,
            at(24, "23:50"),
            f"{HELP}/contact",
            [("visitor", None, 24, "23:50:00"), ("operator", "Dan", 24, "23:52:00")],
            [("Dan", at(24, "23:51"), None)],
        ),
        ("P4", support, at(23, "12:00"), INJECTION, [("visitor", None, 23, "12:00:00")], []),
    ]
    async with engine.begin() as conn:
        for conversation_id, team, created, url, messages, assignments in conversations:
            metadata = {"url": url} if url else None
            await make_conversation(
                conn, team, id=conversation_id, created_at=created, last_activity=created, session_metadata=metadata
            )
            for n, (sender, operator, day, clock) in enumerate(messages):
                await conn.execute(
                    sa.insert(Message.__table__).values(  # type: ignore[attr-defined]
                        id=f"{conversation_id}-m{n}",
                        conversation_id=conversation_id,
                        sender=sender,
                        operator_id=ops[operator] if operator else None,
                        content="x",
                        created_at=at(day, clock),
                    )
                )
            for operator, started, ended in assignments:
                await conn.execute(
                    sa.insert(Assignment.__table__).values(  # type: ignore[attr-defined]
                        conversation_id=conversation_id,
                        operator_id=ops[operator],
                        team_id=team,
                        reason="routed",
                        started_at=started,
                        ended_at=ended,
                    )
                )
    return Data(sales, support, ops)


@pytest.fixture
async def data(clean_db: AsyncEngine) -> Data:
    return await build(clean_db)


def nonzero(buckets: list[Any]) -> dict[str, int]:
    return {b.label: b.sessions for b in buckets if b.sessions}


async def test_every_metric_matches_the_hand_computed_numbers(clean_db: AsyncEngine, data: Data) -> None:
    both = [data.sales, data.support]
    async with clean_db.connect() as conn:
        report = await services.report(conn, both, START, END, "UTC")

    # Population: S1-S8 and P1-P4 = 12 (S0 is before `from`, S9 at `to` or after).
    # Mon: S1 S2 S3 S4 P1 P4 = 6; Tue: S5 S6 S7 S8 P2 P3 = 6.
    assert [(b.label, b.start, b.sessions) for b in report.sessions_by_day] == [
        ("2026-11-23", START, 6),
        ("2026-11-24", at(24, "00:00"), 6),
    ]
    # 48 hourly buckets, the empty ones included; non-empty ones listed, 2+1+1+1+1+2+1+1+1+1 = 12.
    assert len(report.sessions_by_hour) == 48
    assert report.sessions_by_hour[0].label == "2026-11-23T00:00"
    assert nonzero(report.sessions_by_hour) == {
        "2026-11-23T09:00": 2,  # S1 S2
        "2026-11-23T10:00": 1,  # P1
        "2026-11-23T12:00": 1,  # P4
        "2026-11-23T14:00": 1,  # S3
        "2026-11-23T23:00": 1,  # S4
        "2026-11-24T08:00": 2,  # S5 S6
        "2026-11-24T10:00": 1,  # P2
        "2026-11-24T17:00": 1,  # S7
        "2026-11-24T21:00": 1,  # S8
        "2026-11-24T23:00": 1,  # P3
    }

    # First response, seconds: 11 conversations with a visitor message (S8 has none); S6 and P4 unanswered.
    # S1 60, S2 20 (the AI), S3 120, S4 5 (AI), S5 300 (the system welcome does not count), S7 240 (Ada's
    # message before the visitor's does not count), P1 180, P2 10, P3 120.
    # Sorted 5 10 20 60 120 120 180 240 300; sum 1055; average 1055/9 = 117.2222.
    # percentile_cont: p50 at index 0.5*8 = 4 -> 120; p90 at index 0.9*8 = 7.2 -> 240 + 0.2*(300-240) = 252.
    assert report.first_response.model_dump() == {
        "conversations": 11,
        "measured": 9,
        "average_seconds": 117.222,
        "p50_seconds": 120.0,
        "p90_seconds": 252.0,
    }
    # Time to the first assignment: S1 30, S2 120, S3 10 (Ada's, not Ben's later), S5 60, S7 0, P1 60, P3 60.
    # (S8's assignment has no visitor message to measure from.) Sorted 0 10 30 60 60 60 120; sum 340;
    # average 340/7 = 48.5714; p50 index 3 -> 60; p90 index 5.4 -> 60 + 0.4*(120-60) = 84.
    assert report.time_to_assignment.model_dump() == {
        "conversations": 11,
        "measured": 7,
        "average_seconds": 48.571,
        "p50_seconds": 60.0,
        "p90_seconds": 84.0,
    }
    # Operator messages: S1 1, S2 1, S3 1, S5 1, S7 2, P1 1, P3 1 = 8; AI: S2 1, S4 2, P2 1 = 4.
    # 8/12 = 0.6667, 4/12 = 0.3333; the system message and S9's reply are not counted.
    assert report.replies.model_dump() == {"human": 8, "ai": 4, "human_share": 0.6667, "ai_share": 0.3333}

    # Pages without query or fragment: pricing S1 S2 S5 S8 = 4; checkout S3 S7 = 2; help docs P1 P2 = 2;
    # then one each, ties in byte order ("=" < "h" < "s"). S6 has no url.
    assert [(p.page, p.sessions) for p in report.top_pages] == [
        (f"{SHOP}/pricing", 4),
        (f"{HELP}/docs", 2),
        (f"{SHOP}/checkout", 2),
        (INJECTION, 1),
        (f"{HELP}/contact", 1),
        (f"{SHOP}/", 1),
    ]

    # 2026-11-23 is a Monday (ISO 1); the hours are the same as the hourly buckets above.
    assert len(report.peak_hours) == 168
    assert {(c.weekday, c.hour): c.sessions for c in report.peak_hours if c.sessions} == {
        (1, 9): 2,
        (1, 10): 1,
        (1, 12): 1,
        (1, 14): 1,
        (1, 23): 1,
        (2, 8): 2,
        (2, 10): 1,
        (2, 17): 1,
        (2, 21): 1,
        (2, 23): 1,
    }

    # Assignments started in the period: Ada S1 twice + S3 + S7 = 4 (3 conversations); Ben S2 S3 S5 = 3 (S9's is
    # after `to`); Dan P1 P3 = 2; Eve S8 = 1 (no longer a member: no capacity); Cy and Lea 0 (members, idle).
    # Messages sent in the period: Ada S1 S3 S7x2 = 4, Ben S2 S5 = 2 (S9's is after `to`), Dan 2.
    # Capacity: Ada 2 (her own), Ben and Cy 4 (Sales default), Dan and Lea 3 (Support default).
    loads = [
        (o.display_name, o.assignments, o.conversations, o.messages, o.capacity, o.assignments_per_slot)
        for o in report.operator_load.operators
    ]
    assert loads == [
        ("Ada", 4, 3, 4, 2, 2.0),
        ("Ben", 3, 3, 2, 4, 0.75),
        ("Dan", 2, 2, 2, 3, 0.6667),
        ("Eve", 1, 1, 0, None, None),
        ("Cy", 0, 0, 0, 4, 0.0),
        ("Lea", 0, 0, 0, 3, 0.0),
    ]
    # Counts 4 3 2 1 0 0: mean 10/6 = 1.6667; squared deviations (49+16+1+4+25+25)/9 = 120/9, variance 20/9,
    # CV = (sqrt(20)/3) / (5/3) = sqrt(20)/5 = 0.8944.
    # Gini from the sorted 0 0 1 2 3 4: sum(rank*x) = 3+8+15+24 = 50; 2*50/(6*10) - 7/6 = 0.5.
    # Per slot (Eve has no capacity) 0 0 2/3 3/4 2: total 41/12; sum(rank*x) = 2+3+10 = 15;
    # 2*15/(5*41/12) - 6/5 = 360/205 - 1.2 = 0.5561.
    assert report.operator_load.fairness.model_dump() == {
        "operators": 6,
        "mean_assignments": 1.6667,
        "coefficient_of_variation": 0.8944,
        "gini": 0.5,
        "gini_per_slot": 0.5561,
    }


async def test_days_hours_and_weekdays_follow_the_time_zone(clean_db: AsyncEngine, data: Data) -> None:
    # Paris is UTC+1 in November: the period is [Sun 23:00Z, Tue 23:00Z). S0 (Sun 23:59Z = Mon 00:59 Paris)
    # comes in; P3 (Tue 23:50Z = Wed 00:50 Paris) goes out; S4 (Mon 23:30Z = Tue 00:30 Paris) moves to Tuesday.
    # Mon: S0 S1 S2 S3 P1 P4 = 6; Tue: S4 S5 S6 S7 S8 P2 = 6.
    start, end = datetime(2026, 11, 22, 23, tzinfo=UTC), datetime(2026, 11, 24, 23, tzinfo=UTC)
    async with clean_db.connect() as conn:
        days = await services.sessions_by_day(conn, [data.sales, data.support], start, end, "Europe/Paris")
        hours = await services.sessions_by_hour(conn, [data.sales, data.support], start, end, "Europe/Paris")
        heat = await services.peak_hours(conn, [data.sales, data.support], start, end, "Europe/Paris")
    assert [(b.label, b.start, b.sessions) for b in days] == [
        ("2026-11-23", start, 6),
        ("2026-11-24", at(23, "23:00"), 6),
    ]
    assert len(hours) == 48
    assert nonzero(hours) == {
        "2026-11-23T00:00": 1,  # S0
        "2026-11-23T10:00": 2,  # S1 S2
        "2026-11-23T11:00": 1,  # P1
        "2026-11-23T13:00": 1,  # P4
        "2026-11-23T15:00": 1,  # S3
        "2026-11-24T00:00": 1,  # S4
        "2026-11-24T09:00": 2,  # S5 S6
        "2026-11-24T11:00": 1,  # P2
        "2026-11-24T18:00": 1,  # S7
        "2026-11-24T22:00": 1,  # S8
    }
    assert {(c.weekday, c.hour): c.sessions for c in heat if c.sessions} == {
        (1, 0): 1,
        (1, 10): 2,
        (1, 11): 1,
        (1, 13): 1,
        (1, 15): 1,
        (2, 0): 1,
        (2, 9): 2,
        (2, 11): 1,
        (2, 18): 1,
        (2, 22): 1,
    }


async def test_a_team_filter_counts_only_that_team(clean_db: AsyncEngine, data: Data) -> None:
    async with clean_db.connect() as conn:
        report = await services.report(conn, [data.support], START, END, "UTC")
    # P1 P4 on Monday, P2 P3 on Tuesday.
    assert [b.sessions for b in report.sessions_by_day] == [2, 2]
    # P1 180, P2 10, P3 120 (P4 unanswered): sorted 10 120 180; average 310/3 = 103.3333;
    # p50 index 1 -> 120; p90 index 1.8 -> 120 + 0.8*60 = 168.
    assert report.first_response.model_dump() == {
        "conversations": 4,
        "measured": 3,
        "average_seconds": 103.333,
        "p50_seconds": 120.0,
        "p90_seconds": 168.0,
    }
    assert report.replies.model_dump() == {"human": 2, "ai": 1, "human_share": 0.6667, "ai_share": 0.3333}
    # Dan 2, Lea 0: mean 1, pstdev 1, CV 1; Gini 2*(2*2)/(2*2) - 3/2 = 0.5; per slot the same shape.
    assert [(o.display_name, o.assignments) for o in report.operator_load.operators] == [("Dan", 2), ("Lea", 0)]
    assert report.operator_load.fairness.model_dump() == {
        "operators": 2,
        "mean_assignments": 1.0,
        "coefficient_of_variation": 1.0,
        "gini": 0.5,
        "gini_per_slot": 0.5,
    }


async def test_an_empty_period_has_zero_buckets_and_no_statistics(clean_db: AsyncEngine, data: Data) -> None:
    async with clean_db.connect() as conn:
        report = await services.report(conn, [data.sales], at(20, "00:00"), at(21, "00:00"), "UTC")
    assert [(b.label, b.sessions) for b in report.sessions_by_day] == [("2026-11-20", 0)]
    assert report.first_response.model_dump() == {
        "conversations": 0,
        "measured": 0,
        "average_seconds": None,
        "p50_seconds": None,
        "p90_seconds": None,
    }
    assert report.replies.model_dump() == {"human": 0, "ai": 0, "human_share": None, "ai_share": None}
    assert report.top_pages == []
    # Members still listed, all idle: no spread to measure.
    assert report.operator_load.fairness.model_dump() == {
        "operators": 3,
        "mean_assignments": 0.0,
        "coefficient_of_variation": None,
        "gini": None,
        "gini_per_slot": None,
    }


def period(**extra: str) -> dict[str, Any]:
    return {"from": START.isoformat(), "to": END.isoformat(), **extra}


async def test_the_api_reports_every_metric_for_led_teams(
    http: httpx.AsyncClient, clean_db: AsyncEngine, data: Data
) -> None:
    root = bearer(await personal_token(clean_db, data.ops["Root"]))
    lea = bearer(await personal_token(clean_db, data.ops["Lea"]))
    dan = bearer(await personal_token(clean_db, data.ops["Dan"]))

    # An admin without teamId gets every team.
    body = (await http.get("/api/v1/analytics", params=period(), headers=root)).json()
    assert sorted(body["teamIds"]) == sorted([str(data.sales), str(data.support)])
    assert body["firstResponse"] == {
        "conversations": 11,
        "measured": 9,
        "averageSeconds": 117.222,
        "p50Seconds": 120.0,
        "p90Seconds": 252.0,
    }
    assert body["sessionsByDay"][1] == {"start": "2026-11-24T00:00:00Z", "label": "2026-11-24", "sessions": 6}
    # A lead without teamId gets the teams they lead: Support only (4 sessions).
    body = (await http.get("/api/v1/analytics", params=period(), headers=lea)).json()
    assert (body["teamIds"], [b["sessions"] for b in body["sessionsByDay"]]) == ([str(data.support)], [2, 2])
    # Naive bounds are read in tz: Paris midnight to midnight, as in the time-zone test.
    naive = {"from": "2026-11-23T00:00:00", "to": "2026-11-25T00:00:00", "tz": "Europe/Paris"}
    body = (await http.get("/api/v1/analytics", params={**naive, "teamId": str(data.support)}, headers=lea)).json()
    assert (body["start"], [b["sessions"] for b in body["sessionsByDay"]]) == ("2026-11-22T23:00:00Z", [2, 1])

    another = {"teamId": str(data.sales)}
    assert (await http.get("/api/v1/analytics", params=period(**another), headers=lea)).status_code == 404
    assert (await http.get("/api/v1/analytics", params=period(**another), headers=root)).status_code == 200
    missing = {"teamId": str(uuid.uuid4())}
    assert (await http.get("/api/v1/analytics", params=period(**missing), headers=root)).status_code == 404
    # Operators see no analytics, of their own team or at all.
    own = {"teamId": str(data.support)}
    assert (await http.get("/api/v1/analytics", params=period(**own), headers=dan)).status_code == 403
    assert (await http.get("/api/v1/analytics", params=period(), headers=dan)).status_code == 403


@pytest.mark.parametrize(
    ("params", "field", "message"),
    [
        ({"from": "2026-11-25T00:00:00Z", "to": "2026-11-25T00:00:00Z"}, "to", "must be after from"),
        ({"from": "2025-11-23T00:00:00Z", "to": "2026-11-25T00:00:00Z"}, "to", "the period may span at most 366 days"),
        (period(tz="Mars/Olympus_Mons"), "tz", "use an IANA time zone name such as Europe/Paris or UTC"),
    ],
)
async def test_a_bad_period_names_the_field(
    http: httpx.AsyncClient, clean_db: AsyncEngine, data: Data, params: dict[str, str], field: str, message: str
) -> None:
    root = bearer(await personal_token(clean_db, data.ops["Root"]))
    response = await http.get("/api/v1/analytics", params=params, headers=root)
    assert (response.status_code, response.json()["errors"]) == (400, [{"field": field, "message": message}])


async def test_csv_export_holds_one_metric_with_formulas_defused(
    http: httpx.AsyncClient, clean_db: AsyncEngine, data: Data
) -> None:
    root = bearer(await personal_token(clean_db, data.ops["Root"]))
    response = await http.get("/api/v1/analytics/export.csv", params=period(metric="topPages"), headers=root)
    assert response.status_code == 200
    assert response.headers["content-type"] == "text/csv; charset=utf-8"
    assert response.headers["content-disposition"] == 'attachment; filename="analytics-topPages-2026-11-23.csv"'
    assert response.text.splitlines() == [
        "page,sessions",
        f"{SHOP}/pricing,4",
        f"{HELP}/docs,2",
        f"{SHOP}/checkout,2",
        "'=cmd|' /C calc'!A0,1",
        f"{HELP}/contact,1",
        f"{SHOP}/,1",
    ]
    response = await http.get("/api/v1/analytics/export.csv", params=period(metric="fairness"), headers=root)
    assert response.text.splitlines() == [
        "operators,meanAssignments,coefficientOfVariation,gini,giniPerSlot",
        "6,1.6667,0.8944,0.5,0.5561",
    ]
    # A period with no pages still has its header row.
    empty = {"from": "2026-11-20T00:00:00Z", "to": "2026-11-21T00:00:00Z", "metric": "topPages"}
    response = await http.get("/api/v1/analytics/export.csv", params=empty, headers=root)
    assert response.text == "page,sessions\r\n"
    response = await http.get("/api/v1/analytics/export.csv", params=period(metric="nope"), headers=root)
    assert (response.status_code, response.json()["errors"][0]["field"]) == (400, "metric")


async def tag_conversations(engine: AsyncEngine, team_id: uuid.UUID, name: str, *conversation_ids: str) -> uuid.UUID:
    """A tag of the team, put on the conversations."""
    tag_id = uuid.uuid4()
    async with engine.begin() as conn:
        await conn.execute(
            sa.text("INSERT INTO tag (id, team_id, name) VALUES (:id, :team, :name)"),
            {"id": tag_id, "team": team_id, "name": name},
        )
        for conversation_id in conversation_ids:
            await conn.execute(
                sa.text("INSERT INTO conversation_tag (conversation_id, tag_id, source) VALUES (:c, :t, 'operator')"),
                {"c": conversation_id, "t": tag_id},
            )
    return tag_id


async def test_a_tag_filter_counts_only_the_tagged_conversations(
    http: httpx.AsyncClient, clean_db: AsyncEngine, data: Data
) -> None:
    # "pricing" on S1, S2, S5 (Sales); S8 carries another tag, which must not count.
    pricing = await tag_conversations(clean_db, data.sales, "pricing", "S1", "S2", "S5")
    await tag_conversations(clean_db, data.sales, "quiet", "S8")
    async with clean_db.connect() as conn:
        report = await services.report(conn, [data.sales], START, END, "UTC", pricing)
    assert report.tag_id == pricing
    # S1 S2 on Monday, S5 on Tuesday.
    assert [b.sessions for b in report.sessions_by_day] == [2, 1]
    # S1 60, S2 20 (the AI), S5 300 (from 08:00:30, the system message does not count): sorted 20 60 300;
    # average 380/3 = 126.667; p50 60; p90 index 1.8 -> 60 + 0.8*240 = 252.
    assert report.first_response.model_dump() == {
        "conversations": 3,
        "measured": 3,
        "average_seconds": 126.667,
        "p50_seconds": 60.0,
        "p90_seconds": 252.0,
    }
    # S1 30, S2 120, S5 60: average 70; p50 60; p90 60 + 0.8*60 = 108.
    assert report.time_to_assignment.model_dump() == {
        "conversations": 3,
        "measured": 3,
        "average_seconds": 70.0,
        "p50_seconds": 60.0,
        "p90_seconds": 108.0,
    }
    # Ada 1 (S1), Ben 2 (S2, S5), the AI 1 (S2).
    assert report.replies.model_dump() == {"human": 3, "ai": 1, "human_share": 0.75, "ai_share": 0.25}
    assert [(p.page, p.sessions) for p in report.top_pages] == [(f"{SHOP}/pricing", 3)]
    # Ada 2 assignments of S1, Ben S2 and S5, Cy none; Eve's S8 is not tagged, so she is not listed.
    loads = [(o.display_name, o.assignments, o.conversations, o.messages) for o in report.operator_load.operators]
    assert loads == [("Ada", 2, 1, 1), ("Ben", 2, 2, 2), ("Cy", 0, 0, 0)]
    # [2, 2, 0]: mean 4/3, pstdev sqrt(8/9) = 0.9428, CV 0.7071; Gini 2*(0+4+6)/(3*4) - 4/3 = 0.3333;
    # per slot [2/2, 2/4, 0/4] = [1, 0.5, 0]: 2*(0+1+3)/(3*1.5) - 4/3 = 0.4444.
    assert report.operator_load.fairness.model_dump() == {
        "operators": 3,
        "mean_assignments": 1.3333,
        "coefficient_of_variation": 0.7071,
        "gini": 0.3333,
        "gini_per_slot": 0.4444,
    }

    root = bearer(await personal_token(clean_db, data.ops["Root"]))
    query = period(teamId=str(data.sales), tag=str(pricing))
    body = (await http.get("/api/v1/analytics", params=query, headers=root)).json()
    assert (body["tagId"], body["firstResponse"]["averageSeconds"]) == (str(pricing), 126.667)
    response = await http.get("/api/v1/analytics/export.csv", params={**query, "metric": "topPages"}, headers=root)
    assert response.text.splitlines() == ["page,sessions", f"{SHOP}/pricing,3"]
    # A tag of a team not reported on, or none at all: 422 naming tag.
    for tag in (await tag_conversations(clean_db, data.support, "docs", "P1"), uuid.uuid4()):
        response = await http.get(
            "/api/v1/analytics", params=period(teamId=str(data.sales), tag=str(tag)), headers=root
        )
        assert (response.status_code, [e["field"] for e in response.json()["errors"]]) == (422, ["tag"])
