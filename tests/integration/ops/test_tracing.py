"""OpenTelemetry traces reach an OTLP/HTTP collector (a loopback stand-in) from the api and from worker processes:
a server span per request named by its route, a consumer span per job, the SQL statements beneath each."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from redis.asyncio import Redis
from sqlalchemy.ext.asyncio import AsyncEngine

from service.routing.placement import DEFAULT_TEAM_NAME
from service.settings import Settings
from tests.conftest import run_api
from tests.factories import bearer, make_operator, make_team, personal_token
from tests.integration.ai.test_ai_takeover import open_session, visitor_says
from tests.standins.otlp import OtlpStandIn
from tests.support.routing_worker import wait_until_idle, worker_processes


@pytest.fixture
def collector() -> Iterator[OtlpStandIn]:
    with OtlpStandIn() as standin:
        yield standin


@pytest.fixture
def traced(settings: Settings, collector: OtlpStandIn) -> Settings:
    return settings.model_copy(
        update={"otel_exporter_otlp_endpoint": collector.base_url, "otel_service_name": "switchboard-test"}
    )


async def test_each_request_is_a_server_span_with_its_statements_beneath(
    traced: Settings, collector: OtlpStandIn, clean_db: AsyncEngine
) -> None:
    operator_id = await make_operator(clean_db, "Ada")
    token = await personal_token(clean_db, operator_id)
    async with run_api(traced) as api, api.client() as http:
        assert (await http.get("/api/v1/me", headers=bearer(token))).status_code == 200
        assert (await http.get("/api/v1/me")).status_code == 401
        assert (await http.get("/healthz")).status_code == 200
    # Leaving the block stopped the api, which sent what its provider held.

    signed_in, refused = collector.spans_named("GET /api/v1/me")
    assert (signed_in.kind, signed_in.attributes["http.route"], signed_in.attributes["http.status_code"]) == (
        "SPAN_KIND_SERVER",
        "GET /api/v1/me",
        200,
    )
    assert refused.attributes["http.status_code"] == 401
    assert signed_in.resource["service.name"] == "switchboard-test"
    assert signed_in.resource["switchboard.role"] == "api"
    statements = [s for s in collector.children_of(signed_in) if s.kind == "SPAN_KIND_CLIENT"]
    assert statements and {s.attributes["db.system"] for s in statements} == {"postgresql"}
    assert all(s.attributes["db.statement"].startswith(s.name) for s in statements)
    assert collector.spans_named("GET /healthz") == []
    # Only the request's own span: not one per ASGI message sent.
    assert [s.name for s in collector.children_of(signed_in) if s.kind != "SPAN_KIND_CLIENT"] == []
    assert [call.status for call in collector.calls] == [200] * len(collector.calls)


async def test_each_job_of_a_worker_process_is_a_consumer_span(
    traced: Settings, collector: OtlpStandIn, clean_db: AsyncEngine
) -> None:
    await make_team(clean_db, DEFAULT_TEAM_NAME, is_default=True)
    async with run_api(traced) as api, worker_processes(traced, 1):
        session_id = await open_session(api)
        await visitor_says(api, session_id, "Anyone there?")
        redis = Redis.from_url(traced.redis_url)
        await wait_until_idle(redis, traced.queue_name)
        await redis.aclose()
    # The worker stopped on SIGTERM, and sent its spans as it did.

    [routed] = [s for s in collector.spans_named("job route_conversation") if s.attributes.get("switchboard.trigger")]
    assert routed.kind == "SPAN_KIND_CONSUMER"
    assert routed.attributes["switchboard.conversation_id"] == session_id
    assert routed.attributes["messaging.system"] == "arq"
    assert routed.status == "STATUS_CODE_OK"
    assert routed.resource["switchboard.role"] == "worker"
    assert any(s.attributes.get("db.system") == "postgresql" for s in collector.children_of(routed))
    # The visitor's message was a request to the api, traced there.
    assert collector.spans_named("POST /pocketping/message")
