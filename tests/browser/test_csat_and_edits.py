"""The conversation page in headless Chromium: editing and deleting one's own reply, and the visitor's rating."""

from __future__ import annotations

from typing import Any

import websockets
from playwright.async_api import Browser, Dialog, expect
from sqlalchemy.ext.asyncio import AsyncEngine

from service.settings import Settings
from tests.browser.test_conversation_page import phone, signed_in
from tests.browser.test_dashboard import lena_leads_the_default_team, visitor_writes
from tests.conftest import run_api
from tests.integration.gateway.test_gateway import next_event
from tests.integration.workers.test_worker import run_burst
from tests.support.routing import rows, set_values


async def next_change(socket: Any) -> dict[str, Any]:
    """The widget's next event, past the echo of its own message and the receipts of the page reading it."""
    while True:
        event = await next_event(socket)
        if event["type"] not in ("message", "read", "delivered"):
            return event


async def test_an_operator_edits_and_deletes_a_reply_and_sees_the_visitors_rating(
    settings: Settings, clean_db: AsyncEngine, oidc_issuer: str, browser: Browser
) -> None:
    settings, port, team_id = await lena_leads_the_default_team(settings, clean_db, oidc_issuer)
    await set_values(clean_db, "team", {"id": team_id}, csat_enabled=True)
    async with run_api(settings, port=port) as api, phone(browser) as context:
        page = await signed_in(context, f"{api.url}/app", "lena")

        async def accept(dialog: Dialog) -> None:
            await dialog.accept()

        page.on("dialog", accept)  # the page asks before deleting and closing
        session_id = await visitor_writes(api, settings, "v-rated", "Where is my parcel?")
        await page.goto(f"{api.url}/app/conversations/{session_id}")
        await expect(page.locator("body")).to_have_attribute("data-live", "open")
        # Opening the page marked the visitor's message read (and refreshed the thread once).
        await expect(page.locator(".message.from-visitor .receipt")).to_have_attribute("data-status", "read")
        for text in ("It ships on Friday.", "Tracking follows by mail."):
            await page.fill("#reply-content", text)
            await page.click("form.reply button[type=submit]")
            await expect(page.locator(".message.from-operator p").last).to_have_text(text)
        replies = page.locator(".message.from-operator")
        # Only one's own messages have the controls; the visitor's has none.
        await expect(page.locator(".message.from-visitor [data-edit-message]")).to_have_count(0)

        async with websockets.connect(f"{api.ws_url}/pocketping/stream?sessionId={session_id}") as socket:
            first = replies.nth(0)
            await first.locator("button:has-text('Edit')").click()
            await expect(first.locator("form.edit-message")).to_be_visible()
            await first.locator("form.edit-message textarea").fill("It ships on Monday.")
            # The visitor writes while the edit is open: the live refresh waits instead of dropping the edit.
            async with api.client() as http:
                more = {"sessionId": session_id, "content": "Thanks!", "sender": "visitor"}
                assert (await http.post("/pocketping/message", json=more)).status_code == 200
            await expect(page.locator("#thread")).to_have_attribute("data-stale", "true")
            await expect(first.locator("form.edit-message textarea")).to_have_value("It ships on Monday.")
            await first.locator("form.edit-message button[type=submit]").click()
            await expect(first.locator("p")).to_have_text("It ships on Monday.")
            await expect(page.locator(".message.from-visitor p").last).to_have_text("Thanks!")
            await expect(first.locator(".flag")).to_have_text("edited")
            edited = await next_change(socket)
            assert (edited["type"], edited["data"]["content"]) == ("message_edited", "It ships on Monday.")

            second = replies.nth(1)
            await second.locator("button:has-text('Delete')").click()
            await expect(second.locator(".flag")).to_have_text("deleted")
            await expect(second.locator("p del")).to_have_text("Tracking follows by mail.")
            await expect(second.locator("[data-edit-message]")).to_have_count(0)
            deleted = await next_change(socket)
            assert deleted["type"] == "message_deleted"

            await page.click(".conversation-head button:has-text('Close')")
            await expect(page.locator(".conversation-head .status")).to_have_text("closed")
            assert (await run_burst(settings)).jobs_failed == 0  # the rating is asked
            asked = await next_change(socket)
            assert asked["type"] == "csat_request"
        await expect(page.locator(".csat")).to_contain_text("Rating asked when it closed; no answer yet")

        async with api.client() as http:
            rating = {"sessionId": session_id, "score": 4, "comment": "Quick, thanks"}
            assert (await http.post("/pocketping/csat", json=rating)).status_code == 200
        # The page follows the conversation.rated event without a reload.
        csat = page.locator(".csat")
        await expect(csat).to_have_attribute("data-score", "4")
        await expect(csat).to_contain_text("Visitor rating: 4/5 for Lena")
        await expect(csat.locator(".csat-comment")).to_have_text("Quick, thanks")
        assert await rows(clean_db, "SELECT content, edited_at IS NOT NULL AS edited FROM message ORDER BY seq") == [
            {"content": "Where is my parcel?", "edited": False},
            {"content": "It ships on Monday.", "edited": True},
            {"content": "Tracking follows by mail.", "edited": False},
            {"content": "Thanks!", "edited": False},
        ]
