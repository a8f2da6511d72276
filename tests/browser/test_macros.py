"""Applying a macro in headless Chromium: one click replies to the visitor, tags the conversation and closes it."""

from __future__ import annotations

import uuid

import sqlalchemy as sa
from playwright.async_api import Browser, Dialog, expect
from sqlalchemy.ext.asyncio import AsyncEngine

from service.settings import Settings
from tests.browser.test_conversation_page import phone, signed_in
from tests.browser.test_dashboard import lena_leads_the_default_team, visitor_writes
from tests.conftest import run_api
from tests.support.routing import rows


async def test_one_click_on_a_macro_replies_tags_and_closes(
    settings: Settings, clean_db: AsyncEngine, oidc_issuer: str, browser: Browser
) -> None:
    settings, port, team_id = await lena_leads_the_default_team(settings, clean_db, oidc_issuer)
    tag_id, canned_id = uuid.uuid4(), uuid.uuid4()
    async with clean_db.begin() as conn:
        await conn.execute(
            sa.text("INSERT INTO tag (id, team_id, name) VALUES (:id, :team, 'refund')"),
            {"id": tag_id, "team": team_id},
        )
        await conn.execute(
            sa.text(
                "INSERT INTO canned_response (id, team_id, shortcut, title, body)"
                " VALUES (:id, :team, 'done', 'Done', :b)"
            ),
            {"id": canned_id, "team": team_id, "b": 'Hi {{visitor.name || "there"}}, your refund is on its way.'},
        )
        await conn.execute(
            sa.text(
                "INSERT INTO macro (id, team_id, name, canned_id, add_tags, action)"
                " VALUES (gen_random_uuid(), :team, 'Refund done', :canned, ARRAY[CAST(:tag AS uuid)], 'close')"
            ),
            {"team": team_id, "canned": canned_id, "tag": str(tag_id)},
        )
    async with run_api(settings, port=port) as api, phone(browser) as context:
        session_id = await visitor_writes(api, settings, "v-macro", "I want my money back")
        page = await signed_in(context, f"{api.url}/app/conversations/{session_id}", "lena")

        async def accept(dialog: Dialog) -> None:
            await dialog.accept()

        page.on("dialog", accept)  # the page asks before applying a macro
        await page.click("summary:has-text('Macros')")
        await expect(page.locator(".macro-picker")).to_contain_text("reply · tag refund · close")
        await page.click("button[data-macro]:has-text('Refund done')")

        await expect(page.locator(".conversation-head .status")).to_have_text("closed")
        await expect(page.locator(".conversation-head .tag")).to_contain_text("refund")
        await expect(page.locator(".message.from-operator p")).to_have_text(["Hi there, your refund is on its way."])
        # Closed: no picker any more.
        await expect(page.locator("button[data-macro]")).to_have_count(0)
        async with api.client() as http:
            widget = (await http.get("/pocketping/messages", params={"sessionId": session_id})).json()["messages"]
    assert [m["content"] for m in widget if m["sender"] == "operator"] == ["Hi there, your refund is on its way."]
    [state] = await rows(clean_db, "SELECT status, first_response_at IS NOT NULL AS answered FROM conversation")
    assert state == {"status": "closed", "answered": True}
