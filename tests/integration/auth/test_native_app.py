"""Native-app sign-in (RFC 8252 + PKCE) against a real certified OpenID provider (panva/oidc-provider on Node).

The app is a public client with a loopback redirect: a real listening socket receives the code; the
browser fills in the IdP's sign-in and consent forms. Switchboard is the app's authorization server.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import Any
from urllib.parse import urlencode

import httpx
import pytest
import sqlalchemy as sa
from pydantic import AnyHttpUrl
from sqlalchemy.ext.asyncio import AsyncEngine

from service.dev import free_port
from service.settings import Settings
from tests.conftest import RunningApi, run_api
from tests.support.idp import IDP_CLIENT_SECRET, Browser, NativeApp, pkce_pair, real_provider
from tests.support.oidc import CLIENT_ID, oidc_settings, query

APP_ID = "switchboard-mobile"
APP_SCHEME = "io.switchboard.app"
ACCOUNTS = {
    "nora": {"name": "Nora Native", "groups": ["support-leads", "billing", "unmapped"]},
    "omar": {"name": "Omar", "groups": ["support"]},
}


@pytest.fixture(scope="module")
def api_port() -> int:
    """The api's port, known before it starts: the IdP must have its callback URL registered."""
    return free_port()


@pytest.fixture(scope="module")
def idp(api_port: int) -> Iterator[str]:
    clients = [
        {
            "client_id": CLIENT_ID,
            "client_secret": IDP_CLIENT_SECRET,
            "redirect_uris": [f"http://127.0.0.1:{api_port}/auth/callback"],
        },
        # Another app registered at the same IdP: its tokens are not for Switchboard.
        {"client_id": "another-app", "client_secret": "another-secret", "redirect_uris": ["http://127.0.0.1/cb"]},
    ]
    with real_provider(clients, ACCOUNTS) as issuer:
        yield issuer


@pytest.fixture
def native_settings(settings: Settings, idp: str, api_port: int) -> Settings:
    return oidc_settings(
        settings,
        idp,
        public_url=AnyHttpUrl(f"http://127.0.0.1:{api_port}"),
        oidc_scopes="openid email profile groups",
        native_client_ids=[APP_ID],
        native_redirect_schemes=[APP_SCHEME],
    )


@pytest.fixture
async def native_api(native_settings: Settings, api_port: int) -> AsyncIterator[RunningApi]:
    async with run_api(native_settings, port=api_port) as running:
        yield running


@pytest.fixture
async def app(native_api: RunningApi) -> AsyncIterator[NativeApp]:
    native = NativeApp(native_api.url, APP_ID)
    yield native
    await native.aclose()


def refusal(response: httpx.Response) -> tuple[int, str, str]:
    """(status, problem detail, WWW-Authenticate) of a refused bearer request."""
    return response.status_code, response.json()["detail"], response.headers.get("www-authenticate", "")


async def operator_row(engine: AsyncEngine, subject: str) -> dict[str, Any]:
    async with engine.connect() as conn:
        operator = (
            await conn.execute(sa.text("SELECT id, display_name, is_admin FROM operator WHERE subject = :s"), {"s": subject})
        ).one()
        teams = await conn.execute(
            sa.text("SELECT t.name, m.role FROM team_member m JOIN team t ON t.id = m.team_id WHERE m.operator_id = :i"),
            {"i": operator.id},
        )
        return {"name": operator.display_name, "teams": dict(teams.all())}


async def test_the_whole_flow_provisions_a_first_time_user_with_groups_and_refreshes(
    app: NativeApp, clean_db: AsyncEngine
) -> None:
    tokens = await app.sign_in("nora")

    assert tokens["token_type"] == "Bearer"
    assert tokens["expires_in"] == 900
    assert tokens["scope"] == "admin read write"
    assert tokens["access_token"].startswith("sba_") and tokens["refresh_token"].startswith("sbr_")
    # Never signed in through the browser: the first sign-in from the app created her, with her groups' teams.
    assert await operator_row(clean_db, "nora") == {
        "name": "Nora Native",
        "teams": {"Support": "lead", "Billing": "operator"},
    }
    me = await app.get("/api/v1/me", tokens["access_token"])
    assert me.status_code == 200, me.text
    assert me.json()["displayName"] == "Nora Native"

    refreshed = await app.token(grant_type="refresh_token", refresh_token=tokens["refresh_token"])
    assert refreshed["refresh_token"] != tokens["refresh_token"]
    assert refreshed["access_token"] != tokens["access_token"]
    assert (await app.get("/api/v1/me", refreshed["access_token"])).status_code == 200
