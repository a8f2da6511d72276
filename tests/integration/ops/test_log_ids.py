"""Log lines carry the request id (echoed in X-Request-ID) and the operator; a worker job's lines its conversation."""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from typing import Any

import pytest
import structlog
from arq import create_pool
from litestar import get
from litestar.di import NamedDependency
from sqlalchemy.ext.asyncio import AsyncEngine

from service import outbox
from service.auth.principal import Principal
from service.conversations.delivery import WIDGET_MESSAGE
from service.gateway.hub import SwitchboardPocketPing
from service.logging import configure_logging
from service.resources import redis_settings
from service.settings import Settings
from tests.conftest import RunningApi, run_api
from tests.factories import bearer, make_operator, personal_token
from tests.integration.workers.test_worker import run_burst, start_conversation
from workers import jobs

TEST_LOGGER = "tests.log_ids"


@get("/test/log-line", sync_to_thread=False)
def log_line(
    principal: NamedDependency[Principal], pocketping: NamedDependency[SwitchboardPocketPing]
) -> dict[str, str]:
    """A handler that logs once, after the caller is authenticated (two dependencies: Litestar resolves them in tasks
    of their own, so what ``provide_principal`` binds must still reach this line)."""
    structlog.get_logger(TEST_LOGGER).warning("inside the request")
    return {}


@contextmanager
def json_lines(logger: str) -> Iterator[list[dict[str, Any]]]:
    """The lines ``logger`` logs, rendered by the JSON formatter ``configure_logging`` installed."""
    formatter = logging.getLogger().handlers[0].formatter
    lines: list[dict[str, Any]] = []

    class Collect(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            lines.append(json.loads(self.format(record)))

    handler = Collect()
    handler.setFormatter(formatter)
    logging.getLogger(logger).addHandler(handler)
    try:
        yield lines
    finally:
        logging.getLogger(logger).removeHandler(handler)


@pytest.fixture
def json_settings(settings: Settings) -> Settings:
    return settings.model_copy(update={"log_json": True, "log_level": "INFO"})


@pytest.fixture
async def logging_api(json_settings: Settings) -> AsyncIterator[RunningApi]:
    async with run_api(json_settings, extra_handlers=(log_line,)) as running:
        yield running


async def test_a_request_id_sent_is_echoed_and_logged_with_the_operator(
    logging_api: RunningApi, clean_db: AsyncEngine
) -> None:
    operator = await make_operator(clean_db, "Ada")
    token = bearer(await personal_token(clean_db, operator))
    with json_lines(TEST_LOGGER) as lines:
        async with logging_api.client() as http:
            response = await http.get("/test/log-line", headers={**token, "X-Request-ID": "req-42.a_b:c"})
    assert response.status_code == 200
    assert response.headers["X-Request-ID"] == "req-42.a_b:c"
    assert [(line["event"], line["request_id"], line["operator_id"]) for line in lines] == [
        ("inside the request", "req-42.a_b:c", str(operator))
    ]


@pytest.mark.parametrize("sent", ["two words", "x" * 101, 'quote"d', ""])
async def test_a_bad_or_missing_request_id_is_replaced(
    logging_api: RunningApi, clean_db: AsyncEngine, sent: str
) -> None:
    operator = await make_operator(clean_db, "Ada")
    token = bearer(await personal_token(clean_db, operator))
    with json_lines(TEST_LOGGER) as lines:
        async with logging_api.client() as http:
            response = await http.get("/test/log-line", headers={**token, "X-Request-ID": sent})
            second = await http.get("/test/log-line", headers=token)
    assert response.status_code == 200
    replaced = response.headers["X-Request-ID"]
    assert uuid.UUID(hex=replaced).hex == replaced
    assert replaced != second.headers["X-Request-ID"]
    assert [line["request_id"] for line in lines] == [replaced, second.headers["X-Request-ID"]]


async def test_lines_outside_a_request_carry_no_request_fields(logging_api: RunningApi) -> None:
    async with logging_api.client() as http:
        unauthenticated = await http.get("/test/log-line", headers={"X-Request-ID": "req-401"})
    assert unauthenticated.status_code == 401
    assert unauthenticated.headers["X-Request-ID"] == "req-401"
    with json_lines(TEST_LOGGER) as lines:
        structlog.get_logger(TEST_LOGGER).warning("between requests")
    assert [sorted(set(line) & {"request_id", "operator_id"}) for line in lines] == [[]]


async def test_a_routing_job_logs_its_name_and_conversation(
    logging_api: RunningApi, json_settings: Settings, clean_db: AsyncEngine
) -> None:
    async with logging_api.client() as http:
        session_id = await start_conversation(http, "v-logs")
    configure_logging(json_settings)
    with json_lines("workers.jobs") as lines:
        await run_burst(json_settings)
    routed = [line for line in lines if line["event"] == "routed"]
    assert [(line["job"], line["conversation_id"], line["outcome"]) for line in routed] == [
        ("route_conversation", session_id, "queued")
    ]


async def test_an_outbox_delivery_logs_the_conversation_its_row_names(
    json_settings: Settings, clean_db: AsyncEngine
) -> None:
    async with clean_db.begin() as conn:
        outbox_id = await outbox.add(conn, WIDGET_MESSAGE, {"conversationId": "c-logs", "messageId": "m-1"})
    arq = await create_pool(redis_settings(json_settings), default_queue_name=json_settings.queue_name)
    configure_logging(json_settings)
    # No PocketPing hub in this context: the delivery fails, and says so in a line of its job.
    ctx = {"engine": clean_db, "redis": arq, "settings": json_settings}
    with json_lines("service.outbox") as lines:
        assert await jobs.deliver_outbox(ctx, outbox_id=outbox_id) == "failed"
    await arq.aclose()
    assert [(line["event"], line["job"], line["conversation_id"]) for line in lines] == [
        ("outbox delivery failed", "deliver_outbox", "c-logs")
    ]
