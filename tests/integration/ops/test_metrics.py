"""/metrics, scraped as Prometheus does: each metric moves when its cause happens, across processes."""

from __future__ import annotations

import asyncio
import re
from ipaddress import ip_network
from pathlib import Path
from typing import Any

import httpx
import websockets
from prometheus_client import CONTENT_TYPE_LATEST
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy.ext.asyncio import AsyncEngine

from service import outbox
from service.routing.placement import DEFAULT_TEAM_NAME
from service.settings import Settings
from tests.conftest import RunningApi, run_api
from tests.factories import bearer, make_operator, make_team, personal_token
from tests.integration.ai.test_ai_takeover import open_session, visitor_says
from tests.integration.workers.test_worker import run_burst
from tests.support.routing_worker import wait_until_idle, worker_processes

ROOT = Path(__file__).resolve().parents[3]
Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


async def scrape(http: httpx.AsyncClient) -> Samples:
    response = await http.get("/metrics")
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == CONTENT_TYPE_LATEST
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(response.text)
        for sample in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float:
    """The sample's value; 0 when absent (a labelled series appears with its first observation)."""
    return samples.get((name, frozenset(labels.items())), 0.0)


async def test_each_metric_moves_with_its_cause(
    api: RunningApi, http: httpx.AsyncClient, settings: Settings, clean_db: AsyncEngine
) -> None:
    team_id = await make_team(
        clean_db, DEFAULT_TEAM_NAME, is_default=True, ai_enabled=True, ai_takeover_delay_seconds=1
    )
    team = str(team_id)
    before = await scrape(http)

    # Requests, by route template.
    for _ in range(2):
        assert (await http.get("/healthz")).status_code == 200
    # A visitor's message: one ingest batch; routed by a worker (nobody online: queued); the AI timer fires.
    session_id = await open_session(api)
    await visitor_says(api, session_id, "Hello?")
    assert (await run_burst(settings)).jobs_failed == 0
    async with clean_db.begin() as conn:
        await outbox.add(conn, "webhook", {"probe": True})
    after = await scrape(http)

    healthz = {"app_name": "switchboard", "method": "GET", "path": "/healthz", "status_code": "200"}
    assert (
        value(after, "switchboard_http_requests_total", **healthz)
        - value(before, "switchboard_http_requests_total", **healthz)
        == 2
    )
    assert (
        value(after, "switchboard_http_request_duration_seconds_count", **healthz)
        - value(before, "switchboard_http_request_duration_seconds_count", **healthz)
        == 2
    )
    message = {"app_name": "switchboard", "method": "POST", "path": "/pocketping/message", "status_code": "200"}
    assert (
        value(after, "switchboard_http_requests_total", **message)
        - value(before, "switchboard_http_requests_total", **message)
        == 1
    )
    assert (
        value(after, "switchboard_ingest_batch_size_count") - value(before, "switchboard_ingest_batch_size_count") == 1
    )
    assert value(after, "switchboard_ingest_batch_size_sum") - value(before, "switchboard_ingest_batch_size_sum") == 1
    routed = "switchboard_routing_decision_seconds_count"
    assert value(after, routed, outcome="queued") - value(before, routed, outcome="queued") == 1
    lateness = "switchboard_timer_lateness_seconds_count"
    assert value(after, lateness, kind="ai_takeover") - value(before, lateness, kind="ai_takeover") == 1
    assert value(after, "switchboard_queue_depth", team=team) == 1
    assert 0 < value(after, "switchboard_queue_oldest_wait_seconds", team=team) < 60
    assert value(after, "switchboard_outbox_backlog", kind="webhook") == 1
    async with api.app.state.engine.connect() as held:  # a pooled connection in use meanwhile
        await held.exec_driver_sql("SELECT 1")
        holding = await scrape(http)
    assert value(holding, "switchboard_db_pool_connections", state="in_use") >= 1

    # The Grafana dashboard in deploy/ charts only what is served.
    served = {name for name, _ in after} | set(re.findall(r"^# TYPE (\w+)", (await http.get("/metrics")).text, re.M))
    charted = set(re.findall(r"switchboard_\w+", (ROOT / "deploy" / "grafana-dashboard.json").read_text()))
    assert sorted(charted - served) == []
    assert value(after, "switchboard_db_pool_connections", state="size") >= settings.db_pool_size * 2


async def test_live_connections_are_counted_while_open(
    api: RunningApi, http: httpx.AsyncClient, clean_db: AsyncEngine
) -> None:
    gauge = "switchboard_realtime_connections"
    session_id = await open_session(api)
    before = await scrape(http)
    token = bearer(await personal_token(clean_db, await make_operator(clean_db, "Ada")))
    async with (
        websockets.connect(f"{api.ws_url}/pocketping/stream?sessionId={session_id}"),
        http.stream("GET", "/pocketping/stream", params={"sessionId": session_id}) as widget_sse,
        http.stream("GET", "/api/v1/events", headers=token) as operator_sse,
    ):
        assert (widget_sse.status_code, operator_sse.status_code) == (200, 200)
        await asyncio.sleep(0.2)  # the streams' first bytes: their generators have started
        during = await scrape(http)
    await asyncio.sleep(0.2)
    after = await scrape(http)
    for transport in ("widget_websocket", "widget_sse", "operator_sse"):
        counts = [value(samples, gauge, transport=transport) for samples in (before, during, after)]
        assert counts[1] - counts[0] == 1, (transport, counts)
        assert counts[2] == counts[0], (transport, counts)


async def test_a_worker_process_s_metrics_reach_the_api_s_scrape(
    api: RunningApi, http: httpx.AsyncClient, settings: Settings, clean_db: AsyncEngine
) -> None:
    await make_team(clean_db, DEFAULT_TEAM_NAME, is_default=True)
    idle = await scrape(http)
    async with worker_processes(settings, 1):
        # Measured once the worker is up: starting, it drops the files of earlier tests' (dead) workers.
        redis = api.app.state.redis
        while not await redis.exists(f"{settings.queue_name}:health-check"):  # noqa: ASYNC110  (a key, not an event)
            await asyncio.sleep(0.05)
        before = await scrape(http)
        session_id = await open_session(api)
        await visitor_says(api, session_id, "Routed elsewhere")
        await wait_until_idle(api.app.state.redis, settings.queue_name)
        during = await scrape(http)
    routed = "switchboard_routing_decision_seconds_count"
    # This process routed nothing: the count comes from the worker process's file.
    assert value(during, routed, outcome="queued") - value(before, routed, outcome="queued") == 1
    assert value(during, "switchboard_db_pool_connections", state="size") > value(
        idle, "switchboard_db_pool_connections", state="size"
    )


async def test_metrics_are_refused_outside_the_allowed_networks(settings: Settings) -> None:
    only_elsewhere = settings.model_copy(update={"metrics_allowed_cidrs": [ip_network("10.0.0.0/8")]})
    async with run_api(only_elsewhere) as api, api.client() as http:
        response = await http.get("/metrics")
    body: dict[str, Any] = response.json()
    assert (response.status_code, body["detail"]) == (403, "Metrics are not served to this network")
