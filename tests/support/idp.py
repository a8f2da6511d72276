"""A real certified OpenID provider (panva/oidc-provider on Node), a browser that signs in at it by filling its
forms, and a native app (public client, PKCE, loopback redirect) as RFC 8252 describes one."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import secrets
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlencode, urljoin, urlsplit

import httpx

from service.dev import free_port
from tests.support.oidc import wait_for_issuer

IDP_DIR = Path(__file__).parent / "idp"
IDP_CLIENT_SECRET = "test-client-secret"


def install_provider() -> None:
    """``npm ci`` from the committed lock file, once (node_modules is not committed)."""
    if (IDP_DIR / "node_modules" / "oidc-provider").is_dir():
        return
    npm = shutil.which("npm")
    if npm is None:
        raise RuntimeError("npm is needed for the test identity provider (Node 20+)")
    subprocess.run([npm, "ci", "--no-audit", "--no-fund"], cwd=IDP_DIR, check=True, capture_output=True)


@contextmanager
def real_provider(clients: list[dict[str, Any]], accounts: dict[str, dict[str, Any]]) -> Iterator[str]:
    """Run tests/support/idp/provider.js on a loopback port with these clients and accounts; yields its issuer."""
    install_provider()
    port = free_port()
    with tempfile.NamedTemporaryFile("w", suffix=".json") as config:
        json.dump({"clients": clients, "accounts": accounts}, config)
        config.flush()
        process = subprocess.Popen(
            ["node", str(IDP_DIR / "provider.js"), str(port), config.name],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            issuer = f"http://127.0.0.1:{port}"
            wait_for_issuer(issuer, process, name="oidc-provider", seconds=30)
            yield issuer
        finally:
            process.terminate()
            process.wait(timeout=10)


@dataclass
class Form:
    action: str
    method: str
    fields: dict[str, str] = field(default_factory=dict)


class _Forms(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.forms: list[Form] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = {name: value or "" for name, value in attrs}
        if tag == "form":
            self.forms.append(Form(values.get("action", ""), values.get("method", "get").lower()))
        elif tag == "input" and self.forms and values.get("name"):
            self.forms[-1].fields[values["name"]] = values.get("value", "")


def forms_of(html: str) -> list[Form]:
    parser = _Forms()
    parser.feed(html)
    return parser.forms


class Browser:
    """The system browser: follows redirects and, at the IdP, fills the sign-in form as ``login`` and consents."""

    def __init__(self, login: str) -> None:
        self.login = login
        self.http = httpx.AsyncClient(timeout=10, follow_redirects=False)
        self.visited: list[str] = []

    async def aclose(self) -> None:
        await self.http.aclose()

    async def open(self, url: str, until: str | None = None) -> httpx.Response:
        """Visit ``url`` and go where it leads; returns the first page without a form (or an error page),
        or the redirect to a URL starting with ``until``."""
        response = await self.http.get(url)
        for _ in range(20):
            self.visited.append(str(response.url))
            if response.is_redirect:
                location = urljoin(str(response.url), response.headers["location"])
                if until is not None and location.startswith(until):
                    return response
                response = await self.http.get(location)
                continue
            forms = forms_of(response.text) if response.status_code == 200 else []
            if not forms:
                return response
            form = forms[0]
            data = dict(form.fields)
            if "login" in data:  # the IdP's sign-in form: any password will do at this provider
                data |= {"login": self.login, "password": "any-password"}
            response = await self.http.post(urljoin(str(response.url), form.action), data=data)
        raise AssertionError(f"too many steps: {self.visited}")


class Loopback:
    """The app's loopback redirect listener (RFC 8252 section 7.3): a real socket on 127.0.0.1, any port."""

    def __init__(self) -> None:
        self.received: asyncio.Future[dict[str, str]] = asyncio.get_running_loop().create_future()
        self.server: asyncio.Server | None = None
        self.redirect_uri = ""

    async def __aenter__(self) -> Loopback:
        self.server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        port = self.server.sockets[0].getsockname()[1]
        self.redirect_uri = f"http://127.0.0.1:{port}/oauth/callback"
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self.server is not None
        self.server.close()
        await self.server.wait_closed()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        request_line = (await reader.readline()).decode()
        while (await reader.readline()) not in (b"\r\n", b""):
            pass
        target = request_line.split(" ")[1]
        query = {key: values[0] for key, values in parse_qs(urlsplit(target).query).items()}
        if not self.received.done():
            self.received.set_result(query)
        body = b"Signed in. You can return to the app."
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))
        await writer.drain()
        writer.close()


def pkce_pair() -> tuple[str, str]:
    verifier = secrets.token_urlsafe(48)  # 64 characters of the unreserved set
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
    return verifier, challenge


@dataclass
class NativeApp:
    """A public client of Switchboard's authorization server, as a phone or desktop app would be."""

    api_url: str
    client_id: str
    scope: str | None = None
    http: httpx.AsyncClient = field(default_factory=lambda: httpx.AsyncClient(timeout=10))

    async def aclose(self) -> None:
        await self.http.aclose()

    async def metadata(self) -> dict[str, Any]:
        response = await self.http.get(f"{self.api_url}/.well-known/oauth-authorization-server")
        assert response.status_code == 200, response.text
        return dict(response.json())

    async def sign_in(self, login: str) -> dict[str, Any]:
        """The whole RFC 8252 flow; returns the token response."""
        code, redirect_uri, verifier = await self.authorize(login)
        return await self.token(
            grant_type="authorization_code", code=code, redirect_uri=redirect_uri, code_verifier=verifier
        )

    async def authorize(self, login: str) -> tuple[str, str, str]:
        """Open the system browser at the authorization endpoint; the loopback socket receives the code.

        Returns (code, redirect_uri, PKCE verifier), ready for the token request.
        """
        metadata = await self.metadata()
        verifier, challenge = pkce_pair()
        state = secrets.token_urlsafe(16)
        async with Loopback() as loopback:
            query = {
                "response_type": "code",
                "client_id": self.client_id,
                "redirect_uri": loopback.redirect_uri,
                "code_challenge": challenge,
                "code_challenge_method": "S256",
                "state": state,
                **({"scope": self.scope} if self.scope else {}),
            }
            browser = Browser(login)
            try:
                page = await browser.open(f"{metadata['authorization_endpoint']}?{urlencode(query)}")
            finally:
                await browser.aclose()
            assert page.text == "Signed in. You can return to the app.", (page.status_code, page.text)
            received = await asyncio.wait_for(loopback.received, 10)
        assert received["state"] == state
        return received["code"], loopback.redirect_uri, verifier

    async def token(self, **form: str) -> dict[str, Any]:
        response = await self.token_response(**form)
        assert response.status_code == 200, response.text
        return dict(response.json())

    async def token_response(self, **form: str) -> httpx.Response:
        return await self.http.post(f"{self.api_url}/oauth/token", data={"client_id": self.client_id, **form})

    async def get(self, path: str, access_token: str) -> httpx.Response:
        return await self.http.get(f"{self.api_url}{path}", headers={"Authorization": f"Bearer {access_token}"})


async def idp_tokens(issuer: str, client_id: str, secret: str, redirect_uri: str, login: str) -> dict[str, Any]:
    """Tokens the IdP itself issues to one of its clients for ``login`` (its opaque access token, its id_token)."""
    verifier, challenge = pkce_pair()
    async with httpx.AsyncClient(timeout=10) as http:
        metadata = (await http.get(f"{issuer}/.well-known/openid-configuration")).json()
        query = {
            "response_type": "code",
            "client_id": client_id,
            "redirect_uri": redirect_uri,
            "scope": "openid email profile groups",
            "code_challenge": challenge,
            "code_challenge_method": "S256",
            "state": "s",
            "nonce": "n",
        }
        browser = Browser(login)
        try:
            redirect = await browser.open(
                f"{metadata['authorization_endpoint']}?{urlencode(query)}", until=redirect_uri
            )
        finally:
            await browser.aclose()
        code = parse_qs(urlsplit(redirect.headers["location"]).query)["code"][0]
        response = await http.post(
            metadata["token_endpoint"],
            data={
                "grant_type": "authorization_code",
                "code": code,
                "redirect_uri": redirect_uri,
                "code_verifier": verifier,
            },
            auth=(client_id, secret),
        )
        assert response.status_code == 200, response.text
        return dict(response.json())
