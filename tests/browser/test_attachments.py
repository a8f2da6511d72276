"""Files in the dashboard (headless Chromium): a visitor's image previewed, an operator's image sent to the widget."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import httpx
import websockets
from playwright.async_api import Browser, expect
from sqlalchemy.ext.asyncio import AsyncEngine

from service.settings import Settings
from tests.browser.test_dashboard import PHONE, lena_leads_the_default_team, sign_in
from tests.conftest import run_api
from tests.integration.workers.test_worker import run_burst
from tests.support.files import WIDGET, png, upload


async def next_message(socket: Any) -> dict[str, Any]:
    while True:
        event = json.loads(await asyncio.wait_for(socket.recv(), timeout=10))
        if event["type"] == "message":
            return event["data"]  # type: ignore[no-any-return]


async def test_a_visitors_image_is_previewed_and_the_operators_image_reaches_the_widget(
    settings: Settings, clean_db: AsyncEngine, oidc_issuer: str, browser: Browser, tmp_path: Path
) -> None:
    settings, port, _ = await lena_leads_the_default_team(settings, clean_db, oidc_issuer)
    settings = settings.model_copy(update={"data_dir": str(tmp_path / "data")})
    visitor_image, operator_image = png(8, 8, (250, 0, 0)), png(5, 7, (0, 0, 250))
    (tmp_path / "reply.png").write_bytes(operator_image)
    async with run_api(settings, port=port) as api, httpx.AsyncClient(base_url=api.url) as widget:
        session_id = (await widget.post("/pocketping/connect", json={"visitorId": "v"}, headers=WIDGET)).json()[
            "sessionId"
        ]
        uploaded = await upload(widget, session_id, "broken-kettle.png", visitor_image, "image/png")
        body = {"sessionId": session_id, "content": "It arrived like this", "sender": "visitor"}
        sent = await widget.post("/pocketping/message", json=body | {"attachmentIds": [uploaded["id"]]})
        assert sent.status_code == 200, sent.text
        assert (await run_burst(settings)).jobs_failed == 0

        context = await browser.new_context(viewport=PHONE)
        try:
            page = await context.new_page()
            url = f"{api.url}/app/conversations/{session_id}"
            await sign_in(page, url, "lena")
            preview = page.locator(f"[data-attachment='{uploaded['id']}'] img.attachment-preview")
            await expect(preview).to_have_attribute("alt", "broken-kettle.png")
            # Loaded through its signed URL: the browser decoded the visitor's 8x8 image.
            await expect(preview).to_have_js_property("naturalWidth", 8)

            await page.click(".conversation-head button:has-text('Claim')")
            await expect(page.locator(".conversation-head")).to_contain_text("with Lena")
            async with websockets.connect(f"{api.ws_url}/pocketping/stream?sessionId={session_id}") as socket:
                await page.set_input_files("input[data-attach]", str(tmp_path / "reply.png"))
                await expect(page.locator("[data-attached] li")).to_have_text("reply.png")
                await page.fill("#reply-content", "Sorry! Is this the one?")
                await page.click("form.reply button[type=submit]")
                message = await next_message(socket)
            assert (message["sender"], message["content"]) == ("operator", "Sorry! Is this the one?")
            [attachment] = message["attachments"]
            assert (attachment["filename"], attachment["mimeType"], attachment["size"]) == (
                "reply.png",
                "image/png",
                len(operator_image),
            )
            download = await widget.get(attachment["url"])
            assert (download.status_code, download.content) == (200, operator_image)
            sent_preview = page.locator(f"[data-attachment='{attachment['id']}'] img.attachment-preview")
            await expect(sent_preview).to_have_js_property("naturalWidth", 5)
            await expect(page.locator("[data-attached] li")).to_have_count(0)
        finally:
            await context.close()
