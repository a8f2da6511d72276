"""Presence per client (issue 14): streams, heartbeats, bridges and scripts as clients, the lapse grace, auto-away.

Time passes by moving the clients' own timestamps back (their lease, their last activity), not by sleeping.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import httpx
from sqlalchemy.ext.asyncio import AsyncEngine

from service.settings import Settings
from tests.conftest import run_api
from tests.factories import add_member, bearer, make_operator, make_team, personal_token
from tests.integration.presence.test_presence import presence_events
from tests.integration.timers.test_timers import history, routed
from tests.integration.workers.test_worker import run_burst
from tests.support.routing import rows, set_values
from tests.support.sse import open_stream


async def status(engine: AsyncEngine, operator_id: object) -> str:
    [row] = await rows(engine, "SELECT status FROM operator WHERE id = :id", id=operator_id)
    return str(row["status"])


async def test_a_phone_falling_silent_leaves_the_operator_online_through_another_client(
    settings: Settings, clean_db: AsyncEngine, http: httpx.AsyncClient
) -> None:
    ada = await make_operator(clean_db, "Ada")
    await add_member(clean_db, await make_team(clean_db), ada)
    headers = bearer(await personal_token(clean_db, ada))
    assert (await http.post("/api/v1/me/heartbeat", json={"clientId": "phone"}, headers=headers)).status_code == 200
    online = await http.put("/api/v1/me/presence", json={"status": "online"}, headers=headers)
    assert [(c["clientId"], c["kind"]) for c in online.json()["clients"]] == [("phone", "mobile"), ("api", "api")]

    # 91 s later: the phone's lease ran out, the script's client has none.
    await set_values(
        clean_db, "presence_client", {"client_id": "phone"}, expires_at=datetime.now(UTC) - timedelta(seconds=1)
    )
    assert (await run_burst(settings)).jobs_failed == 0

    now = (await http.get("/api/v1/me/presence", headers=headers)).json()
    assert (now["status"], [c["clientId"] for c in now["clients"]]) == ("online", ["api"])
    assert await presence_events(clean_db) == [("offline", "online", "heartbeat")]


async def test_a_chosen_away_holds_until_online_is_chosen(clean_db: AsyncEngine, http: httpx.AsyncClient) -> None:
    ada = await make_operator(clean_db, "Ada")
    headers = bearer(await personal_token(clean_db, ada))
    away = await http.put("/api/v1/me/presence", json={"status": "away"}, headers=headers)
    beat = await http.post("/api/v1/me/heartbeat", json={"clientId": "phone", "active": True}, headers=headers)
    back = await http.put("/api/v1/me/presence", json={"status": "online", "clientId": "phone"}, headers=headers)

    assert (away.json()["status"], away.json()["chosenStatus"]) == ("away", "away")
    assert (beat.json()["status"], beat.json()["chosenStatus"]) == ("away", "away")
    assert (back.json()["status"], back.json()["chosenStatus"]) == ("online", None)
    assert [c["clientId"] for c in back.json()["clients"]] == ["phone"]


async def test_auto_away_after_the_teams_minutes_without_activity_and_back_on_activity(
    settings: Settings, clean_db: AsyncEngine, http: httpx.AsyncClient
) -> None:
    team_id = await make_team(clean_db, auto_away_minutes=5)
    ada = await make_operator(clean_db, "Ada")
    await add_member(clean_db, team_id, ada)
    headers = bearer(await personal_token(clean_db, ada))
    beat = {"clientId": "tab-1", "kind": "web", "active": True}
    assert (await http.post("/api/v1/me/heartbeat", json=beat, headers=headers)).json()["status"] == "online"

    await set_values(
        clean_db, "presence_client", {"operator_id": ada}, last_active_at=datetime.now(UTC) - timedelta(minutes=6)
    )
    assert (await run_burst(settings)).jobs_failed == 0
    assert await status(clean_db, ada) == "away"
    # A heartbeat without activity keeps it away; activity brings it back.
    idle = await http.post("/api/v1/me/heartbeat", json={**beat, "active": False}, headers=headers)
    active = await http.post("/api/v1/me/heartbeat", json=beat, headers=headers)

    assert (idle.json()["status"], active.json()["status"]) == ("away", "online")
    assert await presence_events(clean_db) == [
        ("offline", "online", "active"),
        ("online", "away", "auto_away"),
        ("away", "online", "active"),
    ]


async def test_closing_the_last_stream_goes_offline_after_the_grace_and_the_team_policy_applies(
    settings: Settings, clean_db: AsyncEngine
) -> None:
    team_id = await make_team(clean_db, routing_policy="round_robin", offline_policy="requeue", offline_grace_seconds=1)
    ada = await make_operator(clean_db, "Ada")
    await add_member(clean_db, team_id, ada)
    token = await personal_token(clean_db, ada)
    quick = settings.model_copy(update={"presence_offline_grace_seconds": 1.0})
    # Two api instances: one tab's stream on each.
    async with run_api(quick) as first, run_api(quick) as second:
        async with open_stream(first.url, token, path="/api/v1/events?clientId=tab-1"):
            async with open_stream(second.url, token, path="/api/v1/events?clientId=tab-2"):
                assert await status(clean_db, ada) == "online"
                [conversation_id] = await routed(settings, clean_db, team_id)
            await _closed(clean_db, "tab-2")
            # One tab left: still online, no lapse pending.
            assert (await run_burst(settings)).jobs_failed == 0
            assert await status(clean_db, ada) == "online"
            assert await history(clean_db, conversation_id) == [(ada, "routed", None)]
        await _closed(clean_db, "tab-1")
        assert await status(clean_db, ada) == "online"  # within the grace
        assert (await run_burst(settings)).jobs_failed == 0  # the lapse, then the team's offline grace

    assert await status(clean_db, ada) == "offline"
    assert await history(clean_db, conversation_id) == [(ada, "routed", "operator_offline")]
    assert await presence_events(clean_db) == [
        ("offline", "online", "connected"),
        ("online", "offline", "clients_gone"),
    ]


async def _closed(engine: AsyncEngine, client_id: str) -> None:
    """Until the api has ended the client of a stream the test closed (its closing runs after the disconnect)."""
    for _ in range(200):
        if not await rows(engine, "SELECT 1 FROM presence_client WHERE client_id = :c", c=client_id):
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"{client_id} was not ended")


async def test_team_members_see_each_others_status_and_since_when(
    clean_db: AsyncEngine, http: httpx.AsyncClient
) -> None:
    team_id = await make_team(clean_db, "Support")
    ada = await make_operator(clean_db, "Ada")
    bob = await make_operator(clean_db, "Bob")
    for operator_id in (ada, bob):
        await add_member(clean_db, team_id, operator_id)
    changed = await http.put(
        "/api/v1/me/presence", json={"status": "online"}, headers=bearer(await personal_token(clean_db, ada))
    )
    members = await http.get(f"/api/v1/teams/{team_id}/members", headers=bearer(await personal_token(clean_db, bob)))

    assert members.status_code == 200
    seen = {m["displayName"]: (m["status"], m["statusChangedAt"]) for m in members.json()["items"]}
    assert seen == {"Ada": ("online", changed.json()["statusChangedAt"]), "Bob": ("offline", None)}
