"""SLA clocks through real arq workers on a controllable clock: at risk at its moment, breached at the deadline,
each escalation step, and the clocks' stops (first reply, next visitor message, close)."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from service.queue import enqueue_route
from service.settings import Settings
from tests.factories import add_member, make_operator, make_team
from tests.integration.timers.test_timers import arq_pool
from tests.integration.workers.test_worker import run_burst
from tests.support.routing import make_conversation, rows
from tests.support.sla import fire_sla, travel


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
