"""Desktop notifications in headless Chromium: the dashboard's service worker shows what Switchboard pushes.

Headless Chromium reaches no push service (its ``pushManager.subscribe`` fails), so the browser's subscription
is a Web Push stand-in's: Switchboard's real sender pushes to it, the stand-in decrypts the payload, and the
DevTools protocol (``ServiceWorker.deliverPushMessage``) hands that payload to the dashboard's service worker.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

from playwright.async_api import Browser, CDPSession, expect
from sqlalchemy.ext.asyncio import AsyncEngine

from service.settings import Settings
from tests.browser.test_dashboard import fetch_as_page, lena_leads_the_default_team, sign_in, visitor_writes
from tests.browser.test_presence_tabs import clients_become
from tests.conftest import run_api
from tests.integration.push.test_push import work
from tests.standins.push import WebPushStandIn
from tests.support.push import browser_keys, es256_key
from tests.support.routing import set_values

NOTIFICATIONS = """async () => {
    const registration = await navigator.serviceWorker.getRegistration("/app/");
    const shown = await registration.getNotifications();
    return shown.map((n) => ({title: n.title, body: n.body, tag: n.tag, data: n.data}));
}"""


async def registration_id(cdp: CDPSession, scope: str) -> str:
    """The id DevTools gives the service worker registration of ``scope``."""
    found: asyncio.Future[str] = asyncio.get_running_loop().create_future()

    def updated(event: dict[str, Any]) -> None:
        for registration in event["registrations"]:
            if registration["scopeURL"] == scope and not registration["isDeleted"] and not found.done():
                found.set_result(registration["registrationId"])

    cdp.on("ServiceWorker.workerRegistrationUpdated", updated)
    await cdp.send("ServiceWorker.enable")
    return await asyncio.wait_for(found, 10)


async def test_a_queue_alert_pushed_to_the_browser_is_shown_by_the_service_worker_with_no_tab_open(
    settings: Settings, clean_db: AsyncEngine, oidc_issuer: str, browser: Browser
) -> None:
    settings, port, team_id = await lena_leads_the_default_team(settings, clean_db, oidc_issuer)
    await set_values(clean_db, "team", {"id": team_id}, routing_policy="manual", queue_alert_threshold=0)
    with WebPushStandIn() as push_service:
        settings = settings.model_copy(update={"vapid_private_key": es256_key().private_pem})
        async with run_api(settings, port=port) as api:
            context = await browser.new_context()
            await context.grant_permissions(["notifications"], origin=api.url)
            page = await context.new_page()
            await sign_in(page, f"{api.url}/app/profile", "lena")
            await expect(page.locator("link[rel=manifest]")).to_have_attribute(
                "href", "/app/static/manifest.webmanifest"
            )
            # Enabling asks for permission and registers the worker; the subscription itself fails headless.
            await page.click("#notifications-enable")
            await expect(page.locator("#notifications-status")).to_be_visible()
            subscription = push_service.subscribe(browser_keys())
            device = {"platform": "webpush", "subscription": subscription, "name": "Chromium"}
            assert await fetch_as_page(page, "POST", "/api/v1/me/devices", device) == 201
            await page.close()  # no tab open: Lena is not looking, so she is pushed to
            await clients_become(clean_db, 0)

            await visitor_writes(api, settings, "visitor-1", "hello?")
            await work(settings, api)
            [(_, _, payload)] = push_service.received
            assert payload == {
                "title": "Queue alert",
                "body": "1 conversation waiting in Support (alert above 0)",
                "tag": f"queue-{team_id}",
                "type": "queue",
                "teamId": str(team_id),
            }

            # The push reaches the worker while no dashboard tab is open at all; a tab opened later lists it.
            blank = await context.new_page()
            cdp = await context.new_cdp_session(blank)
            registration = await registration_id(cdp, f"{api.url}/app/")
            await cdp.send(
                "ServiceWorker.deliverPushMessage",
                {"origin": api.url, "registrationId": registration, "data": json.dumps(payload)},
            )
            tab = await context.new_page()
            await tab.goto(f"{api.url}/app/profile")
            for _ in range(100):
                if shown := await tab.evaluate(NOTIFICATIONS):
                    break
                await asyncio.sleep(0.05)
            assert shown == [
                {
                    "title": "Queue alert",
                    "body": "1 conversation waiting in Support (alert above 0)",
                    "tag": f"queue-{team_id}",
                    "data": {"url": "/app", "type": "queue"},
                }
            ]
            await context.close()
