"""AI takeover end to end: widget message, the team's delay, a worker's AI reply on the visitor's socket."""

from __future__ import annotations

import uuid
from typing import Any

import sqlalchemy as sa
import websockets
from sqlalchemy.ext.asyncio import AsyncEngine

from service.ai.providers import LOCAL_LABEL
from service.routing.placement import DEFAULT_TEAM_NAME
from service.settings import Settings
from tests.conftest import RunningApi
from tests.factories import add_member, bearer, make_operator, make_team, personal_token
from tests.integration.realtime.test_fanout import received
from tests.integration.workers.test_worker import run_burst
from tests.support.routing import rows


async def support_team(engine: AsyncEngine, delay: int) -> tuple[uuid.UUID, uuid.UUID]:
    """The default team with AI on, and its lead Ada (offline: nobody takes the conversation)."""
    team_id = await make_team(
        engine,
        DEFAULT_TEAM_NAME,
        is_default=True,
        ai_enabled=True,
        ai_takeover_delay_seconds=delay,
        ai_system_prompt="You answer for Acme.",
    )
    ada = await make_operator(engine, "Ada")
    await add_member(engine, team_id, ada, "lead")
    return team_id, ada


async def visitor_says(api: RunningApi, session_id: str, content: str) -> None:
    async with api.client() as http:
        response = await http.post(
            "/pocketping/message", json={"sessionId": session_id, "content": content, "sender": "visitor"}
        )
        assert response.status_code == 200


async def open_session(api: RunningApi) -> str:
    async with api.client() as http:
        return str((await http.post("/pocketping/connect", json={"visitorId": "v-ai"})).json()["sessionId"])


def messages_of(events: list[dict[str, Any]]) -> list[tuple[str, str]]:
    return [(e["data"]["sender"], e["data"]["content"]) for e in events if e["type"] == "message"]


async def test_an_unanswered_visitor_message_gets_the_ai_reply_on_its_socket(
    api: RunningApi, settings: Settings, clean_db: AsyncEngine
) -> None:
    await support_team(clean_db, delay=1)
    session_id = await open_session(api)
    async with websockets.connect(f"{api.ws_url}/pocketping/stream?sessionId={session_id}") as socket:
        await visitor_says(api, session_id, "Where is my parcel?")
        # Routing gives it the team and arms the timer; the worker waits for it, then the AI answers.
        worker = await run_burst(settings)
        assert worker.jobs_failed == 0
        events = await received(socket)
    reply = f'{LOCAL_LABEL} You wrote: "Where is my parcel?". I read 1 messages, with the team\'s instructions.'
    assert [e["type"] for e in events] == ["message", "ai_takeover", "message"]
    assert events[1]["data"] == {"sessionId": session_id, "reason": "timeout"}
    assert messages_of(events) == [("visitor", "Where is my parcel?"), ("ai", reply)]
    stored = await rows(clean_db, "SELECT sender, content FROM message ORDER BY seq")
    assert stored == [{"sender": "visitor", "content": "Where is my parcel?"}, {"sender": "ai", "content": reply}]
    kinds = await rows(clean_db, "SELECT kind, data->>'reason' AS reason FROM event WHERE kind LIKE 'ai.%' ORDER BY id")
    assert kinds == [{"kind": "ai.takeover", "reason": "timeout"}]
    [conversation] = await rows(clean_db, "SELECT ai_active FROM conversation")
    assert conversation == {"ai_active": True}


async def test_an_operator_reply_before_the_delay_means_no_ai_message(
    api: RunningApi, settings: Settings, clean_db: AsyncEngine
) -> None:
    _, ada = await support_team(clean_db, delay=2)
    session_id = await open_session(api)
    async with websockets.connect(f"{api.ws_url}/pocketping/stream?sessionId={session_id}") as socket:
        await visitor_says(api, session_id, "Hello?")
        assert (await run_burst(settings, max_burst_jobs=1, cron_jobs=[])).jobs_failed == 0  # routing only
        async with api.client() as http:
            response = await http.post(
                f"/api/v1/conversations/{session_id}/messages",
                json={"content": "Hi, Ada here"},
                headers=bearer(await personal_token(clean_db, ada)),
            )
        assert response.status_code == 201
        worker = await run_burst(settings)  # the AI timer's trigger runs at its due time, and finds it cancelled
        assert worker.jobs_failed == 0
        events = await received(socket)
    assert messages_of(events) == [("visitor", "Hello?"), ("operator", "Hi, Ada here")]
    [timer] = await rows(clean_db, "SELECT kind, revision, state FROM timer")
    assert timer == {"kind": "ai_takeover", "revision": 2, "state": "cancelled"}
    assert await rows(clean_db, "SELECT sender FROM message WHERE sender = 'ai'") == []


async def test_pause_handover_and_takeback(api: RunningApi, settings: Settings, clean_db: AsyncEngine) -> None:
    _, ada = await support_team(clean_db, delay=3600)
    session_id = await open_session(api)
    await visitor_says(api, session_id, "Anyone?")
    assert (await run_burst(settings, max_burst_jobs=1, cron_jobs=[])).jobs_failed == 0
    headers = bearer(await personal_token(clean_db, ada))
    base = f"/api/v1/conversations/{session_id}/ai"
    async with api.client() as http:
        paused = await http.post(f"{base}/pause", headers=headers)
        assert (paused.status_code, paused.json()) == (
            200,
            {"conversationId": session_id, "aiActive": False, "aiPaused": True},
        )
        # Paused: a new visitor message arms nothing.
        await visitor_says(api, session_id, "Still there?")
        [timer] = await rows(clean_db, "SELECT state FROM timer")
        assert timer == {"state": "cancelled"}
        handed = await http.post(f"{base}/handover", headers=headers)
        assert handed.json() == {"conversationId": session_id, "aiActive": True, "aiPaused": False}
    for _ in range(2):  # the takeover (at once), then the AI reply it left in the outbox
        assert (await run_burst(settings, max_burst_jobs=1, cron_jobs=[])).jobs_failed == 0
    [ai_reply] = await rows(clean_db, "SELECT content FROM message WHERE sender = 'ai'")
    assert ai_reply["content"].startswith(LOCAL_LABEL)
    assert "I read 2 messages" in ai_reply["content"]
    async with api.client() as http:
        taken = await http.post(f"{base}/takeback", headers=headers)
    assert taken.json() == {"conversationId": session_id, "aiActive": False, "aiPaused": False}
    events = await rows(
        clean_db, "SELECT kind, data->>'reason' AS reason FROM event WHERE kind LIKE 'ai.%' ORDER BY id"
    )
    assert events == [
        {"kind": "ai.state_changed", "reason": "pause"},
        {"kind": "ai.takeover", "reason": "handover"},
        {"kind": "ai.state_changed", "reason": "handover"},
        {"kind": "ai.state_changed", "reason": "takeback"},
    ]
    async with clean_db.connect() as conn:
        active = await conn.scalar(sa.text("SELECT ai_active FROM conversation"))
    assert active is False
