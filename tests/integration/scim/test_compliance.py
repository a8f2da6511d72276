"""The outside SCIM 2.0 compliance checker (scim2-tester) against a live ``/scim/v2``."""

from __future__ import annotations

import asyncio

import httpx2
from scim2_client.engines.httpx2 import SyncSCIMClient
from scim2_tester import CheckResult, Status, check_server
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.conftest import RunningApi
from tests.factories import bearer, make_operator, personal_token


def _expected_gap(result: CheckResult) -> bool:
    """The checks Switchboard does not pass by design (docs/scim.md, "Limits"), each for its stated reason."""
    if result.title == "search_with_attributes" and result.status == Status.SKIPPED:
        # POST /.search across Users and Groups at once answers 501, which RFC 7644 section 3.4.3 allows.
        return True
    # A Group member's ``display`` is the operator's own display name, not an echo of what the client sent
    # (RFC 7643 section 2.4: display is for reading); the checker sends random names and expects them back.
    return (
        result.resource_type == "Group"
        and result.title in ("check_add_attribute", "check_replace_attribute")
        and "for 'members'" in (result.reason or "")
    )


async def test_scim2_tester_passes_every_check(api: RunningApi, clean_db: AsyncEngine) -> None:
    admin = await make_operator(clean_db, "Ada", is_admin=True)
    token = await personal_token(clean_db, admin, ("scim",))

    def run() -> list[CheckResult]:
        with httpx2.Client(base_url=f"{api.url}/scim/v2/", headers=bearer(token), timeout=10) as http:
            return check_server(SyncSCIMClient(http))

    results = await asyncio.to_thread(run)

    failures = [
        f"{r.title} [{r.resource_type}]: {r.status.name} {r.reason}"
        for r in results
        if r.status != Status.SUCCESS and not _expected_gap(r)
    ]
    assert failures == [], "\n".join(failures)
    assert sum(r.status == Status.SUCCESS for r in results) > 50
    assert sum(_expected_gap(r) for r in results) == 4
