"""SSO rollout fixes (issue 14): admin-only group maps, the exact post-logout URI, groups scope, the failure page."""

from __future__ import annotations

import html
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import httpx
import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from service.settings import GroupGrant, Settings
from tests.conftest import RunningApi, run_api
from tests.factories import make_operator
from tests.support.oidc import authorize, oidc_settings, query, set_user, sign_in, start_login

HTML = {"Accept": "text/html,application/xhtml+xml"}


@pytest.fixture
async def admin_only_api(settings: Settings, oidc_issuer: str) -> AsyncIterator[RunningApi]:
    admin_only = oidc_settings(settings, oidc_issuer, oidc_group_map={"ops-admins": GroupGrant(admin=True)})
    async with run_api(admin_only) as running:
        yield running


async def test_a_group_map_with_only_admin_grants_signs_people_in(
    admin_only_api: RunningApi, oidc_issuer: str, clean_db: AsyncEngine
) -> None:
    await set_user(oidc_issuer, "root", groups=["ops-admins"])
    await set_user(oidc_issuer, "plain", groups=["elsewhere"])
    async with admin_only_api.client() as root, admin_only_api.client() as plain:
        assert (await sign_in(root, "root")).status_code == 303
        assert (await sign_in(plain, "plain")).status_code == 303
    async with clean_db.connect() as conn:
        admins = dict((await conn.execute(sa.text("SELECT subject, is_admin FROM operator"))).all())
        teams = (await conn.execute(sa.text("SELECT count(*) FROM team"))).scalar_one()
    assert admins == {"root": True, "plain": False}
    assert teams == 0


async def test_logout_sends_the_registered_post_logout_uri_exactly(settings: Settings, oidc_issuer: str) -> None:
    plain = oidc_settings(settings, oidc_issuer)
    chosen = oidc_settings(settings, oidc_issuer, oidc_post_logout_redirect_uri="https://sb.example.test/bye")
    sent = []
    for configured in (plain, chosen):
        async with run_api(configured) as running, running.client() as browser:
            await sign_in(browser, "ivan")
            logout = await browser.post("/auth/logout", headers={"X-CSRF-Token": browser.cookies["sb_csrf"]})
            assert logout.status_code == 303
            sent.append(query(logout.headers["location"])["post_logout_redirect_uri"])
    assert sent == ["http://127.0.0.1:8000", "https://sb.example.test/bye"]


async def test_after_sign_out_the_dashboard_does_not_sign_back_in_silently(
    settings: Settings, oidc_issuer: str
) -> None:
    async with run_api(oidc_settings(settings, oidc_issuer)) as running, running.client() as browser:
        await sign_in(browser, "judy")
        await browser.post("/auth/logout", headers={"X-CSRF-Token": browser.cookies["sb_csrf"]})

        page = await browser.get("/app", headers=HTML)
        assert page.status_code == 200
        assert "You signed out" in page.text
        assert 'href="/auth/login?returnTo=/app"' in page.text

        # Signing in again clears the marker: later expiries go to sign-in as before.
        assert (await sign_in(browser, "judy")).status_code == 303
        assert "sb_signed_out" not in browser.cookies
        browser.cookies.delete("sb_session")
        again = await browser.get("/app", headers=HTML)
        assert (again.status_code, again.headers["location"]) == (303, "/auth/login?returnTo=/app")


async def test_groups_scope_is_asked_for_when_the_group_map_is_not_empty(settings: Settings, oidc_issuer: str) -> None:
    scopes = []
    for configured in (
        oidc_settings(settings, oidc_issuer),
        oidc_settings(settings, oidc_issuer, oidc_group_map={}),
        oidc_settings(settings, oidc_issuer, oidc_scopes="openid groups email"),
    ):
        async with run_api(configured) as running, running.client() as browser:
            scopes.append(query(await start_login(browser))["scope"])
    assert scopes == ["openid email profile groups", "openid email profile", "openid groups email"]


async def test_the_sign_in_page_says_why_a_sign_in_failed(
    settings: Settings, oidc_issuer: str, clean_db: AsyncEngine
) -> None:
    await make_operator(clean_db, "Gone", subject="gone", deactivated_at=datetime.now(UTC))
    await set_user(oidc_issuer, "nobody", groups=["unmapped"])
    strict = oidc_settings(settings, oidc_issuer, oidc_require_mapped_group=True)
    async with run_api(strict) as running, running.client() as browser:
        pages = {}
        callback = await authorize(await start_login(browser), "mallory")
        pages["state"] = await browser.get("/auth/callback", params={**callback, "state": "forged"}, headers=HTML)
        await start_login(browser)
        pages["idp"] = await browser.get(
            "/auth/callback", params={"error": "access_denied", "state": "x"}, headers=HTML
        )
        pages["deactivated"] = await _callback(browser, "gone")
        pages["no group"] = await _callback(browser, "nobody")
        api_client = await _callback(browser, "nobody", headers={"Accept": "application/json"})

    expected = {
        "state": (400, "the state does not match this browser's sign-in"),
        "idp": (400, "the identity provider answered 'access_denied'"),
        "deactivated": (403, "this operator has been deactivated"),
        "no group": (403, "none of your identity provider groups is mapped to Switchboard"),
    }
    for name, (status, reason) in expected.items():
        page = pages[name]
        assert page.status_code == status, name
        assert page.headers["content-type"].startswith("text/html"), name
        assert f"Sign-in failed: {reason}." in html.unescape(page.text), name
        assert 'href="/auth/login?returnTo=/app"' in page.text, name
    assert api_client.status_code == 403
    assert api_client.json()["detail"] == (
        "Sign-in failed: none of your identity provider groups is mapped to Switchboard"
    )
    assert "sb_session" not in browser.cookies


async def _callback(browser: httpx.AsyncClient, sub: str, headers: dict[str, str] = HTML) -> httpx.Response:
    return await browser.get("/auth/callback", params=await authorize(await start_login(browser), sub), headers=headers)
