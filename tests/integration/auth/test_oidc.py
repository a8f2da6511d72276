"""Sign-in through a real OIDC provider process (oidc-provider-mock on loopback), sessions, CSRF and bearer JWTs."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from joserfc import jwt
from joserfc.jwk import RSAKey
from sqlalchemy.ext.asyncio import AsyncEngine

from service.auth.oidc import OidcClient, OidcError
from service.settings import Settings
from tests.conftest import RunningApi, run_api
from tests.factories import add_member, make_operator, make_team
from tests.support.oidc import (
    CLIENT_ID,
    authorize,
    b64,
    idp_tokens,
    oidc_settings,
    query,
    set_user,
    sign_in,
    start_login,
    unverified_parts,
)


@pytest.fixture
async def auth_settings(settings: Settings, oidc_issuer: str) -> Settings:
    return oidc_settings(settings, oidc_issuer)


@pytest.fixture
async def auth_api(auth_settings: Settings) -> AsyncIterator[RunningApi]:
    async with run_api(auth_settings) as running:
        yield running


@pytest.fixture
async def browser(auth_api: RunningApi) -> AsyncIterator[httpx.AsyncClient]:
    async with auth_api.client() as client:
        yield client


async def memberships(engine: AsyncEngine, subject: str) -> dict[str, Any]:
    async with engine.connect() as conn:
        operator = (
            await conn.execute(
                sa.text("SELECT id, display_name, email, is_admin FROM operator WHERE subject = :s"), {"s": subject}
            )
        ).one()
        teams = await conn.execute(
            sa.text(
                "SELECT t.name, m.role FROM team_member m JOIN team t ON t.id = m.team_id WHERE m.operator_id = :id"
            ),
            {"id": operator.id},
        )
        return {"name": operator.display_name, "email": operator.email, "admin": operator.is_admin} | {
            "teams": dict(teams.all())
        }


async def test_sign_in_creates_the_operator_with_mapped_teams_and_a_session(
    browser: httpx.AsyncClient, oidc_issuer: str, clean_db: AsyncEngine
) -> None:
    await set_user(oidc_issuer, "alice", name="Alice Liddell", groups=["support-leads", "billing", "unmapped"])

    authorize_url = await start_login(browser, return_to="/inbox")
    assert authorize_url.startswith(f"{oidc_issuer}/oauth2/authorize?")
    params = query(authorize_url)
    assert params["client_id"] == CLIENT_ID
    assert params["response_type"] == "code"
    assert params["code_challenge_method"] == "S256"
    assert len(params["code_challenge"]) == 43  # base64url SHA-256, not the verifier itself
    assert params["state"] and params["nonce"] and params["scope"] == "openid email profile groups"
    assert browser.cookies.get("sb_login")  # the sign-in attempt is bound to this browser

    response = await browser.get("/auth/callback", params=await authorize(authorize_url, "alice"))

    assert response.status_code == 303, response.text
    assert response.headers["location"] == "/inbox"
    set_cookies = response.headers.get_list("set-cookie")
    session_cookie = next(c for c in set_cookies if c.startswith("sb_session="))
    assert "HttpOnly" in session_cookie and "SameSite=lax" in session_cookie and "Secure" not in session_cookie
    csrf_cookie = next(c for c in set_cookies if c.startswith("sb_csrf="))
    assert "HttpOnly" not in csrf_cookie
    assert await memberships(clean_db, "alice") == {
        "name": "Alice Liddell",
        "email": "alice@example.test",
        "admin": False,
        "teams": {"Support": "lead", "Billing": "operator"},
    }
    me = await browser.get("/api/v1/me")
    assert me.status_code == 200
    assert me.json()["displayName"] == "Alice Liddell"
    assert sorted(team["role"] for team in me.json()["teams"]) == ["lead", "operator"]


async def test_groups_are_applied_again_at_every_sign_in(
    browser: httpx.AsyncClient, oidc_issuer: str, clean_db: AsyncEngine
) -> None:
    await set_user(oidc_issuer, "bob", name="Bob", groups=["support", "ops-admins"])
    assert (await sign_in(browser, "bob")).status_code == 303
    bob = await memberships(clean_db, "bob")
    assert (bob["admin"], bob["teams"]) == (True, {"Support": "operator"})
    # A team no group maps to is Switchboard's own business: the IdP must not remove it.
    local_team = await make_team(clean_db, "Local")
    await add_member(clean_db, local_team, (await _operator_id(clean_db, "bob")), role="lead")

    await set_user(oidc_issuer, "bob", name="Robert", groups=["billing"])
    assert (await sign_in(browser, "bob")).status_code == 303

    assert await memberships(clean_db, "bob") == {
        "name": "Robert",
        "email": "bob@example.test",
        "admin": False,
        "teams": {"Billing": "operator", "Local": "lead"},
    }


async def _operator_id(engine: AsyncEngine, subject: str) -> Any:
    async with engine.connect() as conn:
        return (await conn.execute(sa.text("SELECT id FROM operator WHERE subject = :s"), {"s": subject})).scalar_one()


async def test_wrong_state_is_refused_and_the_attempt_is_spent(
    browser: httpx.AsyncClient, oidc_issuer: str, clean_db: AsyncEngine
) -> None:
    callback = await authorize(await start_login(browser), "mallory")

    wrong = await browser.get("/auth/callback", params={**callback, "state": "forged-state"})
    right_but_late = await browser.get("/auth/callback", params=callback)

    assert wrong.status_code == 400
    assert wrong.json()["detail"] == "Sign-in failed: the state does not match this browser's sign-in"
    assert right_but_late.status_code == 400
    assert right_but_late.json()["detail"] == ("Sign-in failed: no sign-in was started in this browser, or it expired")
    assert "sb_session" not in browser.cookies


async def test_callback_in_another_browser_is_refused(
    browser: httpx.AsyncClient, auth_api: RunningApi, oidc_issuer: str
) -> None:
    callback = await authorize(await start_login(browser), "mallory")
    async with auth_api.client() as victim:
        response = await victim.get("/auth/callback", params=callback)
    assert response.status_code == 400
    assert response.json()["detail"] == "Sign-in failed: no sign-in was started in this browser, or it expired"


async def test_replayed_code_is_refused(browser: httpx.AsyncClient, oidc_issuer: str) -> None:
    callback = await authorize(await start_login(browser), "alice")
    assert (await browser.get("/auth/callback", params=callback)).status_code == 303

    # Replayed with a fresh sign-in attempt's state, so only the IdP's one-use code check can stop it.
    fresh_state = query(await start_login(browser))["state"]
    replay = await browser.get("/auth/callback", params={"code": callback["code"], "state": fresh_state})

    assert replay.status_code == 400
    assert replay.json()["detail"].startswith("Sign-in failed: the identity provider refused the code: invalid_grant")


async def test_id_token_with_another_nonce_is_refused(browser: httpx.AsyncClient, oidc_issuer: str) -> None:
    authorize_url = await start_login(browser)
    # The IdP is asked for a nonce this browser's session does not hold, as an injected response would carry.
    tampered = authorize_url.replace(f"nonce={query(authorize_url)['nonce']}", "nonce=attacker-nonce")

    response = await browser.get("/auth/callback", params=await authorize(tampered, "alice"))

    assert response.status_code == 400
    assert response.json()["detail"] == "Sign-in failed: the token was rejected: invalid_claim: Invalid claim: 'nonce'"
    assert "sb_session" not in browser.cookies


async def test_session_cookie_needs_csrf_token_on_unsafe_methods_and_logout_ends_it(
    browser: httpx.AsyncClient, oidc_issuer: str
) -> None:
    await sign_in(browser, "carol")
    csrf = browser.cookies["sb_csrf"]

    without = await browser.post("/api/v1/me/tokens", json={"name": "laptop"})
    wrong = await browser.post("/api/v1/me/tokens", json={"name": "laptop"}, headers={"X-CSRF-Token": "nope"})
    right = await browser.post("/api/v1/me/tokens", json={"name": "laptop"}, headers={"X-CSRF-Token": csrf})

    assert (without.status_code, wrong.status_code, right.status_code) == (403, 403, 201)
    assert without.json()["detail"] == "Send the session's CSRF token in the X-CSRF-Token header"
    assert (await browser.get("/api/v1/me")).status_code == 200  # safe methods need no token

    refused = await browser.post("/auth/logout")
    assert refused.status_code == 403
    logout = await browser.post("/auth/logout", headers={"X-CSRF-Token": csrf})
    assert logout.status_code == 303
    assert logout.headers["location"].startswith(f"{oidc_issuer}/oauth2/end_session?id_token_hint=")
    assert (await browser.get("/api/v1/me")).status_code == 401


async def test_session_cookie_is_secure_under_https(settings: Settings, oidc_issuer: str) -> None:
    from pydantic import AnyHttpUrl

    secure = oidc_settings(settings, oidc_issuer, public_url=AnyHttpUrl("https://switchboard.example.test"))
    async with run_api(secure) as running, running.client() as client:
        login = await client.get("/auth/login")
    assert login.status_code == 302
    assert "Secure" in login.headers["set-cookie"] and "HttpOnly" in login.headers["set-cookie"]
    assert query(login.headers["location"])["redirect_uri"] == "https://switchboard.example.test/auth/callback"


async def test_bearer_jwt_from_the_idp_identifies_a_signed_in_operator(
    browser: httpx.AsyncClient, oidc_issuer: str
) -> None:
    await sign_in(browser, "dave")
    token = (await idp_tokens(oidc_issuer, "dave"))["id_token"]
    stranger = (await idp_tokens(oidc_issuer, "never-signed-in"))["id_token"]

    async with httpx.AsyncClient(base_url=str(browser.base_url)) as program:
        me = await program.get("/api/v1/me", headers={"Authorization": f"Bearer {token}"})
        # A bearer request is exempt from CSRF: no cookie is consulted.
        created = await program.post(
            "/api/v1/me/tokens", json={"name": "ci"}, headers={"Authorization": f"Bearer {token}"}
        )
        unknown = await program.get("/api/v1/me", headers={"Authorization": f"Bearer {stranger}"})

    assert me.status_code == 200 and me.json()["displayName"] == "dave"
    assert created.status_code == 201
    assert unknown.status_code == 401


def forged(token: str, *, alg: str = "RS256", **changes: Any) -> str:
    """The IdP token's claims (with changes) under the IdP's key id, signed by a key the IdP never had."""
    header, claims = unverified_parts(token)
    claims.update(changes)
    if alg == "none":
        return f"{b64(header | {'alg': 'none'})}.{b64(claims)}."
    return jwt.encode(header | {"alg": alg}, claims, RSAKey.generate_key(2048))


async def test_forged_expired_and_misdirected_tokens_are_refused_by_the_callback_check_and_bearer_path(
    auth_settings: Settings, browser: httpx.AsyncClient, oidc_issuer: str, expired_issuer: str
) -> None:
    await sign_in(browser, "erin")
    good = (await idp_tokens(oidc_issuer, "erin", nonce="n-1"))["id_token"]
    other_audience = (await idp_tokens(oidc_issuer, "erin", client_id="another-app", nonce="n-1"))["id_token"]
    expired = (await idp_tokens(expired_issuer, "erin", nonce="n-1"))["id_token"]
    cases = {
        "re-signed": (forged(good), "bad_signature"),
        "alg none": (forged(good, alg="none"), "unsupported_algorithm"),
        "HS256 with the public key as secret": (_hs256(good), "unsupported_algorithm"),
        "wrong audience": (other_audience, "invalid_claim: Invalid claim: 'aud'"),
        "expired (real provider, max age -1 h)": (expired, "expired_token"),
        "another sub": (forged(good, sub="admin"), "bad_signature"),
    }
    expired_oidc = OidcClient(oidc_settings(auth_settings, expired_issuer))
    oidc = OidcClient(auth_settings)
    try:
        assert (await oidc.verify(good, nonce="n-1"))["sub"] == "erin"
        for name, (token, reason) in cases.items():
            verifier = expired_oidc if "expired" in name else oidc
            with pytest.raises(OidcError) as caught:
                await verifier.verify(token, nonce="n-1")
            assert reason in str(caught.value), name
            # The same check guards the bearer path.
            response = await browser.get("/api/v1/me", headers={"Authorization": f"Bearer {token}"})
            assert response.status_code == 401, name
    finally:
        await oidc.aclose()
        await expired_oidc.aclose()


def _hs256(token: str) -> str:
    """HMAC-signed with the issuer's public key as the secret (the classic algorithm-confusion attack)."""
    header, claims = unverified_parts(token)
    return f"{b64(header | {'alg': 'HS256'})}.{b64(claims)}.c2lnbmF0dXJl"


async def test_unknown_key_id_refetches_the_jwks_once(auth_settings: Settings, oidc_issuer: str) -> None:
    oidc = OidcClient(auth_settings)
    try:
        good = (await idp_tokens(oidc_issuer, "frank"))["id_token"]
        await oidc.verify(good, nonce="n-1")
        fetched_at = oidc._keys_at
        _, claims = unverified_parts(good)
        rotated = jwt.encode({"alg": "RS256", "kid": "rotated-key"}, claims, RSAKey.generate_key(2048))
        oidc._keys_at -= 60  # as if the last fetch was a minute ago

        with pytest.raises(OidcError):
            await oidc.verify(rotated, nonce="n-1")

        assert oidc._keys_at > fetched_at
    finally:
        await oidc.aclose()


async def test_sign_in_without_a_configured_issuer_is_503(http: httpx.AsyncClient) -> None:
    response = await http.get("/auth/login")
    assert response.status_code == 503
    assert response.json()["detail"] == "Sign-in is not configured: set OIDC_ISSUER and OIDC_CLIENT_ID"


async def test_deactivated_operator_cannot_sign_in(
    browser: httpx.AsyncClient, oidc_issuer: str, clean_db: AsyncEngine
) -> None:
    from datetime import UTC, datetime

    await make_operator(clean_db, "Gone", subject="gone", deactivated_at=datetime.now(UTC))
    response = await sign_in(browser, "gone")
    assert response.status_code == 403
    assert "sb_session" not in browser.cookies


async def test_return_to_stays_on_this_site_and_a_form_can_sign_out(browser: httpx.AsyncClient) -> None:
    callback = await authorize(await start_login(browser, return_to="//evil.example/steal"), "heidi")
    response = await browser.get("/auth/callback", params=callback)
    assert (response.status_code, response.headers["location"]) == (303, "/")

    logout = await browser.post("/auth/logout", data={"csrfToken": browser.cookies["sb_csrf"]})

    assert logout.status_code == 303
    assert (await browser.get("/api/v1/me")).status_code == 401
