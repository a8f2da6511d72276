"""Canned responses, profile and analytics pages in headless Chromium, against the running service."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import sqlalchemy as sa
from playwright.async_api import Browser, Dialog, Page, expect
from pydantic import AnyHttpUrl
from sqlalchemy.ext.asyncio import AsyncEngine

from service.auth.sessions import SESSION_COOKIE
from service.db.models import Team
from service.dev import free_port
from service.settings import Settings
from tests.browser.test_dashboard import PHONE, lena_leads_the_default_team, sign_in, visitor_writes
from tests.conftest import run_api
from tests.factories import bearer
from tests.integration.analytics.test_analytics import build
from tests.standins import TelegramStandIn
from tests.support.bridges import bridge_settings, telegram_message, telegram_update
from tests.support.oidc import oidc_settings, set_user
from tests.support.routing import rows


async def accept(dialog: Dialog) -> None:
    await dialog.accept()


@contextlib.asynccontextmanager
async def signed_in_page(browser: Browser, url: str, sub: str) -> AsyncIterator[Page]:
    """A phone-width page at ``url``, signed in as ``sub``, accepting confirmations; closed before the api stops."""
    context = await browser.new_context(viewport=PHONE)
    try:
        page = await context.new_page()
        page.on("dialog", accept)
        await sign_in(page, url, sub)
        yield page
    finally:
        await context.close()


async def test_a_canned_response_made_on_its_page_is_offered_by_the_picker(
    settings: Settings, clean_db: AsyncEngine, oidc_issuer: str, browser: Browser
) -> None:
    settings, port, _ = await lena_leads_the_default_team(settings, clean_db, oidc_issuer)
    async with run_api(settings, port=port) as api, signed_in_page(browser, f"{api.url}/app/canned", "lena") as page:
        await expect(page.locator("#canned-list")).to_contain_text("No canned responses yet.")

        # The preview follows the text as it is typed, through the API; a bad placeholder says why.
        await page.fill("#canned-body", "Hello {{visitor.age}}")
        await expect(page.locator("#canned-preview")).to_have_text("unknown variable 'visitor.age' at character 6")
        await page.select_option("#canned-scope", label="Team: Support")
        await page.fill("#canned-shortcut", "thanks")
        await page.fill("#canned-title", "Thanks")
        await page.fill("#canned-body", 'Thanks {{visitor.name || "for writing"}}, {{operator.firstName}} here.')
        await expect(page.locator("#canned-preview")).to_have_text("Thanks for writing, Lena here.")
        await page.click("#canned-save")
        item = page.locator(".canned-item")
        await expect(item.locator(".shortcut")).to_have_text(["/thanks"])
        await expect(item.locator(".status")).to_have_text(["Support"])
        await expect(page.locator("#canned-body")).to_have_value("")

        await item.locator(".canned-edit").click()
        await expect(page.locator("#canned-scope")).to_be_disabled()
        await page.fill("#canned-title", "Thank you")
        await page.click("#canned-save")
        await expect(item.locator(".canned-title")).to_have_text(["Thank you"])

        session_id = await visitor_writes(api, settings, "v-canned", "Hi")
        await page.goto(f"{api.url}/app/conversations/{session_id}")
        await page.locator("#reply-content").press_sequentially("/tha")
        await expect(page.locator("#canned-picker li")).to_have_text(["/thanks — Thank you"])
        await page.locator("#reply-content").press("Enter")
        await expect(page.locator("#reply-content")).to_have_value("Thanks for writing, Lena here.")

        await page.goto(f"{api.url}/app/canned")
        await page.locator(".canned-item button:has-text('Delete')").click()
        await expect(page.locator("#canned-list")).to_contain_text("No canned responses yet.")


async def test_profile_sets_presence_and_shows_a_new_token_once_then_revokes_it(
    settings: Settings, clean_db: AsyncEngine, oidc_issuer: str, browser: Browser
) -> None:
    settings, port, _ = await lena_leads_the_default_team(settings, clean_db, oidc_issuer)
    async with run_api(settings, port=port) as api, signed_in_page(browser, f"{api.url}/app/profile", "lena") as page:
        await expect(page.locator("#presence-status")).to_have_text("offline")
        await expect(page.locator("table.teams td")).to_have_text(["Support", "lead", "5", "—"])
        await page.click(".presence-actions button:has-text('Online')")
        await expect(page.locator("#presence-status")).to_have_text("online")

        await page.fill("#token-name", "script")
        await page.uncheck("input[name=scopes][value=write]")
        await page.select_option("#token-expiry", "30")
        await page.click("#token-form button[type=submit]")
        await expect(page.locator("#new-token")).to_be_visible()
        token = await page.locator("#new-token-value").text_content()
        assert token is not None and token.startswith("sbp_")
        row = page.locator("li.token")
        await expect(row.locator(".token-name")).to_have_text("script")
        await expect(row.locator(".token-prefix")).to_have_text(token[:12] + "…")
        await expect(row.locator(".token-scopes")).to_have_text("read")
        expires = (datetime.now(UTC) + timedelta(days=30)).date().isoformat()
        await expect(row.locator(".hint")).to_contain_text(f"expires {expires} · never used")

        async with api.client() as http:
            assert (await http.get("/api/v1/me", headers=bearer(token))).status_code == 200
            # Read scope only: a change is refused.
            refused = await http.put("/api/v1/me/presence", json={"status": "away"}, headers=bearer(token))
            assert refused.status_code == 403
            # Shown once: the page never holds the secret again.
            await page.reload()
            await expect(page.locator("#new-token")).to_be_hidden()
            assert token not in await page.content()

            await row.locator("button.revoke").click()
            await expect(page.locator("li.token")).to_have_count(0)
            await expect(page.locator("#profile")).to_contain_text("No tokens.")
            assert (await http.get("/api/v1/me", headers=bearer(token))).status_code == 401


async def test_profile_gets_a_link_code_then_lists_and_removes_the_account_it_linked(
    settings: Settings, clean_db: AsyncEngine, oidc_issuer: str, browser: Browser, telegram_api: TelegramStandIn
) -> None:
    settings, port, team_id = await lena_leads_the_default_team(settings, clean_db, oidc_issuer)
    settings = settings.model_copy(update={"telegram_api_base": telegram_api.base_url})
    async with clean_db.begin() as conn:
        await conn.execute(
            sa.update(Team.__table__)  # type: ignore[attr-defined]
            .where(Team.id == team_id)
            .values(bridge_settings=bridge_settings(settings.secret_key))
        )
    async with run_api(settings, port=port) as api, signed_in_page(browser, f"{api.url}/app/profile", "lena") as page:
        await expect(page.locator("#profile")).to_contain_text("No chat accounts linked.")
        await page.click("#link-code-get")
        await expect(page.locator("#link-code")).to_be_visible()
        code = await page.locator("#link-code-value").text_content()
        assert code is not None and len(code) == 10
        commands = page.locator("#link-code [data-command]")
        await expect(commands).to_have_text([f"/link {code}", f"/link {code}", f"!link {code}", code])

        # Lena sends the command to the team's bot from her direct chat with it.
        async with api.client() as http:
            update = telegram_message(7005, f"/link {code}", private=True)
            assert (await telegram_update(http, team_id, update)).status_code == 200
        [answer] = [call.body for call in telegram_api.calls_to("sendMessage")]
        assert (answer["chat_id"], answer["text"]) == (
            "7005",
            "Linked: what this Telegram account writes here now counts as Lena's.",
        )

        # Shown once: after a reload the code is gone from the page, and the account is listed.
        await page.reload()
        await expect(page.locator("#link-code")).to_be_hidden()
        assert code not in await page.content()
        account = page.locator("li.account")
        await expect(account.locator(".account-platform")).to_have_text("Telegram")
        await expect(account.locator(".account-name")).to_have_text("user7005")
        await expect(account.locator(".account-id")).to_have_text("7005")
        await expect(account.locator(".hint")).to_contain_text("direct messages")
        [stored] = await rows(clean_db, "SELECT platform, external_user_id, direct_chat_id FROM bridge_link")
        assert stored == {"platform": "telegram", "external_user_id": "7005", "direct_chat_id": "7005"}

        await account.locator("button.revoke").click()
        await expect(page.locator("li.account")).to_have_count(0)
        await expect(page.locator("#profile")).to_contain_text("No chat accounts linked.")
        assert await rows(clean_db, "SELECT id FROM bridge_link") == []


async def test_sign_out_ends_the_session_and_lands_on_sign_in(
    settings: Settings, clean_db: AsyncEngine, oidc_issuer: str, browser: Browser
) -> None:
    settings, port, _ = await lena_leads_the_default_team(settings, clean_db, oidc_issuer)
    async with run_api(settings, port=port) as api, signed_in_page(browser, f"{api.url}/app", "lena") as page:
        [session] = [c["value"] for c in await page.context.cookies() if c["name"] == SESSION_COOKIE]
        await page.click(".sign-out button")
        # The IdP ends its session too (the provider's confirmation page), then sends the browser back to
        # Switchboard's root, which goes to /app: signed out, it says so instead of going to sign in again.
        await page.click("button:has-text('End session')")
        await page.wait_for_url(f"{api.url}/app")
        await expect(page.locator("h1")).to_have_text("You signed out")
        assert SESSION_COOKIE not in {c["name"] for c in await page.context.cookies()}

        await page.click("a:has-text('Sign in again')")
        await page.wait_for_url(f"{oidc_issuer}/**")
        await expect(page.locator("input[name=sub]")).to_be_visible()
        async with api.client() as http:
            http.cookies.set(SESSION_COOKIE, session)
            assert (await http.get("/api/v1/me")).status_code == 401


async def test_analytics_page_shows_the_numbers_of_the_seeded_data(
    settings: Settings, clean_db: AsyncEngine, oidc_issuer: str, browser: Browser
) -> None:
    """The fixed data set of test_analytics.py, seen by Lena, who leads its Support team (P1-P4)."""
    data = await build(clean_db)
    port = free_port()
    settings = oidc_settings(settings, oidc_issuer, public_url=AnyHttpUrl(f"http://127.0.0.1:{port}"))
    await set_user(oidc_issuer, "lena", name="Lena", groups=["support-leads"])
    async with run_api(settings, port=port) as api, signed_in_page(browser, f"{api.url}/app/analytics", "lena") as page:
        await page.goto(f"{api.url}/app/analytics?teamId={data.support}&from=2026-11-23&to=2026-11-24&tz=UTC")
        # Sessions: Mon P1 P4, Tue P2 P3.
        await expect(page.locator("rect.bar")).to_have_count(2)
        await expect(page.locator("rect.bar[data-day='2026-11-23']")).to_have_attribute("data-sessions", "2")
        await expect(page.locator("rect.bar[data-day='2026-11-24']")).to_have_attribute("data-sessions", "2")
        # First response: P1 180 s, P2 10 s (AI), P3 120 s, P4 unanswered. Sorted 10 120 180: average 103.3 s,
        # p50 120 s, p90 at 0.9*2 = 1.8 -> 120 + 0.8*60 = 168 s. Assignment: P1 and P3 after 60 s each.
        rows = page.locator("table.numbers").first.locator("tr")
        await expect(rows.nth(1).locator("td")).to_have_text(["103.3 s", "2.0 min", "2.8 min", "3 of 4"])
        await expect(rows.nth(2).locator("td")).to_have_text(["60.0 s", "60.0 s", "60.0 s", "2 of 4"])
        # Dan's two replies against one AI reply (P2).
        await expect(page.locator(".split")).to_have_text("Human: 2 (66.7 %) · AI: 1 (33.3 %)")
        pages = page.locator("section:has(h2:text('Top pages')) td")
        await expect(pages).to_have_text(
            ["https://help.example/docs", "2", "=cmd|' /C calc'!A0", "1", "https://help.example/contact", "1"]
        )
        # Dan 2 assignments of P1 and P3 (capacity 3, Support's default); Lea and Lena none.
        load = page.locator("tr[data-operator] td")
        await expect(load).to_have_text(
            [
                "Dan",
                "2",
                "2",
                "2",
                "3",
                "0.6667",
                "Lea",
                "0",
                "0",
                "0",
                "3",
                "0.0",
                "Lena",
                "0",
                "0",
                "0",
                "3",
                "0.0",
            ]
        )
