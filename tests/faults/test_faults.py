"""Faults mid-traffic (visitors on the widget protocol, operators on the REST API, webhooks to a receiver): nothing
acknowledged lost, nothing twice, recovered within 15 s with no process restarted. bench/faults.py runs them longer
and docs/reliability.md has its figures."""

from __future__ import annotations

import os
from typing import Any

import pytest

from tests.support.faults import (
    SLOW_LOSSY,
    Deployment,
    Outcome,
    PrivatePostgres,
    PrivateRedis,
    cut_postgres_link,
    cut_redis_link,
    deployment,
    kill_a_worker,
    kill_an_api,
    restart_postgres,
    restart_redis_empty,
    run_fault,
)

RECOVERY_SECONDS = 15
# Short runs: 8 visitors sending 6 messages each, the fault 2 s in.
TRAFFIC = {"visitors": 8, "messages": 6, "pause": 0.4, "before": 2.0}

# Setup (four Python processes started) takes 8-13 s, up to 45 s on a loaded 2-core machine; the run 4-15 s.
pytestmark = pytest.mark.timeout(90)


def _recovered(outcome: Outcome) -> None:
    """Both recoveries measured, each within the limit (the checks of nothing lost or twice ran already)."""
    print(outcome.line())
    for figure in (outcome.message_after, outcome.routing_after):
        assert figure is not None and figure <= RECOVERY_SECONDS, outcome


async def test_a_worker_killed_mid_traffic(deployed: Deployment) -> None:
    outcome = await run_fault(deployed, "worker kill -9", kill_a_worker, **TRAFFIC)
    _recovered(outcome)


async def test_an_api_killed_mid_traffic(deployed: Deployment) -> None:
    outcome = await run_fault(deployed, "api kill -9", kill_an_api, **TRAFFIC)
    _recovered(outcome)


async def test_postgres_restarted_mid_traffic(deployed: Deployment) -> None:
    outcome = await run_fault(deployed, "PostgreSQL restart", restart_postgres, **TRAFFIC)
    _recovered(outcome)


async def test_redis_restarted_empty_mid_traffic(deployed: Deployment) -> None:
    outcome = await run_fault(deployed, "Redis restart, data lost", restart_redis_empty, **TRAFFIC)
    _recovered(outcome)


# Over slow, lossy links (tests/support/faultproxy.py), each partition cut mid-traffic and healed. Both fail today
# (docs/reliability.md, "Over slow, lossy links: found, not fixed yet"), so they run only when asked for.
@pytest.mark.skipif(
    not os.environ.get("LINK_FAULTS"),
    reason="known failures (docs/reliability.md, slow lossy links); run with LINK_FAULTS=1",
)
@pytest.mark.parametrize(
    ("name", "cut"),
    [
        ("Redis link cut, links slow and lossy", cut_redis_link),
        ("PostgreSQL link cut, links slow and lossy", cut_postgres_link),
    ],
)
async def test_a_link_cut_over_slow_lossy_links(
    cluster: PrivatePostgres, redis_server: PrivateRedis, name: str, cut: Any
) -> None:
    async with deployment(cluster, redis_server, links=SLOW_LOSSY) as deployed:
        outcome = await run_fault(deployed, name, cut, **TRAFFIC)
        _recovered(outcome)
        postgres, redis = deployed.links
        # The links carried the traffic, and the cut refused connections.
        assert postgres.stats.accepted > 0 and redis.stats.accepted > 0
        assert (redis if "Redis" in name else postgres).stats.refused > 0
