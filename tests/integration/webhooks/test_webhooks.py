"""Outbound webhooks: endpoints API, deliveries signed as documented, retried, delivered exactly once."""

from __future__ import annotations

import asyncio
import re
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import httpx2
import sqlalchemy as sa
import uvicorn
from sqlalchemy.ext.asyncio import AsyncEngine

from service.events import record_event
from service.realtime.relay import EventRelay
from service.settings import Settings
from tests.conftest import RunningApi
from tests.factories import add_member, bearer, make_operator, make_team, personal_token
from tests.integration.workers.test_worker import run_burst
from workers import jobs

DOC = Path(__file__).resolve().parents[3] / "docs" / "webhooks.md"


def documented_verifier() -> Any:
    """``verify_signature`` exactly as docs/webhooks.md shows it, so the doc and the service cannot drift."""
    [snippet] = [block for block in re.findall(r"```python\n(.*?)```", DOC.read_text(), re.S) if "def verify" in block]
    namespace: dict[str, Any] = {}
    exec(snippet, namespace)
    return namespace["verify_signature"]


class Receiver:
    """A webhook receiver on loopback that answers the given statuses in turn (then 200) and keeps what it got."""

    def __init__(self, *statuses: int) -> None:
        self.statuses = list(statuses)
        self.requests: list[tuple[dict[str, str], bytes, int]] = []

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        body, more = b"", True
        while more:
            message = await receive()
            body += message.get("body", b"")
            more = message.get("more_body", False)
        status = self.statuses.pop(0) if self.statuses else 200
        self.requests.append(({k.decode(): v.decode() for k, v in scope["headers"]}, body, status))
        await send({"type": "http.response.start", "status": status, "headers": [(b"content-type", b"text/plain")]})
        await send({"type": "http.response.body", "body": b"nope" if status >= 400 else b"ok"})


@asynccontextmanager
async def serve(receiver: Any, host: str = "127.0.0.1", **options: Any) -> AsyncIterator[str]:
    """Serve the receiver on ``host`` (HTTPS when ``options`` name ``ssl_certfile``); yields its URL."""
    config = uvicorn.Config(receiver, host=host, port=0, log_config=None, lifespan="off", **options)
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    while not server.started:  # noqa: ASYNC110  (uvicorn offers no event to wait on)
        await asyncio.sleep(0.01)
    try:
        scheme = "https" if "ssl_certfile" in options else "http"
        yield f"{scheme}://{host}:{server.servers[0].sockets[0].getsockname()[1]}/hook"
    finally:
        server.should_exit = True
        await task


async def lead_of_new_team(engine: AsyncEngine) -> tuple[uuid.UUID, dict[str, str]]:
    team = await make_team(engine)
    lead = await make_operator(engine, "Lena")
    await add_member(engine, team, lead, "lead")
    return team, bearer(await personal_token(engine, lead))


async def record(engine: AsyncEngine, kind: str, team_id: uuid.UUID, **data: Any) -> int:
    async with engine.begin() as conn:
        return await record_event(conn, kind, team_id=team_id, conversation_id=None, data=data)


async def test_failing_twice_then_succeeding_gets_the_event_exactly_once_more(
    api: RunningApi, http: httpx.AsyncClient, settings: Settings, clean_db: AsyncEngine
) -> None:
    settings = settings.model_copy(update={"outbox_retry_base_seconds": 0.05})
    team, lead = await lead_of_new_team(clean_db)
    other_team = await make_team(clean_db)
    receiver = Receiver(500, 500)
    async with serve(receiver) as url:
        response = await http.post(
            f"/api/v1/teams/{team}/webhooks", json={"url": url, "events": ["conversation.assigned"]}, headers=lead
        )
        assert response.status_code == 201, response.text
        created = response.json()
        secret = created["secret"]
        assert (created["url"], created["events"], created["enabled"]) == (url, ["conversation.assigned"], True)
        assigned = await record(clean_db, "conversation.assigned", team, conversationId="c-1", operatorId="o-1")
        await record(clean_db, "conversation.closed", team, conversationId="c-1")  # not subscribed
        await record(clean_db, "conversation.assigned", other_team, conversationId="c-2")  # another team's

        await EventRelay(clean_db, api.app.state.redis, settings).step()  # what the worker's relay loop does
        worker = await run_burst(settings)  # delivers, and retries until the receiver takes it
        assert worker.jobs_failed == 0
        assert [status for _, _, status in receiver.requests] == [500, 500, 200]
        verify = documented_verifier()
        for headers, body, _ in receiver.requests:
            assert verify(secret, headers["switchboard-signature"], body) is True
            assert verify("whsec_wrong", headers["switchboard-signature"], body) is False
            assert verify(secret, headers["switchboard-signature"], body + b" ") is False
            assert (headers["switchboard-event"], headers["content-type"]) == (
                "conversation.assigned",
                "application/json",
            )
        assert len({headers["switchboard-delivery"] for headers, _, _ in receiver.requests}) == 1
        assert len({body for _, body, _ in receiver.requests}) == 1
        event = httpx.Response(200, content=receiver.requests[0][1]).json()
        assert (event["id"], event["type"], event["teamId"], event["data"]) == (
            assigned,
            "conversation.assigned",
            str(team),
            {"conversationId": "c-1", "operatorId": "o-1"},
        )

        # Delivered is final: more workers, sweeps and relays send nothing more.
        assert (await run_burst(settings)).jobs_failed == 0
        assert len(receiver.requests) == 3

    log = (await http.get(f"/api/v1/teams/{team}/webhooks/{created['id']}/deliveries", headers=lead)).json()
    [delivery] = log["items"]
    assert delivery["id"] == int(receiver.requests[0][0]["switchboard-delivery"])
    assert (delivery["eventId"], delivery["eventType"], delivery["attempts"], delivery["statusCode"]) == (
        assigned,
        "conversation.assigned",
        3,
        200,
    )
    assert delivery["lastError"] == "HTTP 500: nope"
    assert delivery["deliveredAt"] is not None and delivery["nextAttemptAt"] is None
    assert log["nextCursor"] is None


async def test_relaying_the_same_events_twice_adds_one_delivery_per_endpoint(
    api: RunningApi, http: httpx.AsyncClient, settings: Settings, clean_db: AsyncEngine
) -> None:
    team, lead = await lead_of_new_team(clean_db)
    for path in ("/a", "/b"):
        response = await http.post(
            f"/api/v1/teams/{team}/webhooks", json={"url": f"https://example.com{path}"}, headers=lead
        )
        assert response.status_code == 201
    event = await record(clean_db, "message.created", team, conversationId="c-1")
    redis = api.app.state.redis
    # Two relays (two workers, or one restarted without its cursor) over the same events.
    await EventRelay(clean_db, redis, settings).step()
    async with clean_db.begin() as conn:
        await conn.execute(sa.text("DELETE FROM event_cursor"))
    await EventRelay(clean_db, redis, settings).step()
    async with clean_db.connect() as conn:
        rows = (await conn.execute(sa.text("SELECT dedupe_key, kind FROM outbox ORDER BY dedupe_key"))).all()
        endpoints = (await conn.execute(sa.text("SELECT id FROM webhook_endpoint ORDER BY id"))).scalars().all()
    assert [tuple(row) for row in rows] == [(f"webhook:{e}:{event}", "webhook") for e in endpoints]


async def test_endpoint_crud_keeps_the_secret_encrypted_and_shown_once(
    api: RunningApi, http: httpx.AsyncClient, settings: Settings, clean_db: AsyncEngine
) -> None:
    team, lead = await lead_of_new_team(clean_db)
    base = f"/api/v1/teams/{team}/webhooks"
    for bad in ("ftp://example.com/x", "not a url", "https://user:pw@example.com/x"):
        response = await http.post(base, json={"url": bad}, headers=lead)
        assert (response.status_code, [e["field"] for e in response.json()["errors"]]) == (400, ["url"]), bad
    response = await http.post(base, json={"url": "https://example.com/x", "events": ["note.created"]}, headers=lead)
    assert (response.status_code, [e["field"] for e in response.json()["errors"]]) == (400, ["events.0"])

    created = (await http.post(base, json={"url": "https://example.com/x"}, headers=lead)).json()
    assert created["secret"].startswith("whsec_")
    async with clean_db.connect() as conn:
        stored = await conn.scalar(sa.text("SELECT secret_encrypted FROM webhook_endpoint"))
    assert created["secret"] not in stored
    one = (await http.get(f"{base}/{created['id']}", headers=lead)).json()
    assert "secret" not in one and one["events"] == []
    changed = await http.patch(
        f"{base}/{created['id']}", json={"enabled": False, "events": ["message.created"]}, headers=lead
    )
    assert (changed.status_code, changed.json()["enabled"], changed.json()["events"]) == (
        200,
        False,
        ["message.created"],
    )
    listed = (await http.get(base, headers=lead)).json()
    assert ([e["id"] for e in listed["items"]], listed["nextCursor"]) == ([created["id"]], None)

    test = await http.post(f"{base}/{created['id']}/test", headers=lead)
    assert (test.status_code, test.json()["eventType"], test.json()["attempts"]) == (202, "webhook.test", 0)

    assert (await http.delete(f"{base}/{created['id']}", headers=lead)).status_code == 204
    assert (await http.get(f"{base}/{created['id']}", headers=lead)).status_code == 404
    async with clean_db.connect() as conn:
        assert await conn.scalar(sa.text("SELECT count(*) FROM outbox")) == 0


async def test_the_test_delivery_reaches_the_receiver_signed(
    api: RunningApi, http: httpx.AsyncClient, settings: Settings, clean_db: AsyncEngine
) -> None:
    team, lead = await lead_of_new_team(clean_db)
    receiver = Receiver()
    async with serve(receiver) as url:
        created = (await http.post(f"/api/v1/teams/{team}/webhooks", json={"url": url}, headers=lead)).json()
        delivery = (await http.post(f"/api/v1/teams/{team}/webhooks/{created['id']}/test", headers=lead)).json()
        assert (await run_burst(settings)).jobs_failed == 0
    [(headers, body, status)] = receiver.requests
    assert (headers["switchboard-event"], headers["switchboard-delivery"], status) == (
        "webhook.test",
        str(delivery["id"]),
        200,
    )
    assert documented_verifier()(created["secret"], headers["switchboard-signature"], body) is True


async def test_a_duplicate_job_while_the_receiver_is_answering_sends_nothing(
    api: RunningApi, http: httpx.AsyncClient, settings: Settings, clean_db: AsyncEngine
) -> None:
    team, lead = await lead_of_new_team(clean_db)
    duplicate_results: list[str] = []

    class SlowReceiver(Receiver):
        async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
            # The first send is in flight (outside any transaction): a second job must leave the row alone.
            duplicate_results.append(await jobs.deliver_outbox(ctx, outbox_id=outbox_id))
            await super().__call__(scope, receive, send)

    receiver = SlowReceiver()
    async with serve(receiver) as url, httpx2.AsyncClient() as client:
        created = (await http.post(f"/api/v1/teams/{team}/webhooks", json={"url": url}, headers=lead)).json()
        outbox_id = (await http.post(f"/api/v1/teams/{team}/webhooks/{created['id']}/test", headers=lead)).json()["id"]
        ctx = {"engine": clean_db, "settings": settings, "http": client, "redis": api.app.state.redis}
        assert await jobs.deliver_outbox(ctx, outbox_id=outbox_id) == "delivered"
    assert (duplicate_results, len(receiver.requests)) == (["skipped"], 1)
