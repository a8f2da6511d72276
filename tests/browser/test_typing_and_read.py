"""Typing and read receipts both ways in Chromium: a widget-protocol page on the shop's origin and the dashboard's
conversation page, open side by side."""

from __future__ import annotations

from typing import Any

from playwright.async_api import Browser, Page, expect
from sqlalchemy.ext.asyncio import AsyncEngine

from service.settings import Settings
from tests.browser.test_conversation_page import phone, signed_in
from tests.browser.test_dashboard import lena_leads_the_default_team
from tests.browser.test_widget_beacons import eventually, shop_page
from tests.conftest import run_api
from tests.integration.workers.test_worker import run_burst
from tests.support.routing import rows

# What the widget 2.6 does, call for call (packages/widget/src/client.ts and ChatWidget.tsx): POST /connect with
# the page's metadata, the WebSocket stream (its events kept in window.events), POST /typing on every keystroke of
# the input (handleInputChange -> sendTyping(true), no debounce), POST /message, and sendReadStatus(ids, "read")
# for the operator's messages not read yet (markMessagesAsRead, once the chat is open and they arrived).
WIDGET = """<!doctype html>
<title>Lamps</title>
<textarea id="input"></textarea>
<script>
const endpoint = "%(endpoint)s";
async function call(path, options) {
  const response = await fetch(endpoint + path, {
    ...options, headers: {"Content-Type": "application/json", "X-PocketPing-Version": "2.6.0"},
  });
  if (!response.ok) throw new Error(`PocketPing API error: ${response.status} ${await response.text()}`);
  return response.json();
}
window.events = [];
window.connected = (async () => {
  const session = await call("/connect", {method: "POST", body: JSON.stringify({
    visitorId: "v-typist", sessionId: null,
    metadata: {
      url: location.href, referrer: document.referrer || undefined, pageTitle: document.title || undefined,
      userAgent: navigator.userAgent, timezone: Intl.DateTimeFormat().resolvedOptions().timeZone,
      language: navigator.language, screenResolution: `${screen.width}x${screen.height}`,
    },
  })});
  const sessionId = session.sessionId;
  const ws = new WebSocket(endpoint.replace(/^http/, "ws") + `/stream?sessionId=${sessionId}`);
  ws.onmessage = (event) => window.events.push(JSON.parse(event.data));
  await new Promise((resolve) => { ws.onopen = resolve; });
  document.getElementById("input").addEventListener("input", () => {
    call("/typing", {method: "POST", body: JSON.stringify({sessionId, sender: "visitor", isTyping: true})});
  });
  window.send = (content) => call("/message", {method: "POST", body: JSON.stringify({
    sessionId, content, sender: "visitor", attachmentIds: [], replyTo: undefined,
  })});
  window.markMessagesAsRead = () => {
    const unread = window.events.filter((e) => e.type === "message" && e.data.sender !== "visitor"
      && e.data.status !== "read").map((e) => e.data.id);
    return call("/read", {method: "POST", body: JSON.stringify({sessionId, messageIds: unread, status: "read"})});
  };
  return sessionId;
})();
</script>
"""


def events_of(kind: str, widget: Page, **data: Any) -> Any:
    """A check for the widget's events of ``kind`` (whose data has ``data``), in the order they came."""

    async def check() -> list[dict[str, Any]]:
        events = await widget.evaluate("window.events")
        return [e for e in events if e["type"] == kind and data.items() <= e["data"].items()]

    return check


async def test_typing_and_read_reach_the_other_side_both_ways(
    settings: Settings, clean_db: AsyncEngine, oidc_issuer: str, browser: Browser
) -> None:
    settings, port, _ = await lena_leads_the_default_team(settings, clean_db, oidc_issuer)
    with shop_page(f"http://127.0.0.1:{port}", WIDGET) as shop:
        configured = settings.model_copy(update={"widget_origins": [shop]})
        async with run_api(configured, port=port) as api, phone(browser) as as_lena, phone(browser) as as_visitor:
            widget = await as_visitor.new_page()
            await widget.goto(shop)
            session_id = await widget.evaluate("window.connected")
            await widget.type("#input", "Hi")
            sent = await widget.evaluate("window.send('Do you ship lamps to Lyon?')")
            assert (await run_burst(configured)).jobs_failed == 0  # queued in Lena's team

            # Opening the conversation marks the visitor's message read; the widget gets the read event.
            dashboard = await signed_in(as_lena, f"{api.url}/app/conversations/{session_id}", "lena")
            # Typing is live only (never replayed): the page's event stream must be open before the visitor types.
            await expect(dashboard.locator("body")).to_have_attribute("data-live", "open")
            [read] = await eventually(events_of("read", widget))
            assert read["data"] == {
                "sessionId": session_id,
                "messageIds": [sent["messageId"]],
                "status": "read",
                "deliveredAt": read["data"]["readAt"],
                "readAt": read["data"]["readAt"],
            }
            assert await rows(clean_db, "SELECT status, read_at IS NOT NULL AS read FROM message") == [
                {"status": "read", "read": True}
            ]

            # The visitor types: the operator sees it; a message of theirs ends it.
            indicator = dashboard.locator("#visitor-typing")
            await expect(indicator).to_be_hidden()
            # At a visitor's pace (3.5 s): a repeat of the "Hi" typing within the 2 s coalescing interval is
            # dropped, so typing that lasts longer than the interval is sure to be forwarded.
            await widget.type("#input", "One more thing", delay=250)
            await expect(indicator).to_be_visible(timeout=10_000)
            await expect(indicator).to_have_text("The visitor is typing…")
            await widget.evaluate("window.send('Is delivery free?')")
            await expect(indicator).to_be_hidden()
            # Seen while the page is open: read at once, and the widget is told.
            await eventually(lambda: _count(events_of("read", widget), 2))

            # The operator types: the widget gets typing from the operator; the reply is read in the widget.
            await dashboard.type("#reply-content", "Yes, and delivery is free.")
            # (The gateway echoes the visitor's own typing to their sockets too, as the SDK does; the widget drops it.)
            [typing, *_] = await eventually(events_of("typing", widget, sender="operator"))
            assert typing == {
                "type": "typing",
                "data": {"sessionId": session_id, "sender": "operator", "isTyping": True},
            }
            # A pause in typing: "stopped" follows on its own.
            await eventually(events_of("typing", widget, sender="operator", isTyping=False))
            await dashboard.click("form.reply button[type=submit]")
            reply = dashboard.locator(".message.from-operator")
            await expect(reply.locator(".receipt")).to_have_text("sent")
            await eventually(events_of("message", widget))
            assert await widget.evaluate("window.markMessagesAsRead()") == {"updated": 1}
            # The dashboard follows the message.receipt event: the visitor read the reply.
            await expect(reply.locator(".receipt")).to_have_attribute("data-status", "read")
            await expect(reply.locator(".receipt")).to_contain_text("read by the visitor")


async def _count(check: Any, count: int) -> bool:
    return len(await check()) == count
