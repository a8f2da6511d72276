"""The operator event stream: across api instances, filtered per caller, resumable, never skipping a late commit."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from service.events import record_event
from service.realtime.relay import EventRelay
from service.realtime.tail import EventTail
from service.settings import Settings
from tests.conftest import RunningApi, run_api
from tests.factories import add_member, bearer, make_operator, make_team, personal_token
from tests.support.sse import open_stream


async def record(engine: AsyncEngine, kind: str, team_id: uuid.UUID | None, **values: Any) -> int:
    async with engine.begin() as conn:
        return await record_event(conn, kind, team_id=team_id, **values)


@asynccontextmanager
async def relay_running(api: RunningApi, settings: Settings) -> AsyncIterator[None]:
    """The worker's relay, as a worker runs it: it announces new events on Redis."""
    task = asyncio.create_task(EventRelay(api.app.state.engine, api.app.state.redis, settings).run())
    try:
        yield
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def operator_in(engine: AsyncEngine, team_id: uuid.UUID, name: str, **values: Any) -> str:
    operator_id = await make_operator(engine, name, **values)
    await add_member(engine, team_id, operator_id)
    return await personal_token(engine, operator_id)


async def test_an_event_recorded_in_one_instance_reaches_a_stream_on_another_once(
    settings: Settings, clean_db: AsyncEngine
) -> None:
    # Periodic reads far apart: only the relay's Redis notification can bring the event in time.
    settings = settings.model_copy(update={"events_poll_seconds": 600.0})
    team = await make_team(clean_db)
    token = await operator_in(clean_db, team, "Ana")
    async with run_api(settings) as api_a, run_api(settings) as api_b, relay_running(api_a, settings):
        async with open_stream(api_b.url, token) as on_b, open_stream(api_a.url, token) as on_a:
            event_id = await record(
                api_a.app.state.engine, "conversation.queued", team, data={"conversationId": None, "position": 1}
            )
            sentinel = await record(api_a.app.state.engine, "presence.changed", team, data={"status": "online"})
            for stream in (on_b, on_a):
                first, second = await stream.take(2)
                assert (first.id, first.event, first.data["data"]) == (
                    event_id,
                    "conversation.queued",
                    {"conversationId": None, "position": 1},
                )
                assert (first.data["teamId"], first.data["operatorIds"]) == (str(team), [])
                # The next event is the one recorded after it: no duplicate in between.
                assert (second.id, second.event) == (sentinel, "presence.changed")


async def test_stream_shows_the_callers_teams_and_mentions_only(settings: Settings, clean_db: AsyncEngine) -> None:
    team_x, team_y = await make_team(clean_db, "X"), await make_team(clean_db, "Y")
    member = await operator_in(clean_db, team_x, "Xena")
    outsider = await operator_in(clean_db, team_y, "Yuri")
    mentioned_id = await make_operator(clean_db, "Mia")
    await add_member(clean_db, team_y, mentioned_id)
    mentioned = await personal_token(clean_db, mentioned_id)
    admin = await personal_token(clean_db, await make_operator(clean_db, "Root", is_admin=True))
    settings = settings.model_copy(update={"events_poll_seconds": 0.05})
    async with run_api(settings) as api:
        async with (
            open_stream(api.url, member) as member_stream,
            open_stream(api.url, outsider) as outsider_stream,
            open_stream(api.url, mentioned) as mentioned_stream,
            open_stream(api.url, admin) as admin_stream,
        ):
            note = await record(clean_db, "note.created", team_x, operator_ids=[mentioned_id], data={"body": "hi"})
            other = await record(clean_db, "conversation.queued", team_y)
            assert [e.id for e in await member_stream.take(1)] == [note]
            assert [e.id for e in await mentioned_stream.take(2)] == [note, other]
            assert [e.id for e in await admin_stream.take(2)] == [note, other]
            # The other team's operator never got the note: their first event is their own team's.
            assert [e.id for e in await outsider_stream.take(1)] == [other]


async def test_last_event_id_resumes_with_exactly_the_missed_events(settings: Settings, clean_db: AsyncEngine) -> None:
    team, elsewhere = await make_team(clean_db), await make_team(clean_db)
    token = await operator_in(clean_db, team, "Ana")
    settings = settings.model_copy(update={"events_poll_seconds": 0.05})
    async with run_api(settings) as api:
        async with open_stream(api.url, token) as stream:
            seen = await record(clean_db, "conversation.assigned", team)
            assert [e.id for e in await stream.take(1)] == [seen]
        missed = [
            await record(clean_db, "message.created", team),
            await record(clean_db, "message.created", elsewhere),
            await record(clean_db, "conversation.closed", team),
        ]
        async with open_stream(api.url, token, last_event_id=seen) as resumed:
            live = await record(clean_db, "conversation.reopened", team)
            events = await resumed.take(3)
        assert [(e.id, e.event) for e in events] == [
            (missed[0], "message.created"),
            (missed[2], "conversation.closed"),
            (live, "conversation.reopened"),
        ]


async def test_streams_end_in_time_so_a_revoked_token_stops_receiving(
    settings: Settings, clean_db: AsyncEngine
) -> None:
    settings = settings.model_copy(update={"events_poll_seconds": 0.05, "events_stream_max_seconds": 1.0})
    team = await make_team(clean_db)
    token = await operator_in(clean_db, team, "Ana")
    async with run_api(settings) as api:
        async with open_stream(api.url, token) as stream:
            seen = await record(clean_db, "conversation.assigned", team)
            assert [e.id for e in await stream.take(1)] == [seen]
            async with clean_db.begin() as conn:
                await conn.execute(sa.text("UPDATE api_token SET revoked_at = now()"))
            assert await stream.until_closed() == []
        async with httpx.AsyncClient(base_url=api.url) as client:
            response = await client.get("/api/v1/events", headers=bearer(token))
        assert response.status_code == 401


async def test_a_late_commit_is_not_skipped_and_a_rollback_does_not_block(clean_db: AsyncEngine) -> None:
    tail = EventTail(0, settle_seconds=0)
    async with clean_db.connect() as slow:
        slow_tx = await slow.begin()
        early = await record_event(slow, "message.created", team_id=None)
        late = await record(clean_db, "message.created", None)
        assert early < late
        async with clean_db.connect() as conn:
            # Id `late` is visible but `early` may still commit: nothing is handed out yet.
            assert (await tail.read(conn))[0] == []
        await slow_tx.commit()
    async with clean_db.connect() as conn:
        assert [row.id for row in (await tail.read(conn))[0]] == [early, late]
    async with clean_db.connect() as aborted:
        aborted_tx = await aborted.begin()
        await record_event(aborted, "message.created", team_id=None)
        after = await record(clean_db, "message.created", None)
        async with clean_db.connect() as conn:
            assert (await tail.read(conn))[0] == []
        await aborted_tx.rollback()
    async with clean_db.connect() as conn:
        # The rolled-back id is given up once its transaction has ended.
        assert [row.id for row in (await tail.read(conn))[0]] == [after]
        assert await conn.scalar(sa.select(sa.func.count()).select_from(sa.text("event"))) == 3
