"""The policy simulator page in headless Chromium: a lead replays a month with more capacity and sees both."""

from __future__ import annotations

from datetime import timedelta

from playwright.async_api import Browser, expect
from sqlalchemy.ext.asyncio import AsyncEngine

from service.settings import Settings
from tests.browser.test_dashboard import lena_leads_the_default_team
from tests.browser.test_pages import signed_in_page
from tests.conftest import run_api
from tests.support.history_month import END, START, build_month


async def test_a_lead_simulates_more_capacity_and_sees_real_and_simulated_bars(
    settings: Settings, clean_db: AsyncEngine, oidc_issuer: str, browser: Browser
) -> None:
    settings, port, team_id = await lena_leads_the_default_team(settings, clean_db, oidc_issuer)
    month = await build_month(clean_db, team_id=team_id)
    async with (
        run_api(settings, port=port) as api,
        signed_in_page(browser, f"{api.url}/app/teams/{team_id}/simulator", "lena") as page,
    ):
        await expect(page.locator("#simulation")).to_be_visible()
        await page.fill("input[name=from]", START.date().isoformat())
        # Whole days, "to" included: the month's last day.
        await page.fill("input[name=to]", (END - timedelta(days=1)).date().isoformat())
        await page.fill("input[name=defaultCapacity]", "4")
        await page.fill(f"input[name='capacity-{month.operators['Ben']}']", "5")
        await page.fill("input[name=firstResponseTargetSeconds]", "120")
        await page.click("#simulation button[type=submit]")

        result = page.locator("#simulation-result")
        await expect(result).to_have_attribute("data-arrivals", str(month.conversations))
        # The form keeps the draft, and the page draws a pair of bars per figure.
        await expect(page.locator("input[name=defaultCapacity]")).to_have_value("4")
        p90 = page.locator('tr[data-metric="Wait p90"]')
        real = float(await p90.get_attribute("data-real") or "nan")
        simulated = float(await p90.get_attribute("data-simulated") or "nan")
        assert simulated < real
        # Drawn to scale: the real (larger) bar fills its row, the simulated one is shorter in the page too.
        real_box = await p90.locator("rect.real").bounding_box()
        simulated_box = await p90.locator("rect.simulated").bounding_box()
        assert real_box is not None and simulated_box is not None
        assert simulated_box["width"] < real_box["width"]
        assert real_box["width"] > 50
        # The five operators of the month and Lena, who leads the team (made a member at sign-in).
        await expect(page.locator("tr[data-operator]")).to_have_count(len(month.operators) + 1)
        await expect(page.locator(f'tr[data-operator="{month.operators["Ben"]}"] td').first).to_have_text("Ben")

        # A bad value is shown on the page, naming the field.
        await page.fill("input[name=defaultCapacity]", "")
        await page.fill("input[name=firstResponseTargetSeconds]", "")
        await page.fill("input[name=from]", "2026-10-01")
        await page.click("#simulation button[type=submit]")
        await expect(page.locator(".problem")).to_have_attribute("data-field", "to")
        await expect(page.locator(".problem")).to_contain_text("a simulation may span at most 31 days")
