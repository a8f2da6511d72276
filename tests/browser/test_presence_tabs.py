"""Presence per dashboard tab in headless Chromium: real OIDC provider, PostgreSQL, Redis and burst workers."""

from __future__ import annotations

import asyncio
import uuid

from playwright.async_api import Browser, Page, expect
from sqlalchemy.ext.asyncio import AsyncEngine

from service.settings import Settings
from tests.browser.test_dashboard import lena_leads_the_default_team, sign_in, visitor_writes
from tests.conftest import run_api
from tests.integration.workers.test_worker import run_burst
from tests.support.routing import rows, set_values


async def lena(engine: AsyncEngine) -> tuple[uuid.UUID, str, int]:
    """Lena's id, status and live client count."""
    [row] = await rows(
        engine,
        "SELECT o.id, o.status, (SELECT count(*) FROM presence_client c WHERE c.operator_id = o.id) AS clients "
        "FROM operator o WHERE o.subject = 'lena'",
    )
    return row["id"], row["status"], row["clients"]


async def clients_become(engine: AsyncEngine, count: int) -> None:
    """Until the api has noticed the tabs that closed (it ends their clients after the disconnect)."""
    for _ in range(200):
        if (await lena(engine))[2] == count:
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"Lena's clients did not become {count}: {await lena(engine)}")


async def live(page: Page) -> None:
    await expect(page.locator("body")).to_have_attribute("data-live", "open")


async def test_two_tabs_one_closed_stays_online_the_last_closed_goes_offline_and_the_policy_applies(
    settings: Settings, clean_db: AsyncEngine, oidc_issuer: str, browser: Browser
) -> None:
    settings, port, team_id = await lena_leads_the_default_team(settings, clean_db, oidc_issuer)
    settings = settings.model_copy(update={"presence_offline_grace_seconds": 0.0})
    await set_values(
        clean_db,
        "team",
        {"id": team_id},
        routing_policy="round_robin",
        offline_policy="requeue",
        offline_grace_seconds=0,
    )
    async with run_api(settings, port=port) as api:
        context = await browser.new_context()
        first = await context.new_page()
        await sign_in(first, f"{api.url}/app", "lena")
        await live(first)
        second = await context.new_page()
        await second.goto(f"{api.url}/app")
        await live(second)
        await clients_become(clean_db, 2)
        lena_id, status, _ = await lena(clean_db)
        assert status == "online"
        await visitor_writes(api, settings, "visitor-1", "hello?")
        [assigned] = await rows(clean_db, "SELECT assignee_id, status FROM conversation")
        assert assigned == {"assignee_id": lena_id, "status": "assigned"}

        await second.close()
        await clients_become(clean_db, 1)
        assert (await run_burst(settings)).jobs_failed == 0
        assert (await lena(clean_db))[1] == "online"

        await first.close()
        await clients_become(clean_db, 0)
        assert (await run_burst(settings)).jobs_failed == 0  # the lapse, then the team's offline policy
        await context.close()

    assert (await lena(clean_db))[1] == "offline"
    [ended] = await rows(clean_db, "SELECT end_reason FROM assignment")
    assert ended == {"end_reason": "operator_offline"}
    [conversation] = await rows(clean_db, "SELECT assignee_id, status FROM conversation")
    assert conversation == {"assignee_id": None, "status": "queued"}


async def test_signing_out_goes_offline(
    settings: Settings, clean_db: AsyncEngine, oidc_issuer: str, browser: Browser
) -> None:
    settings, port, _ = await lena_leads_the_default_team(settings, clean_db, oidc_issuer)
    settings = settings.model_copy(update={"presence_offline_grace_seconds": 0.0})
    async with run_api(settings, port=port) as api:
        context = await browser.new_context()
        page = await context.new_page()
        await sign_in(page, f"{api.url}/app", "lena")
        await live(page)
        await clients_become(clean_db, 1)
        assert (await lena(clean_db))[1] == "online"

        await page.click("form.sign-out button")
        await clients_become(clean_db, 0)
        assert (await run_burst(settings)).jobs_failed == 0
        await context.close()

    assert (await lena(clean_db))[1] == "offline"
