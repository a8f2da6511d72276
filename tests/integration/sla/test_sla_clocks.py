"""SLA clocks through real arq workers on a controllable clock: at risk at its moment, breached at the deadline,
each escalation step, and the clocks' stops (first reply, next visitor message, close)."""

from __future__ import annotations

import asyncio
import json
import re
import time
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from service.hours import clock as hours_clock
from service.queue import enqueue_route
from service.settings import Settings
from tests.factories import add_member, bearer, make_operator, make_team, personal_token
from tests.integration.timers.test_timers import arq_pool, team_with
from tests.integration.workers.test_worker import run_burst
from tests.support.routing import make_conversation, rows
from tests.support.routing_worker import worker_processes
from tests.support.sla import fire_sla, retrigger, travel


async def make_policy(engine: AsyncEngine, team_id: uuid.UUID, **values: Any) -> uuid.UUID:
    policy_id = uuid.uuid4()
    if "escalation" in values:
        values["escalation"] = json.dumps(values["escalation"])
    columns = ", ".join(["id", "team_id", *values])
    params = ", ".join([":id", ":team_id", *(f":{k}" for k in values)])
    async with engine.begin() as conn:
        await conn.execute(
            sa.text(f"INSERT INTO sla_policy ({columns}) VALUES ({params})"),
            {"id": policy_id, "team_id": team_id, **values},
        )
    return policy_id


async def routed_at(settings: Settings, engine: AsyncEngine, team_id: uuid.UUID, since: datetime) -> str:
    """A conversation whose visitor started waiting at ``since``, routed by a worker, its SLA timer fired once."""
    conversation_id, _ = await make_conversation(engine, team_id, waiting_since=since)
    arq = await arq_pool(settings)
    await enqueue_route(arq, conversation_id, 1, trigger="test")
    await arq.aclose()
    worker = await run_burst(settings, max_burst_jobs=1, cron_jobs=[])
    assert (worker.jobs_complete, worker.jobs_failed) == (1, 0)
    await fire_sla(settings, engine, conversation_id)
    return conversation_id


async def clocks(engine: AsyncEngine, conversation_id: str) -> dict[str, dict[str, Any]]:
    found = await rows(
        engine,
        "SELECT target, started_at, at_risk_at, due_at, stopped_at IS NOT NULL AS stopped, "
        "at_risk_reported_at IS NOT NULL AS at_risk, breached_at IS NOT NULL AS breached, ever_breached, cycles "
        "FROM sla_clock WHERE conversation_id = :id ORDER BY target",
        id=conversation_id,
    )
    return {row.pop("target"): row for row in found}


async def sla_events(engine: AsyncEngine, conversation_id: str) -> list[tuple[str, str]]:
    found = await rows(
        engine,
        "SELECT kind, data ->> 'target' AS target FROM event WHERE conversation_id = :id AND kind LIKE 'sla.%' "
        "ORDER BY id",
        id=conversation_id,
    )
    return [(r["kind"], r["target"]) for r in found]


async def audit(engine: AsyncEngine, conversation_id: str) -> list[tuple[str, str, str | None]]:
    found = await rows(
        engine,
        "SELECT trigger, outcome, reason FROM routing_decision WHERE conversation_id = :id ORDER BY id",
        id=conversation_id,
    )
    return [(r["trigger"], r["outcome"], r["reason"]) for r in found]


async def timer(engine: AsyncEngine, conversation_id: str) -> dict[str, Any]:
    [row] = await rows(
        engine, "SELECT state, due_at FROM timer WHERE kind = 'sla' AND subject = :id", id=conversation_id
    )
    return row


async def test_first_response_at_risk_then_breached(settings: Settings, clean_db: AsyncEngine) -> None:
    team_id = await make_team(clean_db, routing_policy="round_robin")
    ada = await make_operator(clean_db, "Ada", status="online")
    await add_member(clean_db, team_id, ada)
    await make_policy(clean_db, team_id, first_response_seconds=600, resolution_seconds=3600, at_risk_share=0.5)
    since = datetime.now(UTC).replace(microsecond=0) - timedelta(seconds=100)
    conversation_id = await routed_at(settings, clean_db, team_id, since)

    found = await clocks(clean_db, conversation_id)
    assert found["first_response"] == {
        "started_at": since,
        "at_risk_at": since + timedelta(seconds=300),
        "due_at": since + timedelta(seconds=600),
        "stopped": False,
        "at_risk": False,
        "breached": False,
        "ever_breached": False,
        "cycles": 1,
    }
    # The global share (0.8) is not used: the policy sets 0.5.
    assert found["resolution"]["at_risk_at"] == since + timedelta(seconds=1800)
    assert await timer(clean_db, conversation_id) == {"state": "pending", "due_at": since + timedelta(seconds=300)}

    await travel(clean_db, conversation_id, 195)  # 295 s of the 300 have run: not yet
    await fire_sla(settings, clean_db, conversation_id)
    assert await sla_events(clean_db, conversation_id) == []
    await travel(clean_db, conversation_id, 6)  # 301 s
    await fire_sla(settings, clean_db, conversation_id)
    assert await sla_events(clean_db, conversation_id) == [("sla.at_risk", "first_response")]
    assert (await clocks(clean_db, conversation_id))["first_response"]["at_risk"] is True
    await travel(clean_db, conversation_id, 300)  # 601 s
    await fire_sla(settings, clean_db, conversation_id)
    assert await sla_events(clean_db, conversation_id) == [
        ("sla.at_risk", "first_response"),
        ("sla.breached", "first_response"),
    ]
    assert await audit(clean_db, conversation_id) == [
        ("test", "assigned", None),
        ("sla_at_risk", "unchanged", "first_response"),
        ("sla_breached", "unchanged", "first_response"),
    ]
    # The resolution clock's at-risk moment is next.
    assert (await timer(clean_db, conversation_id))["state"] == "pending"


async def assignee(engine: AsyncEngine, conversation_id: str) -> Any:
    [row] = await rows(
        engine, "SELECT status, team_id, assignee_id FROM conversation WHERE id = :id", id=conversation_id
    )
    return row


async def test_a_breach_offers_the_conversation_to_another_operator(settings: Settings, clean_db: AsyncEngine) -> None:
    team_id, (ada, bob) = await team_with(clean_db, "Ada", "Bob")
    await make_policy(
        clean_db, team_id, first_response_seconds=60, escalation=[{"on": "breached", "action": "reassign"}]
    )
    conversation_id = await routed_at(settings, clean_db, team_id, datetime.now(UTC) - timedelta(seconds=10))
    first = (await assignee(clean_db, conversation_id))["assignee_id"]
    second = bob if first == ada else ada
    await travel(clean_db, conversation_id, 51)
    await fire_sla(settings, clean_db, conversation_id)
    assert await assignee(clean_db, conversation_id) == {
        "status": "assigned",
        "team_id": team_id,
        "assignee_id": second,
    }
    assert await audit(clean_db, conversation_id) == [
        ("test", "assigned", None),
        ("sla_breached", "unchanged", "first_response"),
        ("sla_escalation", "assigned", "sla_escalation"),
    ]
    history = await rows(
        clean_db,
        "SELECT operator_id, reason, end_reason FROM assignment WHERE conversation_id = :id ORDER BY id",
        id=conversation_id,
    )
    assert history == [
        {"operator_id": first, "reason": "routed", "end_reason": "sla_escalation"},
        {"operator_id": second, "reason": "sla_escalation", "end_reason": None},
    ]
    # The clock keeps its start and its breach: the new assignee inherits a late conversation, not a new one.
    found = (await clocks(clean_db, conversation_id))["first_response"]
    assert (found["breached"], found["stopped"], found["ever_breached"]) == (True, False, True)
    assert (await timer(clean_db, conversation_id))["state"] == "cancelled"


async def test_at_risk_tells_the_leads_and_a_breach_overflows_to_another_team(
    settings: Settings, clean_db: AsyncEngine
) -> None:
    team_id, (ada,) = await team_with(clean_db, "Ada")
    lena = await make_operator(clean_db, "Lena")
    await add_member(clean_db, team_id, lena, role="lead")
    overflow_id, (olga,) = await team_with(clean_db, "Olga")
    await make_policy(
        clean_db,
        team_id,
        first_response_seconds=100,
        escalation=[
            {"on": "at_risk", "action": "tell_leads"},
            {"on": "breached", "action": "overflow", "teamId": str(overflow_id)},
        ],
    )
    conversation_id = await routed_at(settings, clean_db, team_id, datetime.now(UTC))
    await travel(clean_db, conversation_id, 81)  # the global share: 0.8 of 100 s
    await fire_sla(settings, clean_db, conversation_id)
    [told] = await rows(clean_db, "SELECT team_id, operator_ids, data FROM event WHERE kind = 'leads.alerted'")
    [due] = [c["due_at"] for c in (await clocks(clean_db, conversation_id)).values()]
    assert told == {
        "team_id": team_id,
        "operator_ids": [lena],
        "data": {
            "conversationId": conversation_id,
            "reason": "sla_first_response_at_risk",
            "leadIds": [str(lena)],
            "target": "first_response",
            "moment": "at_risk",
            "dueAt": due.isoformat(),
        },
    }
    assert await assignee(clean_db, conversation_id) == {"status": "assigned", "team_id": team_id, "assignee_id": ada}

    await travel(clean_db, conversation_id, 20)
    await fire_sla(settings, clean_db, conversation_id)
    assert await assignee(clean_db, conversation_id) == {
        "status": "assigned",
        "team_id": overflow_id,
        "assignee_id": olga,
    }
    assert await audit(clean_db, conversation_id) == [
        ("test", "assigned", None),
        ("sla_at_risk", "unchanged", "first_response"),
        ("sla_escalation", "unchanged", "leads told (first_response_at_risk): 1"),
        ("sla_breached", "unchanged", "first_response"),
        ("sla_escalation", "assigned", None),
    ]
    [(reason,)] = [
        tuple(r.values()) for r in await rows(clean_db, "SELECT reason FROM assignment WHERE operator_id = :o", o=olga)
    ]
    assert reason == "sla_overflow"
    # Olga's team has no policy: the clock stops there, its breach still counted for the first team.
    found = (await clocks(clean_db, conversation_id))["first_response"]
    assert (found["stopped"], found["ever_breached"]) == (True, True)
    [(clock_team,)] = [tuple(r.values()) for r in await rows(clean_db, "SELECT team_id FROM sla_clock")]
    assert clock_team == team_id
    [moved] = await rows(clean_db, "SELECT data FROM event WHERE kind = 'conversation.transferred'")
    assert (moved["data"]["toTeamId"], moved["data"]["actorId"]) == (str(overflow_id), None)
    assert await sla_events(clean_db, conversation_id) == [
        ("sla.at_risk", "first_response"),
        ("sla.breached", "first_response"),
    ]


async def test_replies_stop_the_response_clocks_the_visitor_restarts_next_response_close_ends_resolution(
    settings: Settings, clean_db: AsyncEngine, http: httpx.AsyncClient
) -> None:
    team_id, (ada,) = await team_with(clean_db, "Ada")
    await make_policy(clean_db, team_id, first_response_seconds=300, next_response_seconds=120, resolution_seconds=7200)
    since = datetime.now(UTC).replace(microsecond=0) - timedelta(seconds=30)
    conversation_id = await routed_at(settings, clean_db, team_id, since)
    ada_auth = bearer(await personal_token(clean_db, ada))
    # Time left, on the conversation and in the inbox list: the first response is due soonest.
    detail = (await http.get(f"/api/v1/conversations/{conversation_id}", headers=ada_auth)).json()["sla"]
    [listed] = (await http.get("/api/v1/conversations", headers=ada_auth)).json()["items"]
    assert listed["sla"]["next"]["target"] == detail["next"]["target"] == "first_response"
    assert [c["target"] for c in detail["clocks"]] == ["first_response", "resolution"]
    next_due = detail["next"]
    assert datetime.fromisoformat(next_due["dueAt"]) == since + timedelta(seconds=300)
    assert (next_due["atRisk"], next_due["breached"], next_due["stoppedAt"]) == (False, False, None)
    elapsed = (datetime.now(UTC) - since).total_seconds()
    assert 300 - elapsed - 2 <= next_due["secondsLeft"] <= 300 - 30
    reply = await http.post(
        f"/api/v1/conversations/{conversation_id}/messages", json={"content": "On it"}, headers=ada_auth
    )
    assert reply.status_code == 201, reply.text
    found = await clocks(clean_db, conversation_id)
    assert (found["first_response"]["stopped"], found["first_response"]["breached"]) == (True, False)
    # Waiting for the visitor: no cycle yet, nothing running.
    assert (found["next_response"]["stopped"], found["next_response"]["cycles"]) == (True, 0)
    assert found["resolution"]["stopped"] is False
    await fire_sla(settings, clean_db, conversation_id)
    assert await timer(clean_db, conversation_id) == {
        "state": "pending",
        "due_at": since + timedelta(seconds=0.8 * 7200),
    }

    said = await http.post(
        "/pocketping/message", json={"sessionId": conversation_id, "content": "Still there?", "sender": "visitor"}
    )
    assert said.status_code == 200, said.text
    [message] = await rows(
        clean_db,
        "SELECT created_at FROM message WHERE conversation_id = :id AND sender = 'visitor'",
        id=conversation_id,
    )
    await fire_sla(settings, clean_db, conversation_id)
    next_response = (await clocks(clean_db, conversation_id))["next_response"]
    assert next_response == {
        "started_at": message["created_at"],
        "at_risk_at": message["created_at"] + timedelta(seconds=96),
        "due_at": message["created_at"] + timedelta(seconds=120),
        "stopped": False,
        "at_risk": False,
        "breached": False,
        "ever_breached": False,
        "cycles": 1,
    }
    assert (await timer(clean_db, conversation_id))["due_at"] == message["created_at"] + timedelta(seconds=96)
    await travel(clean_db, conversation_id, 121)
    await fire_sla(settings, clean_db, conversation_id)
    assert await sla_events(clean_db, conversation_id) == [("sla.breached", "next_response")]

    overdue = (await http.get(f"/api/v1/conversations/{conversation_id}", headers=ada_auth)).json()["sla"]["next"]
    assert (overdue["target"], overdue["breached"]) == ("next_response", True)
    assert overdue["secondsLeft"] < 0
    closed = await http.post(f"/api/v1/conversations/{conversation_id}/close", headers=ada_auth)
    assert closed.status_code == 200, closed.text
    found = await clocks(clean_db, conversation_id)
    assert [(t, c["stopped"], c["ever_breached"]) for t, c in found.items()] == [
        ("first_response", True, False),
        ("next_response", True, True),
        ("resolution", True, False),
    ]
    assert (await timer(clean_db, conversation_id))["state"] == "cancelled"


OFFICE = {"timeZone": "UTC", "weekly": {day: ["09:00-17:00"] for day in ("mon", "tue", "wed", "thu", "fri")}}
FRIDAY_1655 = datetime(2026, 11, 27, 16, 55, tzinfo=UTC)
MONDAY_0900 = datetime(2026, 11, 30, 9, 0, tzinfo=UTC)


@pytest.fixture
def real_clock(settings: Settings) -> Any:
    yield
    hours_clock.configure(settings)


async def test_clocks_pause_while_the_team_is_closed(
    settings: Settings, clean_db: AsyncEngine, real_clock: Any
) -> None:
    """Friday 16:55 in a 09:00-17:00 office: 300 s of a 600 s target run before closing, the rest from Monday
    09:00, so the at-risk moment (300 s) is Friday 17:00 and the deadline Monday 09:05; a whole weekend of
    wall-clock time breaches nothing."""
    now = datetime.now(UTC).replace(microsecond=0)
    offset = (FRIDAY_1655 - now).total_seconds()
    moved = settings.model_copy(update={"clock_offset_seconds": offset})
    hours_clock.configure(moved)
    team_id, _ = await team_with(clean_db, "Ada", business_hours=OFFICE)
    await make_policy(clean_db, team_id, first_response_seconds=600, at_risk_share=0.5)
    conversation_id = await routed_at(moved, clean_db, team_id, now)

    def real(business: datetime) -> datetime:
        return business - timedelta(seconds=offset)

    found = (await clocks(clean_db, conversation_id))["first_response"]
    assert (found["at_risk_at"], found["due_at"]) == (
        real(datetime(2026, 11, 27, 17, 0, tzinfo=UTC)),
        real(MONDAY_0900 + timedelta(seconds=300)),
    )
    # Saturday noon, then Monday 09:04 (the test's own seconds come on top): at risk since Friday's closing,
    # not breached.
    await travel(clean_db, conversation_id, (datetime(2026, 11, 28, 12, 0, tzinfo=UTC) - FRIDAY_1655).total_seconds())
    await fire_sla(moved, clean_db, conversation_id)
    assert await sla_events(clean_db, conversation_id) == [("sla.at_risk", "first_response")]
    await travel(
        clean_db, conversation_id, (MONDAY_0900 - datetime(2026, 11, 28, 12, 0, tzinfo=UTC)).total_seconds() + 240
    )
    await fire_sla(moved, clean_db, conversation_id)
    assert await sla_events(clean_db, conversation_id) == [("sla.at_risk", "first_response")]
    await travel(clean_db, conversation_id, 61)  # past Monday 09:05
    await fire_sla(moved, clean_db, conversation_id)
    assert await sla_events(clean_db, conversation_id) == [
        ("sla.at_risk", "first_response"),
        ("sla.breached", "first_response"),
    ]


async def test_the_inbox_and_the_conversation_page_show_time_left(
    settings: Settings, clean_db: AsyncEngine, http: httpx.AsyncClient
) -> None:
    team_id, (ada,) = await team_with(clean_db, "Ada")
    await make_policy(clean_db, team_id, first_response_seconds=3600, at_risk_share=0.5)
    calm = await routed_at(settings, clean_db, team_id, datetime.now(UTC) - timedelta(seconds=60))
    late = await routed_at(settings, clean_db, team_id, datetime.now(UTC) - timedelta(seconds=3540))
    ada_auth = bearer(await personal_token(clean_db, ada))
    await travel(clean_db, late, 120)  # 3660 s of 3600: a minute overdue
    await fire_sla(settings, clean_db, late)

    inbox = await http.get("/app", headers=ada_auth)
    assert inbox.status_code == 200
    shown = dict(re.findall(r'data-conversation="([^"]+)".*?<span class="sla ([^"]+)"', inbox.text, re.S))
    assert shown == {calm: "sla-ok", late: "sla-breached"}
    assert re.search(r'data-sla="first_response" data-seconds-left="(\d+)"', inbox.text) is not None
    page = await http.get(f"/app/conversations/{late}", headers=ada_auth)
    assert page.status_code == 200
    [(left, text)] = re.findall(r'data-seconds-left="(-\d+)"[^>]*>([^<]+)</span>', page.text)
    assert -70 <= int(left) <= -60
    assert text == f"first response: 1m {-int(left) - 60}s overdue"


async def until(check: Any, seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while not await check():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.1)


async def test_worker_processes_report_at_risk_on_time_then_escalate_the_breach(
    settings: Settings, clean_db: AsyncEngine
) -> None:
    """Two real worker processes: routing, the at-risk moment as its timer fires in real time (2 s after the
    start), then, the clock moved past the deadline, the breach and its steps: the leads told, another operator."""
    team_id, (ada, bob) = await team_with(clean_db, "Ada", "Bob")
    lena = await make_operator(clean_db, "Lena")
    await add_member(clean_db, team_id, lena, role="lead")
    await make_policy(
        clean_db,
        team_id,
        first_response_seconds=60,
        at_risk_share=0.5,
        escalation=[{"on": "breached", "action": "tell_leads"}, {"on": "breached", "action": "reassign"}],
    )
    since = datetime.now(UTC) - timedelta(seconds=28)
    conversation_id, _ = await make_conversation(clean_db, team_id, waiting_since=since)
    arq = await arq_pool(settings)
    await enqueue_route(arq, conversation_id, 1, trigger="test")
    await arq.aclose()
    async with worker_processes(settings, 2):

        async def reported(kind: str) -> bool:
            return any(k == kind for k, _ in await sla_events(clean_db, conversation_id))

        await until(lambda: reported("sla.at_risk"), 20)
        [at_risk] = await rows(
            clean_db, "SELECT at_risk_reported_at FROM sla_clock WHERE conversation_id = :id", id=conversation_id
        )
        # Never early: at or after its moment (the timer's trigger, not a poll).
        assert at_risk["at_risk_reported_at"] >= since + timedelta(seconds=30)
        first = (await assignee(clean_db, conversation_id))["assignee_id"]
        await travel(clean_db, conversation_id, 31)
        await retrigger(settings, clean_db, conversation_id)
        await until(lambda: reported("sla.breached"), 20)
    second = bob if first == ada else ada
    assert await assignee(clean_db, conversation_id) == {
        "status": "assigned",
        "team_id": team_id,
        "assignee_id": second,
    }
    [told] = await rows(
        clean_db, "SELECT operator_ids, data ->> 'reason' AS reason FROM event WHERE kind = 'leads.alerted'"
    )
    assert told == {"operator_ids": [lena], "reason": "sla_first_response_breached"}
    assert [a[0] for a in await audit(clean_db, conversation_id)] == [
        "test",
        "sla_at_risk",
        "sla_breached",
        "sla_escalation",
        "sla_escalation",
    ]
