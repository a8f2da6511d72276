"""The visitor demo of `switchboard dev` in headless Chromium: visitor and operator in two browsers, then the AI."""

from __future__ import annotations

import asyncio
import contextlib
import re
from collections.abc import AsyncIterator

import sqlalchemy as sa
from playwright.async_api import Browser, WebSocketRoute, expect
from pydantic import AnyHttpUrl
from sqlalchemy.ext.asyncio import AsyncEngine

from service.ai.providers import LOCAL_LABEL
from service.demo.seed import DEMO_TEAM, WELCOME, seed_demo_team
from service.dev import DEMO_GROUP_MAP, free_port
from service.settings import GroupGrant, Settings
from tests.browser.test_dashboard import PHONE, sign_in
from tests.conftest import run_api
from tests.integration.workers.test_worker import burst_worker
from tests.support.oidc import oidc_settings, set_user


@contextlib.asynccontextmanager
async def running_worker(settings: Settings) -> AsyncIterator[None]:
    """A worker that keeps running (routing, timers, AI) while the browsers act; no periodic sweep."""
    worker = burst_worker(settings, burst=False, poll_delay=0.05, cron_jobs=[])
    task = asyncio.create_task(worker.main())
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await worker.close()


async def refuse(socket: WebSocketRoute) -> None:
    await socket.close()


async def development(settings: Settings, clean_db: AsyncEngine, oidc_issuer: str) -> tuple[Settings, int]:
    """Settings as `switchboard dev` gives them (development mode, the demo users' groups) and its seeded team."""
    port = free_port()
    group_map = {group: GroupGrant(**grant) for group, grant in DEMO_GROUP_MAP.items()}  # type: ignore[arg-type]
    settings = oidc_settings(
        settings,
        oidc_issuer,
        environment="development",
        oidc_group_map=group_map,
        public_url=AnyHttpUrl(f"http://127.0.0.1:{port}"),
        events_poll_seconds=0.2,
    )
    async with clean_db.begin() as conn:
        await seed_demo_team(conn)
    await set_user(oidc_issuer, "olga", name="Olga Operator", groups=["demo-support"])
    return settings, port


# Nothing assigned in the last half hour: the estimator's floor, 30 minutes a place.
QUEUE_NOTICE = "You are number 1 in the queue. Estimated wait: about 30 minutes."


async def test_a_visitor_on_the_demo_page_gets_the_operator_answer_then_the_ai(
    settings: Settings, clean_db: AsyncEngine, oidc_issuer: str, browser: Browser
) -> None:
    settings, port = await development(settings, clean_db, oidc_issuer)
    async with run_api(settings, port=port) as api, running_worker(settings):
        visitor_context = await browser.new_context(viewport=PHONE)
        operator_context = await browser.new_context(viewport=PHONE)
        try:
            visitor = await visitor_context.new_page()
            await visitor.goto(f"{api.url}/demo")
            await expect(visitor.locator("body")).to_have_attribute("data-transport", "websocket")
            await expect(visitor.locator("#welcome")).to_have_text(WELCOME)
            await visitor.fill("#content", "Where is my parcel?")
            await visitor.press("#content", "Enter")
            await expect(visitor.locator(".message.from-visitor p")).to_have_text(["Where is my parcel?"])
            session_id = await visitor.locator("body").get_attribute("data-session")

            operator = await operator_context.new_page()
            await sign_in(operator, f"{api.url}/app?tab=queue", "olga")
            row = operator.locator(f"a[data-conversation='{session_id}']")
            await expect(row).to_contain_text("Where is my parcel?")
            await expect(row).to_contain_text(DEMO_TEAM)
            await row.click()
            await operator.fill("#reply-content", "It ships today.")
            await operator.click("form.reply button[type=submit]")

            # The answer reaches the visitor's page over its WebSocket, once, after the queue notice they got while
            # nobody was online (the demo team tells queued visitors their place: docs/routing.md).
            answer = visitor.locator(".message.from-operator")
            await expect(answer.locator("p")).to_have_text([QUEUE_NOTICE, "It ships today."])
            await expect(answer.last.locator(".author")).to_have_text("Olga Operator")
            await expect(visitor.locator(".message.from-visitor")).to_have_count(1)

            # Nobody answers the next visitor, whose WebSockets are refused (as by a proxy without them): the page
            # falls back to SSE, and the AI answers after the team's delay.
            async with clean_db.begin() as conn:
                await conn.execute(
                    sa.text("UPDATE team SET ai_takeover_delay_seconds = 1 WHERE name = :name"), {"name": DEMO_TEAM}
                )
            await visitor.route_web_socket(re.compile(r"/pocketping/stream"), refuse)
            await visitor.click("#restart")
            await expect(visitor.locator("body")).to_have_attribute("data-transport", "sse")
            assert await visitor.locator("body").get_attribute("data-session") != session_id
            await visitor.fill("#content", "Anyone there?")
            await visitor.press("#content", "Enter")
            reply = visitor.locator(".message.from-ai")
            await expect(reply.locator("p")).to_have_text(
                [f'{LOCAL_LABEL} You wrote: "Anyone there?". I read 1 messages, with the team\'s instructions.'],
                timeout=15_000,
            )
            await expect(reply.locator(".author")).to_have_text(["AI assistant"])
            await expect(visitor.locator(".notice")).to_have_text(
                ["The AI assistant is answering while the team is busy."]
            )
        finally:
            await operator_context.close()
            await visitor_context.close()


async def test_the_demo_page_does_not_exist_outside_development_mode(settings: Settings) -> None:
    async with run_api(settings) as api, api.client() as http:
        assert (await http.get("/demo")).status_code == 404
        assert (await http.get("/demo/demo.js")).status_code == 404
