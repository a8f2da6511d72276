"""The conversation page in headless Chromium: transfer between operators, the "why" panel and the AI controls."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from playwright.async_api import Browser, BrowserContext, Page, expect
from sqlalchemy.ext.asyncio import AsyncEngine

from service.settings import Settings
from tests.browser.test_dashboard import PHONE, fetch_as_page, lena_leads_the_default_team, sign_in, visitor_writes
from tests.conftest import run_api
from tests.factories import add_member, make_operator
from tests.support.oidc import set_user
from tests.support.routing import make_conversation, rows, set_values


@asynccontextmanager
async def phone(browser: Browser) -> AsyncIterator[BrowserContext]:
    """A phone-sized browser context, closed before the api stops (its event stream would hold the server open)."""
    context = await browser.new_context(viewport=PHONE)
    try:
        yield context
    finally:
        await context.close()


async def signed_in(context: BrowserContext, url: str, sub: str) -> Page:
    """A page of ``context`` at ``url``, signed in as ``sub``, its event stream open."""
    page = await context.new_page()
    await sign_in(page, url, sub)
    await expect(page.locator("body")).to_have_attribute("data-live", "open")
    return page


async def operator_named(engine: AsyncEngine, name: str) -> uuid.UUID:
    [row] = await rows(engine, "SELECT id FROM operator WHERE display_name = :name", name=name)
    return row["id"]  # type: ignore[no-any-return]


async def test_a_transfer_moves_the_conversation_to_the_other_operators_inbox(
    settings: Settings, clean_db: AsyncEngine, oidc_issuer: str, browser: Browser
) -> None:
    settings, port, team_id = await lena_leads_the_default_team(settings, clean_db, oidc_issuer)
    await set_user(oidc_issuer, "olga", name="Olga", groups=["support"])
    async with run_api(settings, port=port) as api, phone(browser) as as_olga, phone(browser) as as_lena:
        olga_mine = await signed_in(as_olga, f"{api.url}/app", "olga")
        lena_mine = await signed_in(as_lena, f"{api.url}/app", "lena")
        lena = await operator_named(clean_db, "Lena")
        conversation_id, _ = await make_conversation(clean_db, team_id, status="queued")

        olga = await as_olga.new_page()
        await olga.goto(f"{api.url}/app/conversations/{conversation_id}")
        await expect(olga.locator("body")).to_have_attribute("data-live", "open")
        await olga.click(".conversation-head button:has-text('Claim')")
        await expect(olga.locator(".conversation-head")).to_contain_text("with Olga")
        row = f"a[data-conversation='{conversation_id}']"
        await expect(olga_mine.locator(row)).to_have_count(1)
        await expect(lena_mine.locator(row)).to_have_count(0)

        await olga.click("summary:has-text('Why was this routed here?')")
        await expect(olga.locator(".decision").first).to_contain_text("claimed by Olga")
        await olga.click("summary:has-text('Transfer')")
        # Only leads may assign past capacity.
        await expect(olga.locator("input[name=overrideCapacity]")).to_have_count(0)
        await olga.select_option("#transfer-target", f"operator:{lena}")
        await olga.fill("#transfer-note", "She asked for a lead.")
        await olga.click("form[data-transfer] button[type=submit]")

        await expect(olga.locator(".conversation-head")).to_contain_text("with Lena")
        await expect(olga.locator(".note p")).to_have_text(["She asked for a lead."])
        # The "why" panel follows live: the newest decision is the transfer, with its note.
        newest = olga.locator(".decision").first
        await expect(newest).to_contain_text("transferred by Olga")
        await expect(newest).to_contain_text("assigned to Lena")
        await expect(newest).to_contain_text("Note: She asked for a lead.")
        # Both inboxes were open the whole time: Lena's "Mine" gains it, Olga's loses it, without a reload.
        await expect(lena_mine.locator(row)).to_have_count(1)
        await expect(olga_mine.locator(row)).to_have_count(0)
        assert await rows(clean_db, "SELECT assignee_id FROM conversation") == [{"assignee_id": lena}]

        lena_page = await as_lena.new_page()
        await lena_page.goto(f"{api.url}/app/conversations/{conversation_id}")
        await lena_page.click("summary:has-text('Transfer')")
        await expect(lena_page.locator("input[name=overrideCapacity]")).to_have_count(1)


async def test_the_why_panel_names_the_chosen_operator_and_ai_pause_resume(
    settings: Settings, clean_db: AsyncEngine, oidc_issuer: str, browser: Browser
) -> None:
    settings, port, team_id = await lena_leads_the_default_team(settings, clean_db, oidc_issuer)
    await set_values(clean_db, "team", {"id": team_id}, routing_policy="least_busy")
    await add_member(clean_db, team_id, await make_operator(clean_db, "Olga"), "operator")  # offline
    async with run_api(settings, port=port) as api, phone(browser) as context:
        page = await signed_in(context, f"{api.url}/app", "lena")
        assert await fetch_as_page(page, "PUT", "/api/v1/me/presence", {"status": "online"}) == 200
        session_id = await visitor_writes(api, settings, "v-why", "Refund?")
        # Enabled only now: an armed takeover timer would keep the burst worker waiting for its due time.
        await set_values(clean_db, "team", {"id": team_id}, ai_enabled=True)

        await page.goto(f"{api.url}/app/conversations/{session_id}")
        await expect(page.locator(".conversation-head")).to_contain_text("with Lena")
        why = page.locator("details.why")
        await expect(why.locator(".decision")).to_be_hidden()
        await why.locator("summary").click()
        decision = why.locator(".decision")
        await expect(decision).to_have_count(1)
        await expect(decision.locator(".trigger")).to_have_text("the visitor wrote")
        await expect(decision.locator(".outcome")).to_have_text("assigned to Lena")
        await expect(decision.locator(".candidates li")).to_have_text(
            ["Lena: eligible, rank 1, 0/5 open — chosen", "Olga: offline"]
        )

        ai = page.locator(".ai")
        await expect(ai).to_have_attribute("data-ai-state", "standby")
        await ai.locator("button:has-text('Pause AI')").click()
        await expect(ai).to_have_attribute("data-ai-state", "paused")
        assert await rows(clean_db, "SELECT ai_active, ai_paused FROM conversation") == [
            {"ai_active": False, "ai_paused": True}
        ]
        await ai.locator("button:has-text('Resume AI')").click()
        await expect(ai).to_have_attribute("data-ai-state", "standby")
        assert await rows(clean_db, "SELECT ai_active, ai_paused FROM conversation") == [
            {"ai_active": False, "ai_paused": False}
        ]
        # The open panel stayed open through the live refreshes.
        await expect(why).to_have_attribute("open", "")
