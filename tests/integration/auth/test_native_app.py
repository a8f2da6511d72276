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
from tests.support.idp import IDP_CLIENT_SECRET, NativeApp, idp_tokens, pkce_pair, real_provider
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
            await conn.execute(
                sa.text("SELECT id, display_name, is_admin FROM operator WHERE subject = :s"), {"s": subject}
            )
        ).one()
        teams = await conn.execute(
            sa.text(
                "SELECT t.name, m.role FROM team_member m JOIN team t ON t.id = m.team_id WHERE m.operator_id = :i"
            ),
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


def invalid_token(reason: str) -> str:
    return f'Bearer realm="switchboard", error="invalid_token", error_description="{reason}"'


async def test_a_reused_refresh_token_revokes_the_whole_sign_in(app: NativeApp) -> None:
    first = await app.sign_in("omar")
    second = await app.token(grant_type="refresh_token", refresh_token=first["refresh_token"])

    # The rotated refresh token comes back (stolen, or replayed): refused, and the whole family is revoked.
    reuse = await app.token_response(grant_type="refresh_token", refresh_token=first["refresh_token"])
    assert reuse.status_code == 400
    assert reuse.json()["error"] == "invalid_grant"
    assert reuse.json()["error_description"] == (
        "reused: this refresh token was already used, so every token of this sign-in is now revoked"
    )
    reason = "revoked: a refresh token of this sign-in was used twice, so the whole sign-in was revoked"
    for access_token in (first["access_token"], second["access_token"]):
        assert refusal(await app.get("/api/v1/me", access_token)) == (
            401,
            f"The bearer token was refused: {reason}",
            invalid_token(reason),
        )
    again = await app.token_response(grant_type="refresh_token", refresh_token=second["refresh_token"])
    assert (again.status_code, again.json()["error"], again.json()["error_description"]) == (
        400,
        "invalid_grant",
        "revoked: this sign-in was revoked; sign in again",
    )


async def test_each_refused_bearer_token_gets_401_with_its_reason(
    app: NativeApp, idp: str, api_port: int, clean_db: AsyncEngine
) -> None:
    tokens = await app.sign_in("nora")
    expiring = await app.sign_in("omar")
    async with clean_db.begin() as conn:
        await conn.execute(
            sa.text(
                "UPDATE oauth_token SET expires_at = '2026-01-01T00:00:00Z' WHERE kind = 'access' AND grant_id = "
                "(SELECT grant_id FROM oauth_token WHERE token_hash = encode(sha256(:t), 'hex'))"
            ),
            {"t": expiring["access_token"].encode()},
        )
    revoke = await app.http.post(
        f"{app.api_url}/oauth/revoke", data={"client_id": APP_ID, "token": tokens["refresh_token"]}
    )
    assert revoke.status_code == 200
    # The IdP's own tokens, issued to another app: an opaque access token and an id_token for another audience.
    other = await idp_tokens(idp, "another-app", "another-secret", "http://127.0.0.1/cb", "nora")
    # A JWT Switchboard accepts (issued for its own client id), for someone who never signed in to Switchboard.
    ghost = await idp_tokens(idp, CLIENT_ID, IDP_CLIENT_SECRET, f"http://127.0.0.1:{api_port}/auth/callback", "ghost")
    malformed = (
        "malformed: not a Switchboard token (sba_, sbp_) nor a JWT; the identity provider's opaque access "
        "tokens are not accepted: sign in through /oauth/authorize"
    )
    cases = {
        "opaque": (other["access_token"], malformed),
        "wrong audience": (
            other["id_token"],
            "wrong audience: the token was rejected: invalid_claim: Invalid claim: 'aud' "
            f"(Switchboard expects '{CLIENT_ID}', OIDC_AUDIENCE)",
        ),
        "expired": (
            expiring["access_token"],
            "expired: the access token expired at 2026-01-01T00:00:00+00:00; refresh it",
        ),
        "revoked": (tokens["access_token"], "revoked: the app signed out (the token was revoked)"),
        "unknown": ("sba_" + "x" * 43, "unknown token: Switchboard did not issue this access token"),
        "unknown user": (
            ghost["id_token"],
            "unknown user: 'ghost' has never signed in to Switchboard (or was deactivated); "
            "sign in once through /oauth/authorize or /auth/login",
        ),
    }
    for name, (token, reason) in cases.items():
        response = await app.get("/api/v1/me", token)
        assert refusal(response) == (401, f"The bearer token was refused: {reason}", invalid_token(reason)), name
    # The revoked sign-in cannot be refreshed either.
    refreshed = await app.token_response(grant_type="refresh_token", refresh_token=tokens["refresh_token"])
    assert (refreshed.status_code, refreshed.json()["error"]) == (400, "invalid_grant")


async def test_a_wrong_pkce_verifier_is_invalid_grant_and_spends_the_code(app: NativeApp) -> None:
    code, redirect_uri, verifier = await app.authorize("omar")
    wrong, _ = pkce_pair()

    response = await app.token_response(
        grant_type="authorization_code", code=code, redirect_uri=redirect_uri, code_verifier=wrong
    )

    assert response.status_code == 400
    assert response.headers["cache-control"] == "no-store"
    body = response.json()
    assert (body["error"], body["error_description"], body["status"]) == (
        "invalid_grant",
        "code_verifier does not match the code_challenge",
        400,
    )
    # A code is good for one attempt: the right verifier now comes too late.
    retry = await app.token_response(
        grant_type="authorization_code", code=code, redirect_uri=redirect_uri, code_verifier=verifier
    )
    assert (retry.status_code, retry.json()["error_description"]) == (
        400,
        "the authorization code is unknown, expired or already used",
    )


def authorize_query(redirect_uri: str, **values: str) -> dict[str, str]:
    _, challenge = pkce_pair()
    return {
        "response_type": "code",
        "client_id": APP_ID,
        "redirect_uri": redirect_uri,
        "code_challenge": challenge,
        "code_challenge_method": "S256",
        "state": "st",
        **values,
    }


@pytest.mark.parametrize(
    "redirect_uri",
    [
        "https://evil.example/callback",
        "http://evil.example:8000/callback",
        "http://localhost:8000/callback",
        "http://127.0.0.1.evil.example/callback",
        "com.other.app:/callback",
        "http://127.0.0.1:8000/callback#fragment",
    ],
)
async def test_a_redirect_uri_that_is_not_loopback_nor_the_apps_scheme_is_refused(
    native_api: RunningApi, redirect_uri: str
) -> None:
    async with native_api.client() as http:
        response = await http.get("/oauth/authorize", params=authorize_query(redirect_uri))
    assert response.status_code == 400
    assert response.json()["errors"] == [
        {
            "field": "redirect_uri",
            "message": "redirect_uri must be a loopback http://127.0.0.1:<port>/... (or [::1]) URI or use a scheme "
            "in NATIVE_REDIRECT_SCHEMES, without a fragment",
        }
    ]


@pytest.mark.parametrize(
    "redirect_uri",
    ["http://127.0.0.1:49152/callback", "http://[::1]:8123/cb", "http://127.0.0.1/cb", f"{APP_SCHEME}:/oauth"],
)
async def test_loopback_on_any_port_and_the_apps_scheme_go_on_to_the_identity_provider(
    native_api: RunningApi, idp: str, redirect_uri: str
) -> None:
    async with native_api.client() as http:
        response = await http.get("/oauth/authorize", params=authorize_query(redirect_uri))
    assert response.status_code == 302
    assert response.headers["location"].startswith(f"{idp}/auth?")
    assert query(response.headers["location"])["client_id"] == CLIENT_ID


async def test_other_authorize_mistakes_go_back_to_the_app_and_unknown_clients_do_not(native_api: RunningApi) -> None:
    async with native_api.client() as http:
        no_pkce = await http.get(
            "/oauth/authorize", params=authorize_query("http://127.0.0.1:9/cb", code_challenge_method="plain")
        )
        unknown = await http.get("/oauth/authorize", params=authorize_query("http://127.0.0.1:9/cb", client_id="evil"))
        bad_scope = await http.get("/oauth/authorize", params=authorize_query("http://127.0.0.1:9/cb", scope="root"))
    assert no_pkce.status_code == 302
    assert no_pkce.headers["location"] == "http://127.0.0.1:9/cb?" + urlencode(
        {
            "error": "invalid_request",
            "error_description": "PKCE is required: code_challenge (S256 of the verifier) with "
            "code_challenge_method=S256",
            "state": "st",
        }
    )
    assert query(bad_scope.headers["location"])["error"] == "invalid_scope"
    assert unknown.status_code == 400
    assert unknown.json()["errors"] == [{"field": "client_id", "message": "client_id is not a registered native app"}]


async def test_token_endpoint_refusals(app: NativeApp) -> None:
    unsupported = await app.token_response(grant_type="password", username="a", password="b")
    wrong_client = await app.http.post(
        f"{app.api_url}/oauth/token", data={"grant_type": "refresh_token", "client_id": "evil", "refresh_token": "x"}
    )
    missing = await app.token_response(grant_type="authorization_code")
    as_json = await app.http.post(f"{app.api_url}/oauth/token", json={"grant_type": "refresh_token"})
    assert [(r.status_code, r.json()["error"]) for r in (unsupported, wrong_client, missing, as_json)] == [
        (400, "unsupported_grant_type"),
        (400, "invalid_client"),
        (400, "invalid_request"),
        (400, "unsupported_grant_type"),
    ]


async def test_metadata_names_the_endpoints(app: NativeApp) -> None:
    assert await app.metadata() == {
        "issuer": app.api_url,
        "authorization_endpoint": f"{app.api_url}/oauth/authorize",
        "token_endpoint": f"{app.api_url}/oauth/token",
        "revocation_endpoint": f"{app.api_url}/oauth/revoke",
        "response_types_supported": ["code"],
        "response_modes_supported": ["query"],
        "grant_types_supported": ["authorization_code", "refresh_token"],
        "code_challenge_methods_supported": ["S256"],
        "token_endpoint_auth_methods_supported": ["none"],
        "revocation_endpoint_auth_methods_supported": ["none"],
        "scopes_supported": ["read", "write", "admin"],
        "service_documentation": f"{app.api_url}/schema",
    }


async def test_a_read_only_sign_in_cannot_write(native_api: RunningApi) -> None:
    """An app may ask for fewer scopes; its tokens then act like a personal access token with those scopes."""
    reader = NativeApp(native_api.url, APP_ID, scope="read")
    try:
        tokens = await reader.sign_in("omar")
        assert tokens["scope"] == "read"
        assert (await reader.get("/api/v1/me", tokens["access_token"])).status_code == 200
        write = await reader.http.post(
            f"{native_api.url}/api/v1/me/tokens",
            json={"name": "x"},
            headers={"Authorization": f"Bearer {tokens['access_token']}"},
        )
        assert (write.status_code, write.json()["detail"]) == (403, "This token lacks the 'write' scope")
    finally:
        await reader.aclose()
