"""The widget's leave notices in Chromium: ``navigator.sendBeacon`` with a JSON blob, from a page on another origin."""

from __future__ import annotations

import asyncio
import re
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import sqlalchemy as sa
from playwright.async_api import Browser
from pocketping.bridges import Bridge
from pocketping.models import Session
from redis.asyncio import Redis
from sqlalchemy.ext.asyncio import AsyncEngine

from service.dev import free_port
from service.settings import Settings
from tests.conftest import run_api
from tests.integration.gateway.test_widget_protocol import START_MS, Clock

# What the widget's client.ts does, in the same words: connect, notifyDisconnect() on beforeunload and
# pagehide, sendVisibilityPing() (a beacon when hidden). The test calls the latter itself, where the
# widget listens for visibilitychange: a closing page may or may not be hidden first.
PAGE = """<!doctype html>
<title>Shop</title>
<script>
const endpoint = "%(endpoint)s";
window.connected = (async () => {
  const response = await fetch(endpoint + "/connect", {
    method: "POST",
    headers: {"Content-Type": "application/json", "X-PocketPing-Version": "2.6.0"},
    body: JSON.stringify({visitorId: "leaving-visitor", sessionId: null, metadata: {url: location.href}}),
  });
  const session = await response.json();
  const connectedAt = Date.now();
  let disconnectNotified = false;
  const notifyDisconnect = () => {
    if (disconnectNotified) return;
    disconnectNotified = true;
    const data = JSON.stringify({
      sessionId: session.sessionId,
      duration: Math.round((Date.now() - connectedAt) / 1000),
      reason: "page_unload",
    });
    navigator.sendBeacon(endpoint + "/disconnect", new Blob([data], {type: "application/json"}));
  };
  window.sendVisibilityPing = (state) => {
    const data = JSON.stringify({sessionId: session.sessionId, state, timestamp: Date.now()});
    if (state === "hidden" && navigator.sendBeacon) {
      return navigator.sendBeacon(endpoint + "/visibility", new Blob([data], {type: "application/json"}));
    }
    fetch(endpoint + "/visibility", {
      method: "POST", headers: {"Content-Type": "application/json"}, body: data, keepalive: true,
    }).catch(() => {});
  };
  window.addEventListener("beforeunload", notifyDisconnect);
  window.addEventListener("pagehide", notifyDisconnect);
  return session.sessionId;
})();
</script>
"""


class LeaveBridge(Bridge):
    """Records the one-line notices bridges get when a visitor leaves."""

    def __init__(self) -> None:
        self.notices: list[tuple[str, str]] = []

    @property
    def name(self) -> str:
        return "leaves"

    async def notify_disconnect(self, session: Session, message: str) -> None:
        self.notices.append((session.id, message))


@contextmanager
def shop_page(api_url: str, page: str = PAGE) -> Iterator[str]:
    """A page of the visitor's shop on an origin of its own (another port), embedding the widget's calls."""
    body = (page % {"endpoint": f"{api_url}/pocketping"}).encode()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "text/html; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", free_port()), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


async def eventually(check: Callable[[], Any], seconds: float = 20) -> Any:
    """``check()``'s first truthy answer, asked every 50 ms."""
    deadline = asyncio.get_running_loop().time() + seconds
    while not (answer := await check()):
        assert asyncio.get_running_loop().time() < deadline, "the beacon never arrived"
        await asyncio.sleep(0.05)
    return answer


async def test_a_page_on_another_origin_sends_its_beacons_then_closes_and_the_leave_is_recorded(
    settings: Settings, clean_db: AsyncEngine, redis: Redis, browser: Browser
) -> None:
    port = free_port()
    with shop_page(f"http://127.0.0.1:{port}") as shop:
        configured = settings.model_copy(update={"widget_origins": [shop]})
        async with run_api(configured, port=port) as api:
            api.app.state.rate_limiter.clock = Clock()  # one window: the signal count says what arrived
            leaves = LeaveBridge()
            api.app.state.pocketping.bridges.append(leaves)
            signals = f"{settings.redis_prefix}:rate:signal:127.0.0.1:{START_MS // 1000}"

            async def arrived() -> int:
                return int(await redis.get(signals) or 0)

            def arrived_in_all(count: int) -> Callable[[], Any]:
                async def check() -> bool:
                    return await arrived() == count

                return check

            context = await browser.new_context()
            page = await context.new_page()
            await page.goto(shop)
            session_id = await page.evaluate("window.connected")
            assert await arrived() == 1  # /connect

            assert await page.evaluate("window.sendVisibilityPing('hidden')") is True
            await eventually(arrived_in_all(2))  # /visibility

            await page.close(run_before_unload=True)  # beforeunload, pagehide: the disconnect beacon

            async def left() -> Any:
                async with clean_db.connect() as conn:
                    return (
                        await conn.execute(
                            sa.text("SELECT visitor_left_at FROM conversation WHERE id = :id"), {"id": session_id}
                        )
                    ).scalar()

            async def noticed() -> list[tuple[str, str]]:
                return leaves.notices

            # The bridges are told after the leave is committed: wait for the notice, the last effect.
            [(notice_session, notice)] = await eventually(noticed)
            assert await left() is not None
            assert await arrived() == 3
            assert notice_session == session_id
            assert re.fullmatch(r"Visitor left after \d+ s", notice)
            await context.close()
