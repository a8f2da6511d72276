"""The dashboard in headless Chromium: the running service, a real OIDC provider, PostgreSQL, Redis and a worker."""

from __future__ import annotations

import uuid
from typing import Any

import websockets
from playwright.async_api import Browser, Page, expect
from pydantic import AnyHttpUrl
from sqlalchemy.ext.asyncio import AsyncEngine

from service.dev import free_port
from service.routing.placement import DEFAULT_TEAM_NAME
from service.settings import Settings
from tests.conftest import RunningApi, run_api
from tests.factories import make_team
from tests.integration.realtime.test_fanout import received
from tests.integration.workers.test_worker import run_burst
from tests.support.oidc import oidc_settings, set_user

PHONE = {"width": 390, "height": 844}


async def sign_in(page: Page, url: str, sub: str) -> None:
    """Open ``url`` signed out: the dashboard sends the browser to the IdP, whose form signs in as ``sub``."""
    await page.goto(url)
    await page.fill("input[name=sub]", sub)
    await page.click("button[type=submit]:has-text('Authorize')")
    await page.wait_for_url(url)


async def fetch_as_page(page: Page, method: str, path: str, body: dict[str, Any]) -> int:
    """Call the REST API from the page, with its session and CSRF header, as the dashboard does; the status."""
    status = await page.evaluate(
        """async ([method, path, body]) => {
            const response = await fetch(path, {
                method: method,
                headers: Object.assign({"Content-Type": "application/json"},
                                       JSON.parse(document.body.getAttribute("hx-headers"))),
                body: JSON.stringify(body),
            });
            return response.status;
        }""",
        [method, path, body],
    )
    return int(status)


async def visitor_writes(api: RunningApi, settings: Settings, visitor_id: str, content: str) -> str:
    """A visitor opens a session and writes (widget protocol over HTTP), then a burst worker routes it; its id."""
    async with api.client() as http:
        session_id = str((await http.post("/pocketping/connect", json={"visitorId": visitor_id})).json()["sessionId"])
        sent = await http.post(
            "/pocketping/message", json={"sessionId": session_id, "content": content, "sender": "visitor"}
        )
        assert sent.status_code == 200
    worker = await run_burst(settings)
    assert worker.jobs_failed == 0
    return session_id


async def lena_leads_the_default_team(
    settings: Settings, clean_db: AsyncEngine, oidc_issuer: str
) -> tuple[Settings, int, uuid.UUID]:
    """Settings for an api on a free port with a quick event stream; Lena (IdP group) leads the default team."""
    port = free_port()
    settings = oidc_settings(
        settings, oidc_issuer, public_url=AnyHttpUrl(f"http://127.0.0.1:{port}"), events_poll_seconds=0.2
    )
    # The IdP's group makes Lena lead of the default team, where the visitor's conversation is routed.
    team_id = await make_team(clean_db, DEFAULT_TEAM_NAME, is_default=True)
    await set_user(oidc_issuer, "lena", name="Lena", groups=["support-leads"])
    return settings, port, team_id


async def test_sign_in_see_a_visitor_live_and_reply_once(
    settings: Settings, clean_db: AsyncEngine, oidc_issuer: str, browser: Browser
) -> None:
    settings, port, _ = await lena_leads_the_default_team(settings, clean_db, oidc_issuer)
    async with run_api(settings, port=port) as api:
        context = await browser.new_context(viewport=PHONE)
        try:
            page = await context.new_page()
            inbox = f"{api.url}/app?tab=queue"
            await sign_in(page, inbox, "lena")
            await expect(page.locator(".who")).to_have_text("Lena")
            await expect(page.locator("#inbox")).to_contain_text("Nothing here.")
            # Events after the stream opened are the ones the page is promised.
            await expect(page.locator("body")).to_have_attribute("data-live", "open")

            async with api.client() as http:
                session_id = (await http.post("/pocketping/connect", json={"visitorId": "v-browser"})).json()[
                    "sessionId"
                ]
                async with websockets.connect(f"{api.ws_url}/pocketping/stream?sessionId={session_id}") as socket:
                    sent = await http.post(
                        "/pocketping/message",
                        json={"sessionId": session_id, "content": "Where is my parcel?", "sender": "visitor"},
                    )
                    assert sent.status_code == 200
                    worker = await run_burst(settings)
                    assert worker.jobs_failed == 0

                    # Routed to the team's queue by the worker: the open page shows it without a reload.
                    row = page.locator(f"a[data-conversation='{session_id}']")
                    await expect(row).to_contain_text("Where is my parcel?")
                    await expect(row).to_contain_text("queued")
                    await row.click()
                    await page.wait_for_url(f"{api.url}/app/conversations/{session_id}")
                    await expect(page.locator(".messages")).to_contain_text("Where is my parcel?")

                    await page.fill("#reply-content", "It ships today.")
                    await page.click("form.reply button[type=submit]")
                    # Replying to a waiting conversation claims it; the page follows.
                    await expect(page.locator(".conversation-head")).to_contain_text("with Lena")
                    await expect(page.locator(".message.from-operator p")).to_have_text(["It ships today."])
                    await expect(page.locator(".message.from-operator .author")).to_have_text(["Lena"])
                    await expect(page.locator("#reply-content")).to_have_value("")

                    events = await received(socket)
            replies = [e for e in events if e["type"] == "message" and e["data"]["sender"] == "operator"]
            assert [r["data"]["content"] for r in replies] == ["It ships today."]
            assert replies[0]["data"]["metadata"]["operatorName"] == "Lena"
        finally:
            # Before the api stops: the page's event stream would otherwise hold the server open.
            await context.close()


async def test_signed_out_visitors_are_sent_to_sign_in_and_strangers_get_a_page(
    settings: Settings, clean_db: AsyncEngine, oidc_issuer: str, browser: Browser
) -> None:
    port = free_port()
    settings = oidc_settings(settings, oidc_issuer, public_url=AnyHttpUrl(f"http://127.0.0.1:{port}"))
    await set_user(oidc_issuer, "olga", name="Olga", groups=["support"])
    async with run_api(settings, port=port) as api:
        async with api.client() as http:
            response = await http.get("/app/conversations/c-1?x=1")
            assert (response.status_code, response.headers["location"]) == (
                303,
                "/auth/login?returnTo=/app/conversations/c-1%3Fx%3D1",
            )
            # A fragment's page comes back after sign-in, not the fragment.
            fragment = await http.get(
                "/app/inbox", headers={"HX-Request": "true", "HX-Current-URL": f"{api.url}/app?tab=queue"}
            )
            assert (fragment.status_code, fragment.headers["HX-Redirect"]) == (
                401,
                "/auth/login?returnTo=/app%3Ftab%3Dqueue",
            )
        context = await browser.new_context(viewport=PHONE)
        try:
            page = await context.new_page()
            await sign_in(page, f"{api.url}/app", "olga")
            await expect(page.locator(".tabs a")).to_have_text(["Mine", "Team queue"])
            response = await page.goto(f"{api.url}/app/conversations/not-there")
            assert response is not None and response.status == 404
            await expect(page.locator("h1")).to_have_text("404")
            response = await page.goto(f"{api.url}/app?tab=all")
            assert response is not None and response.status == 403
        finally:
            await context.close()


async def test_canned_response_picker_fills_the_reply_and_notes_stay_internal(
    settings: Settings, clean_db: AsyncEngine, oidc_issuer: str, browser: Browser
) -> None:
    settings, port, team_id = await lena_leads_the_default_team(settings, clean_db, oidc_issuer)
    async with run_api(settings, port=port) as api:
        context = await browser.new_context(viewport=PHONE)
        try:
            page = await context.new_page()
            await sign_in(page, f"{api.url}/app", "lena")
            # Lena leads the team, so the page's own session may create the team's response.
            canned = {
                "teamId": str(team_id),
                "shortcut": "hello",
                "title": "Greeting",
                "body": 'Hi {{visitor.name || "there"}}',
            }
            assert await fetch_as_page(page, "POST", "/api/v1/canned-responses", canned) == 201
            session_id = await visitor_writes(api, settings, "v-notes", "Hello?")

            await page.goto(f"{api.url}/app/conversations/{session_id}")
            await expect(page.locator("body")).to_have_attribute("data-live", "open")
            await page.locator("#reply-content").press_sequentially("/hel")
            await expect(page.locator("#canned-picker li")).to_have_text(["/hello — Greeting"])
            await page.locator("#reply-content").press("Enter")
            await expect(page.locator("#reply-content")).to_have_value("Hi there")
            await expect(page.locator("#canned-picker")).to_be_hidden()

            async with websockets.connect(f"{api.ws_url}/pocketping/stream?sessionId={session_id}") as socket:
                await received(socket)  # whatever the socket replays on connect
                await page.fill("#note-body", "Asked twice already.")
                await page.click("form.note-form button[type=submit]")
                await expect(page.locator(".note p")).to_have_text(["Asked twice already."])
                await expect(page.locator(".note .author")).to_have_text(["Lena"])
                await expect(page.locator("#note-body")).to_have_value("")
                events = await received(socket)
            assert [e for e in events if e["type"] == "message"] == []
            # The picked text is only in the box: nothing was sent to the visitor.
            await expect(page.locator(".message.from-operator")).to_have_count(0)
        finally:
            await context.close()
