"""Library mode: the FastAPI and Litestar example apps of docs/embedding.md, run as written, each with Switchboard
mounted under /support, carry a whole conversation: the widget's calls, routing by a ``switchboard worker --app``
process, an operator signing in at a real OpenID provider, the reply on the visitor's socket, the shop's own
bridge hearing the visitor, and every URL Switchboard produces under /support."""

from __future__ import annotations

import asyncio
import importlib.util
import json
import os
import re
import sys
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
import sqlalchemy as sa
import uvicorn
import websockets
from sqlalchemy.ext.asyncio import AsyncEngine

from service.dev import free_port
from service.settings import Settings
from tests.factories import add_member, make_operator, make_team
from tests.support.clock import eventually
from tests.support.idp import IDP_CLIENT_SECRET, Browser, real_provider
from tests.support.oidc import CLIENT_ID, query

ROOT = Path(__file__).resolve().parents[3]
EXAMPLES = ROOT / "docs" / "examples"
PREFIX = "/support"
WIDGET = {"X-PocketPing-Version": "2.6.0"}
# Paths in a page: links, assets, forms and the htmx calls.
PAGE_URLS = re.compile(r'(?:href|src|action|hx-get|hx-post|hx-put|hx-patch|hx-delete|data-attach)="([^"]+)"')


@pytest.fixture(scope="module")
def app_port() -> int:
    """Known before the app starts: the IdP has its callback URL registered."""
    return free_port()


@pytest.fixture(scope="module")
def idp(app_port: int) -> Iterator[str]:
    client = {
        "client_id": CLIENT_ID,
        "client_secret": IDP_CLIENT_SECRET,
        "redirect_uris": [f"http://127.0.0.1:{app_port}{PREFIX}/auth/callback"],
        "post_logout_redirect_uris": [f"http://127.0.0.1:{app_port}{PREFIX}"],
    }
    with real_provider([client], {"lena": {"name": "Lena"}}) as issuer:
        yield issuer


@dataclass
class Shop:
    module: ModuleType
    url: str

    @property
    def ws_url(self) -> str:
        return self.url.replace("http://", "ws://")


def _environment(settings: Settings, idp: str, port: int) -> dict[str, str]:
    """What the example reads through ``load_settings()``, as its README section tells a user to set."""
    return {
        "DATABASE_URL": settings.database_url,
        "REDIS_URL": settings.redis_url,
        "REDIS_PREFIX": settings.redis_prefix,
        "SECRET_KEY": settings.secret_key,
        "PUBLIC_URL": f"http://127.0.0.1:{port}",
        "PATH_PREFIX": PREFIX,
        "OIDC_ISSUER": idp,
        "OIDC_CLIENT_ID": CLIENT_ID,
        "OIDC_CLIENT_SECRET": IDP_CLIENT_SECRET,
        "ENVIRONMENT": "test",
        "LOG_LEVEL": "WARNING",
        "LOG_JSON": "false",
        "DB_POOL_SIZE": "4",
        "WORKER_POLL_DELAY": "0.01",
    }


def _load_example(name: str, monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    """The example file, imported fresh (its module-level app reads the environment); a module as any import
    makes one, which Litestar looks handlers' annotations up in."""
    spec = importlib.util.spec_from_file_location(f"{name}_{uuid.uuid4().hex[:6]}", EXAMPLES / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    monkeypatch.syspath_prepend(str(EXAMPLES))  # as `uvicorn embed_fastapi:app` run there would find its neighbours
    monkeypatch.setitem(sys.modules, spec.name, module)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(params=["embed_fastapi", "embed_litestar"])
async def shop(
    request: pytest.FixtureRequest,
    settings: Settings,
    idp: str,
    app_port: int,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> AsyncIterator[Shop]:
    """The example app under uvicorn, and its worker as docs/embedding.md runs it."""
    environment = _environment(settings, idp, app_port)
    for name, value in environment.items():
        monkeypatch.setenv(name, value)
    module = _load_example(request.param, monkeypatch)
    worker_log = (tmp_path / "worker.log").open("w")
    worker = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "service.cli",
        "worker",
        "--app",
        f"{request.param}:switchboard",
        cwd=EXAMPLES,
        stderr=worker_log,
        env={**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])},
    )
    config = uvicorn.Config(module.app, host="127.0.0.1", port=app_port, log_config=None, lifespan="on")
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    try:
        while not server.started:
            if task.done():
                task.result()
            await asyncio.sleep(0.01)
        yield Shop(module, f"http://127.0.0.1:{app_port}")
    finally:
        server.should_exit = True
        await task
        worker.terminate()
        await worker.wait()
        worker_log.close()
        print((tmp_path / "worker.log").read_text()[-3000:])  # shown when the test fails


def _under_prefix(paths: list[str]) -> list[str]:
    """The paths of ``paths`` that are this site's but not Switchboard's (should be none)."""
    return [p for p in paths if p.startswith("/") and not p.startswith(("//", PREFIX + "/")) and p != PREFIX]


async def _page_urls(browser: Browser, url: str) -> list[str]:
    page = await browser.http.get(url)
    assert page.status_code == 200, (url, page.status_code, page.text[:300])
    return PAGE_URLS.findall(page.text)


async def _assigned_to(engine: AsyncEngine, conversation_id: str, operator_id: uuid.UUID) -> bool:
    async with engine.connect() as conn:
        row = (
            await conn.execute(
                sa.text("SELECT assignee_id, status FROM conversation WHERE id = :id"), {"id": conversation_id}
            )
        ).one_or_none()
    return row is not None and row.assignee_id == operator_id and row.status == "assigned"


async def _messages_until(socket: Any, content: str, seconds: float = 10) -> list[dict[str, Any]]:
    """The socket's events until the message with ``content``, then whatever else arrives within a second."""
    events: list[dict[str, Any]] = []
    async with asyncio.timeout(seconds):
        while not any(e["type"] == "message" and e["data"]["content"] == content for e in events):
            events.append(json.loads(await socket.recv()))
    try:
        async with asyncio.timeout(1):
            while True:
                events.append(json.loads(await socket.recv()))
    except TimeoutError:
        pass
    return events


async def test_a_whole_conversation_under_the_prefix(shop: Shop, clean_db: AsyncEngine) -> None:
    team = await make_team(clean_db, "Support", is_default=True, routing_policy="round_robin")
    lena = await make_operator(clean_db, "Lena", subject="lena", email="lena@example.test")
    await add_member(clean_db, team, lena, role="lead")  # a lead sees every dashboard page

    # The shop's own routes are its own.
    async with httpx.AsyncClient(base_url=shop.url, timeout=10) as visitor:
        assert (await visitor.get("/")).json() == {"shop": "open"}

    # The operator opens the dashboard and signs in at the identity provider.
    browser = Browser("lena")
    try:
        # Up to the callback's redirect back: the inbox itself has forms the Browser would submit.
        back = await browser.open(f"{shop.url}{PREFIX}/app", until=f"{shop.url}{PREFIX}/app")
        assert back.status_code == 303 and back.headers["location"] == f"{PREFIX}/app", back.text[:300]
        ours = [urlsplit(u) for u in browser.visited if u.startswith(shop.url)]
        assert ours and not _under_prefix([u.path for u in ours]), browser.visited
        ours_cookies = {c.name: c.path for c in browser.http.cookies.jar if c.name.startswith("sb_")}
        assert ours_cookies and set(ours_cookies.values()) <= {PREFIX, f"{PREFIX}/auth"}, ours_cookies
        csrf = next(c.value for c in browser.http.cookies.jar if c.name == "sb_csrf")
        assert csrf
        api = {"X-CSRF-Token": csrf}
        online = await browser.http.put(
            f"{shop.url}{PREFIX}/api/v1/me/presence", json={"status": "online"}, headers=api
        )
        assert online.status_code == 200, online.text

        # A visitor, exactly as the widget talks to its endpoint (here the shop's /support/pocketping).
        async with httpx.AsyncClient(base_url=f"{shop.url}{PREFIX}/pocketping", timeout=10) as widget:
            connect = {"visitorId": "v-1", "sessionId": None, "metadata": {"url": "https://shop.example/cart"}}
            session_id = (await widget.post("/connect", json=connect, headers=WIDGET)).json()["sessionId"]
            async with websockets.connect(f"{shop.ws_url}{PREFIX}/pocketping/stream?sessionId={session_id}") as socket:
                body = {"sessionId": session_id, "content": "Where is my kettle?", "sender": "visitor"}
                sent = await widget.post("/message", json=body, headers=WIDGET)
                assert sent.status_code == 200, sent.text

                # The worker routes it to Lena, the only one online.
                await eventually(lambda: _assigned_to(clean_db, session_id, lena))

                reply = await browser.http.post(
                    f"{shop.url}{PREFIX}/api/v1/conversations/{session_id}/messages",
                    json={"content": "On its way, tomorrow."},
                    headers=api | {"Idempotency-Key": "reply-1"},
                )
                assert reply.status_code == 201, reply.text
                events = await _messages_until(socket, "On its way, tomorrow.")
        replies = [e for e in events if e["type"] == "message" and e["data"]["content"] == "On its way, tomorrow."]
        assert len(replies) == 1
        assert replies[0]["data"]["sender"] == "operator"

        # The shop's own PocketPing bridge heard both sides, on the hub Switchboard runs.
        assert shop.module.order_desk.heard == ["visitor: Where is my kettle?", "Lena: On its way, tomorrow."]

        # Every URL the dashboard's pages name is under the prefix.
        seen: list[str] = []
        pages = ["/app", f"/app/conversations/{session_id}", "/app/canned", "/app/profile", "/app/analytics"]
        for page in [*pages, "/app/teams", f"/app/teams/{team}", f"/app/teams/{team}/simulator"]:
            seen += await _page_urls(browser, f"{shop.url}{PREFIX}{page}")
        assert seen and not _under_prefix(seen), _under_prefix(seen)
        schema = (await browser.http.get(f"{shop.url}{PREFIX}/schema/openapi.json")).json()
        assert schema["servers"] == [{"url": PREFIX}]
        manifest = await browser.http.get(f"{shop.url}{PREFIX}/app/static/manifest.webmanifest")
        assert manifest.status_code == 200
        worker_script = await browser.http.get(f"{shop.url}{PREFIX}/app/sw.js")
        assert worker_script.status_code == 200

        # Signing out goes to the IdP's end-session endpoint, which is to send the browser back under the prefix.
        out = await browser.http.post(f"{shop.url}{PREFIX}/auth/logout", headers=api)
        assert out.status_code == 303
        assert query(out.headers["location"])["post_logout_redirect_uri"] == f"{shop.url}{PREFIX}"
    finally:
        await browser.aclose()


async def test_mounted_but_not_started_is_a_503_naming_the_lifespan(settings: Settings) -> None:
    from fastapi import FastAPI

    from service.embed import asgi

    switchboard = asgi(settings.model_copy(update={"path_prefix": PREFIX}))
    app = FastAPI()  # the lifespan forgotten
    app.mount(PREFIX, switchboard)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://shop") as client:
        response = await client.get(f"{PREFIX}/healthz")
    assert response.status_code == 503
    assert response.headers["content-type"] == "application/problem+json"
    assert "lifespan" in response.json()["detail"]
