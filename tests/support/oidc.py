"""Drive sign-in like a browser: the api, the real oidc-provider-mock, and the redirects between them."""

from __future__ import annotations

import base64
import json
import subprocess
import time
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
from pydantic import AnyHttpUrl

from service.settings import GroupGrant, Settings

CLIENT_ID = "switchboard-test"
GROUP_MAP = {
    "support-leads": GroupGrant(team="Support", role="lead"),
    "support": GroupGrant(team="Support", role="operator"),
    "billing": GroupGrant(team="Billing", role="operator"),
    "ops-admins": GroupGrant(admin=True),
}


def oidc_settings(settings: Settings, issuer: str, **values: Any) -> Settings:
    return settings.model_copy(
        update={
            "oidc_issuer": AnyHttpUrl(issuer),
            "oidc_client_id": CLIENT_ID,
            "oidc_client_secret": "test-client-secret",
            "oidc_group_map": GROUP_MAP,
            **values,
        }
    )


async def set_user(issuer: str, sub: str, **claims: Any) -> None:
    """The IdP's claims for a user (the mock's user API); ``groups`` feeds the team mapping."""
    async with httpx.AsyncClient() as idp:
        response = await idp.put(f"{issuer}/users/{sub}", json={"email": f"{sub}@example.test", **claims})
        assert response.status_code == 204


def query(url: str) -> dict[str, str]:
    return {key: values[0] for key, values in parse_qs(urlsplit(url).query).items()}


async def authorize(authorize_url: str, sub: str) -> dict[str, str]:
    """Submit the IdP's sign-in form as ``sub``; returns the callback's query (code, state)."""
    async with httpx.AsyncClient() as idp:
        response = await idp.post(authorize_url, data={"sub": sub})
    assert response.status_code == 302, response.text
    return query(response.headers["location"])


async def start_login(browser: httpx.AsyncClient, return_to: str | None = None) -> str:
    """``/auth/login``; returns the IdP authorization URL the api redirected to."""
    response = await browser.get("/auth/login", params={"returnTo": return_to} if return_to else None)
    assert response.status_code == 302, response.text
    return response.headers["location"]


async def sign_in(browser: httpx.AsyncClient, sub: str) -> httpx.Response:
    """The whole flow; returns the callback's response (303 on success, the session cookies set)."""
    callback = await authorize(await start_login(browser), sub)
    return await browser.get("/auth/callback", params=callback)


async def idp_tokens(issuer: str, sub: str, client_id: str = CLIENT_ID, nonce: str = "n-1") -> dict[str, Any]:
    """Tokens the IdP issues to ``client_id`` for ``sub``, fetched as a client would (no api involved)."""
    async with httpx.AsyncClient() as idp:
        metadata = (await idp.get(f"{issuer}/.well-known/openid-configuration")).json()
        response = await idp.post(
            metadata["authorization_endpoint"],
            params={
                "client_id": client_id,
                "response_type": "code",
                "scope": "openid email profile",
                "redirect_uri": "http://127.0.0.1/cb",
                "state": "s",
                "nonce": nonce,
            },
            data={"sub": sub},
        )
        code = query(response.headers["location"])["code"]
        token = await idp.post(
            metadata["token_endpoint"],
            data={"grant_type": "authorization_code", "code": code, "redirect_uri": "http://127.0.0.1/cb"},
            auth=(client_id, "secret"),
        )
        assert token.status_code == 200, token.text
        return dict(token.json())


def b64(data: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()


def unverified_parts(token: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """Header and claims of a JWT, read without checking anything (to forge variants of it)."""
    header, payload, _ = token.split(".")

    def load(part: str) -> dict[str, Any]:
        return dict(json.loads(base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))))

    return load(header), load(payload)


def wait_for_issuer(issuer: str, process: subprocess.Popen[bytes], *, name: str, seconds: float) -> None:
    """Return once the provider ``process`` serves its discovery document; raise if it exits or takes too long."""
    deadline = time.monotonic() + seconds
    while True:
        try:
            if httpx.get(f"{issuer}/.well-known/openid-configuration").status_code == 200:
                return
        except httpx.TransportError:
            pass
        if process.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"{name} did not start (exit code {process.poll()})")
        time.sleep(0.05)
