"""The OpenAPI document is good enough to generate a client from, and the API keeps to it under generated input."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import hypothesis
import schemathesis
from hypothesis import HealthCheck, Phase
from litestar import Litestar, get
from litestar.params import FromPath
from litestar.response import ServerSentEvent
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import response_schema_conformance
from sqlalchemy.ext.asyncio import AsyncEngine

from service.conversations.schemas import EXAMPLE_CONVERSATION_ID
from service.openapi import finish_openapi
from tests.conftest import RunningApi
from tests.factories import add_member, bearer, make_operator, make_team, personal_token
from tests.support.routing import make_conversation

METHODS = ("get", "put", "post", "delete", "patch")
# Bounded for CI: a few generated cases per operation, the same ones every run.
EXAMPLES_PER_OPERATION = 12


async def test_every_operator_operation_is_documented_for_client_generation(http: httpx.AsyncClient) -> None:
    document = (await http.get("/schema/openapi.json")).json()
    assert document["openapi"].startswith("3.1")
    assert set(document["components"]["securitySchemes"]) == {"bearer", "nativeApp", "session"}
    # A generated client learns how a native app gets its token.
    assert document["components"]["securitySchemes"]["nativeApp"]["flows"] == {
        "authorizationCode": {
            "authorizationUrl": "/oauth/authorize",
            "tokenUrl": "/oauth/token",
            "refreshUrl": "/oauth/token",
            "scopes": {
                "read": "Read what the operator may see (safe methods)",
                "write": "Change things (every other method)",
                "admin": "Administration routes, for administrators",
            },
        }
    }
    operation_ids: list[str] = []
    problems = []
    for path, item in document["paths"].items():
        for method in METHODS:
            operation = item.get(method)
            if operation is None:
                continue
            operation_ids.append(operation.get("operationId", ""))
            if not path.startswith("/api/v1/"):
                continue
            where = f"{method.upper()} {path}"
            ok = {status: r for status, r in operation["responses"].items() if status.startswith("2")}
            if not operation.get("operationId"):
                problems.append(f"{where}: no operationId")
            if not operation.get("summary"):
                problems.append(f"{where}: no summary")
            if not operation.get("tags"):
                problems.append(f"{where}: no tags")
            scope = "read" if method == "get" else "write"
            if operation.get("security") != [{"bearer": []}, {"nativeApp": [scope]}, {"session": []}]:
                problems.append(f"{where}: security {operation.get('security')}")
            if not any("schema" in media for r in ok.values() for media in r.get("content", {}).values()) and (
                "204" not in ok
            ):
                problems.append(f"{where}: no 2xx response schema")
            if operation["responses"].get("401", {}).get("content", {}).get("application/problem+json") is None:
                problems.append(f"{where}: 401 problem response not documented")
    assert problems == []
    assert len(operation_ids) == len(set(operation_ids)), "operationIds must be unique"


def _streams(raw: dict[str, Any]) -> bool:
    """Server-Sent Events never end, so a generated request would only wait for its timeout."""
    ok = [r for status, r in raw.get("responses", {}).items() if status.startswith("2")]
    return any(media.startswith("text/event-stream") for r in ok for media in r.get("content", {}))


def fuzz(base_url: str, headers: dict[str, str], known: dict[str, str]) -> tuple[int, list[str]]:
    """Generated requests for every /api/v1 operation; returns (cases run, failures).

    Every other case has its path parameters replaced by ``known`` ids, so real objects are reached
    and not only 404s.
    """
    schema = schemathesis.openapi.from_url(f"{base_url}/schema/openapi.json")
    failures: list[str] = []
    ran = 0
    for result in schema.get_all_operations():
        operation = result.ok()
        if not operation.path.startswith("/api/v1/") or _streams(operation.definition.raw):
            continue

        @hypothesis.given(case=operation.as_strategy())
        @hypothesis.settings(
            max_examples=EXAMPLES_PER_OPERATION,
            derandomize=True,
            deadline=None,
            database=None,
            phases=[Phase.explicit, Phase.generate],
            suppress_health_check=list(HealthCheck),
        )
        def run(case: Any) -> None:
            nonlocal ran
            ran += 1
            if ran % 2 and case.path_parameters:
                case.path_parameters = {k: known.get(k, v) for k, v in case.path_parameters.items()}
            response = case.call(base_url=base_url, headers=headers, timeout=20)
            case.validate_response(response, checks=[not_a_server_error, response_schema_conformance])

        try:
            run()
        except Exception as exc:  # every failing operation is reported, not just the first
            failures.append(f"{operation.method.upper()} {operation.path}: {exc}")
    return ran, failures


async def test_generated_requests_get_no_server_error_and_schema_conforming_answers(
    api: RunningApi, clean_db: AsyncEngine
) -> None:
    team = await make_team(clean_db, "Support", is_default=True, welcome_message="Hello")
    admin = await make_operator(clean_db, "Root", is_admin=True, status="online")
    await add_member(clean_db, team, admin, "lead")
    # The documented example ids exist, so the explicit phase reaches real objects too.
    await make_conversation(clean_db, team, id=EXAMPLE_CONVERSATION_ID, status="queued")
    headers = bearer(await personal_token(clean_db, admin))
    known = {"conversation_id": EXAMPLE_CONVERSATION_ID, "team_id": str(team), "operator_id": str(admin)}
    ran, failures = await asyncio.to_thread(fuzz, api.url, headers, known)
    assert failures == []
    assert ran > 100


def test_event_streams_are_documented_as_text_event_stream() -> None:
    @get("/api/v1/things/{thing_id:str}/events", operation_id="streamThings", summary="Stream")
    async def stream(thing_id: FromPath[str]) -> ServerSentEvent:
        return ServerSentEvent(iter(["x"]))

    app = Litestar([stream])
    finish_openapi(app)
    operation = app.openapi_schema.to_schema()["paths"]["/api/v1/things/{thing_id}/events"]["get"]
    assert operation["responses"]["200"]["content"] == {
        "text/event-stream": {"schema": {"type": "string", "description": "Server-Sent Events (id, event, data lines)"}}
    }
    assert operation["security"] == [{"bearer": []}, {"nativeApp": ["read"]}, {"session": []}]
