"""Presence through the REST API and real arq workers: offline policies after the grace, heartbeat expiry, drains."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from service.settings import Settings
from tests.factories import add_member, bearer, make_operator, make_team, personal_token
from tests.integration.timers.test_timers import history, routed
from tests.integration.workers.test_worker import run_burst
from tests.support.routing import make_conversation, rows, set_values, state


async def presence_events(engine: AsyncEngine) -> list[tuple[str, str, str]]:
    found = await rows(engine, "SELECT data FROM event WHERE kind = 'presence.changed' ORDER BY id")
    return [(r["data"]["previous"], r["data"]["status"], r["data"]["reason"]) for r in found]


@pytest.mark.parametrize(
    ("policy", "expected"),
    [
        ("keep", [("ada", "routed", None)]),
        ("requeue", [("ada", "routed", "operator_offline"), ("bob", "routed", None)]),
        ("reassign", [("ada", "routed", "operator_offline"), ("bob", "operator_offline", None)]),
    ],
)
async def test_offline_policy_applies_after_the_grace(
    policy: str,
    expected: list[tuple[str, str, str | None]],
    settings: Settings,
    clean_db: AsyncEngine,
    http: httpx.AsyncClient,
) -> None:
    team_id = await make_team(clean_db, routing_policy="round_robin", offline_policy=policy, offline_grace_seconds=1)
    people = {"ada": await make_operator(clean_db, "Ada", status="online")}
    people["bob"] = await make_operator(clean_db, "Bob", status="away")  # takes no new work: Ada gets it
    for operator_id in people.values():
        await add_member(clean_db, team_id, operator_id)
    [conversation_id] = await routed(settings, clean_db, team_id)
    await set_values(clean_db, "operator", {"id": people["bob"]}, status="online")
    response = await http.put(
        "/api/v1/me/presence", json={"status": "offline"}, headers=bearer(await personal_token(clean_db, people["ada"]))
    )
    assert response.status_code == 200
    assert response.json()["status"] == "offline"
    worker = await run_burst(settings)
    assert worker.jobs_failed == 0
    names = {operator_id: name for name, operator_id in people.items()}
    assert [(names[o], r, e) for o, r, e in await history(clean_db, conversation_id)] == expected
    assert await presence_events(clean_db) == [("online", "offline", "explicit")]


async def test_back_online_within_the_grace_keeps_the_conversations(
    settings: Settings, clean_db: AsyncEngine, http: httpx.AsyncClient
) -> None:
    team_id = await make_team(clean_db, routing_policy="round_robin", offline_policy="requeue", offline_grace_seconds=1)
    ada = await make_operator(clean_db, "Ada", status="online")
    await add_member(clean_db, team_id, ada)
    [conversation_id] = await routed(settings, clean_db, team_id)
    headers = bearer(await personal_token(clean_db, ada))
    for status in ("offline", "away"):
        assert (await http.put("/api/v1/me/presence", json={"status": status}, headers=headers)).status_code == 200
    [timer] = await rows(clean_db, "SELECT kind, revision, state FROM timer WHERE kind = 'offline_grace'")
    assert timer == {"kind": "offline_grace", "revision": 2, "state": "cancelled"}
    assert (await run_burst(settings)).jobs_failed == 0
    assert await history(clean_db, conversation_id) == [(ada, "routed", None)]
    assert await presence_events(clean_db) == [("online", "offline", "explicit"), ("offline", "away", "explicit")]


async def test_going_online_drains_the_team_queue(
    settings: Settings, clean_db: AsyncEngine, http: httpx.AsyncClient
) -> None:
    team_id = await make_team(clean_db, routing_policy="least_busy")
    ada = await make_operator(clean_db, "Ada")
    await add_member(clean_db, team_id, ada)
    conversation_id, _ = await make_conversation(clean_db, team_id, status="queued")
    response = await http.put(
        "/api/v1/me/presence", json={"status": "online"}, headers=bearer(await personal_token(clean_db, ada))
    )
    assert (response.status_code, response.json()["status"]) == (200, "online")
    assert (await run_burst(settings)).jobs_failed == 0
    assert await state(clean_db, conversation_id) == {"status": "assigned", "team_id": team_id, "assignee_id": ada}


async def test_a_silent_heartbeating_client_goes_offline(
    settings: Settings, clean_db: AsyncEngine, http: httpx.AsyncClient
) -> None:
    ada = await make_operator(clean_db, "Ada", status="online")
    bob = await make_operator(clean_db, "Bob", status="online")  # has no client that could fall silent
    team_id = await make_team(clean_db)
    for operator_id in (ada, bob):
        await add_member(clean_db, team_id, operator_id)
    headers = bearer(await personal_token(clean_db, ada))
    beat = await http.post("/api/v1/me/heartbeat", json={"clientId": "phone-1"}, headers=headers)
    assert beat.status_code == 200
    body = beat.json()
    assert (body["status"], body["heartbeatTimeoutSeconds"]) == ("online", 90)
    assert body["lastHeartbeatAt"] is not None
    assert [(c["clientId"], c["kind"], c["status"]) for c in body["clients"]] == [("phone-1", "mobile", "online")]
    # Ada's phone falls silent for longer than the timeout (its lease ran out).
    await set_values(
        clean_db, "presence_client", {"operator_id": ada}, expires_at=datetime.now(UTC) - timedelta(seconds=1)
    )
    assert (await run_burst(settings)).jobs_failed == 0  # its start-up sweep ends the client
    now = (await http.get("/api/v1/me/presence", headers=headers)).json()
    assert (now["status"], now["clients"]) == ("offline", [])
    statuses = await rows(clean_db, "SELECT display_name, status FROM operator ORDER BY display_name")
    assert statuses == [{"display_name": "Ada", "status": "offline"}, {"display_name": "Bob", "status": "online"}]
    assert await presence_events(clean_db) == [("online", "offline", "heartbeat_expired")]


async def test_presence_body_is_validated(clean_db: AsyncEngine, http: httpx.AsyncClient) -> None:
    headers = bearer(await personal_token(clean_db, await make_operator(clean_db, "Ada")))
    response = await http.put("/api/v1/me/presence", json={"status": "busy"}, headers=headers)
    assert response.status_code == 400
    assert "status" in response.text
    assert await rows(clean_db, "SELECT status FROM operator") == [{"status": "offline"}]
