"""Fuzzing, bounded for the suite: every operation (widget gateway included) under valid and invalid generated
input as an admin, an operator and anonymously; stateful chains; hostile JSON bodies. No answer of 500 or more,
no answer outside the OpenAPI document. The long run is ``bench/fuzz.py``."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from service.settings import Settings
from tests.conftest import RunningApi, run_api
from tests.support import fuzz

# Bounded for CI (about a minute for the file); bench/fuzz.py runs the same with many more.
EXAMPLES = {"anonymous": 1, "operator": 1, "admin": 2}
HOSTILE_BODIES = 80
STATEFUL_SCENARIOS, STATEFUL_STEPS = 5, 8


@pytest.fixture
async def fuzzed(settings: Settings, oidc_issuer: str) -> AsyncIterator[RunningApi]:
    async with run_api(fuzz.roomy(settings, oidc_issuer)) as api:
        yield api


async def test_every_operation_under_valid_and_invalid_input_as_every_principal(
    fuzzed: RunningApi, clean_db: AsyncEngine
) -> None:
    principals, known = await fuzz.world(fuzzed.url, clean_db)
    async with fuzzed.client() as http:
        every = set(fuzz.document_operations((await http.get("/schema/openapi.json")).json()))
    assert {"POST /pocketping/connect", "GET /pocketping/stream", "GET /api/v1/conversations"} <= every
    tallies = await asyncio.to_thread(fuzz.campaign, fuzzed.url, principals, known, EXAMPLES)
    for who, tally in tallies.items():
        assert (who, tally.server_errors, tally.violations) == (who, [], [])
        assert (who, every - tally.operations) == (who, set())
    assert sum(t.requests for t in tallies.values()) > 6 * len(every)


async def test_stateful_chains_of_operations(fuzzed: RunningApi, clean_db: AsyncEngine) -> None:
    principals, _ = await fuzz.world(fuzzed.url, clean_db)
    tally = fuzz.Tally()
    links = await asyncio.to_thread(
        fuzz.run_stateful, fuzzed.url, principals["admin"], tally, scenarios=STATEFUL_SCENARIOS, steps=STATEFUL_STEPS
    )
    assert (tally.server_errors, tally.violations) == ([], [])
    assert links > 20
    assert tally.requests >= STATEFUL_SCENARIOS


async def test_hostile_json_bodies_are_problems_never_server_errors(fuzzed: RunningApi, clean_db: AsyncEngine) -> None:
    principals, known = await fuzz.world(fuzzed.url, clean_db)
    async with fuzzed.client() as http:
        document = (await http.get("/schema/openapi.json")).json()
    sent, bad = await asyncio.to_thread(
        fuzz.send_hostile_bodies, fuzzed.url, principals["admin"], known, document, HOSTILE_BODIES
    )
    assert bad == []
    assert sent == HOSTILE_BODIES
