"""The OpenID Connect relying party: discovery, JWKS, the authorization-code flow with PKCE, token checks."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import httpx2
from authlib.common.security import generate_token
from authlib.integrations.httpx_client import AsyncOAuth2Client, OAuthError
from joserfc import jwt
from joserfc.errors import (
    BadSignatureError,
    DecodeError,
    ExpiredTokenError,
    InvalidClaimError,
    InvalidKeyIdError,
    JoseError,
)
from joserfc.jwk import KeySet

from service.settings import Settings

DISCOVERY_TTL = 3600.0  # seconds the discovery document and the JWKS are trusted without refetching
# An unknown key id refetches the JWKS, but at most this often, so forged kids cannot hammer the IdP.
JWKS_MIN_REFRESH = 30.0
CLOCK_LEEWAY = 60  # seconds of clock difference tolerated on exp/iat/nbf
# Asymmetric only: an IdP's JWKS holds public keys, and 'none' or HMAC must never be accepted.
SIGNING_ALGORITHMS = ("RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA")


class OidcError(Exception):
    """Sign-in or a bearer JWT failed; the message says why (safe to show), ``kind`` in a word or two."""

    def __init__(self, message: str, kind: str = "invalid") -> None:
        super().__init__(message)
        self.kind = kind


class OidcClient:
    """One per api process: caches the IdP's discovery document and keys, talks to it over HTTP."""

    def __init__(self, settings: Settings) -> None:
        if not settings.oidc_issuer_url or not settings.oidc_client_id:
            raise OidcError("OIDC_ISSUER and OIDC_CLIENT_ID must be set")
        self.issuer_url = settings.oidc_issuer_url
        self.client_id = settings.oidc_client_id
        self.client_secret = settings.oidc_client_secret
        self.audience = settings.oidc_audience or settings.oidc_client_id
        self.scopes = settings.oidc_scope_list
        self._http = httpx2.AsyncClient(timeout=10)
        self._lock = asyncio.Lock()
        self._metadata: dict[str, Any] | None = None
        self._metadata_at = 0.0
        self._keys: KeySet | None = None
        self._keys_at = 0.0

    async def aclose(self) -> None:
        await self._http.aclose()

    async def metadata(self) -> dict[str, Any]:
        """The discovery document, refetched after ``DISCOVERY_TTL``."""
        async with self._lock:
            if self._metadata is None or time.monotonic() - self._metadata_at > DISCOVERY_TTL:
                url = f"{self.issuer_url}/.well-known/openid-configuration"
                document = await self._get_json(url)
                if document.get("issuer", "").rstrip("/") != self.issuer_url:
                    raise OidcError(f"the discovery document at {url} names another issuer")
                self._metadata, self._metadata_at = document, time.monotonic()
            return self._metadata

    async def keys(self, *, refresh: bool = False) -> KeySet:
        """The IdP's signing keys; ``refresh`` refetches them unless that happened moments ago."""
        metadata = await self.metadata()
        async with self._lock:
            age = time.monotonic() - self._keys_at
            if self._keys is None or age > DISCOVERY_TTL or (refresh and age > JWKS_MIN_REFRESH):
                self._keys = KeySet.import_key_set(await self._get_json(metadata["jwks_uri"]))  # type: ignore[arg-type]
                self._keys_at = time.monotonic()
            return self._keys

    async def _get_json(self, url: str) -> dict[str, Any]:
        try:
            response = await self._http.get(url)
            response.raise_for_status()
            document = response.json()
        except (httpx2.HTTPError, ValueError) as exc:
            raise OidcError(f"the identity provider did not answer {url}: {exc}") from exc
        if not isinstance(document, dict):
            raise OidcError(f"{url} did not return a JSON object")
        return document

    def _oauth(self, redirect_uri: str) -> AsyncOAuth2Client:
        return AsyncOAuth2Client(
            client_id=self.client_id,
            client_secret=self.client_secret,
            scope=self.scopes,
            redirect_uri=redirect_uri,
            code_challenge_method="S256",
            timeout=10,
        )

    async def authorization_url(self, redirect_uri: str) -> tuple[str, dict[str, str]]:
        """Where to send the browser, and the state, nonce and PKCE verifier to keep in its session."""
        metadata = await self.metadata()
        login = {"state": generate_token(32), "nonce": generate_token(32), "code_verifier": generate_token(64)}
        async with self._oauth(redirect_uri) as client:
            url, _ = client.create_authorization_url(
                metadata["authorization_endpoint"],
                state=login["state"],
                nonce=login["nonce"],
                code_verifier=login["code_verifier"],
            )
        return url, login

    async def exchange_code(self, code: str, redirect_uri: str, code_verifier: str) -> dict[str, Any]:
        """The token response for an authorization code (the IdP refuses a code used twice)."""
        metadata = await self.metadata()
        async with self._oauth(redirect_uri) as client:
            try:
                token = await client.fetch_token(
                    metadata["token_endpoint"], code=code, code_verifier=code_verifier, redirect_uri=redirect_uri
                )
            except (OAuthError, httpx2.HTTPError) as exc:
                raise OidcError(f"the identity provider refused the code: {exc}") from exc
        return dict(token)

    async def verify(self, token: str, *, nonce: str | None = None) -> dict[str, Any]:
        """Claims of a JWT the IdP signed for us: signature (JWKS), issuer, audience, expiry, and nonce if given.

        id_tokens are checked against the client id; bearer access tokens against ``OIDC_AUDIENCE``.
        """
        metadata = await self.metadata()
        audience = self.client_id if nonce is not None else self.audience
        try:
            try:
                decoded = jwt.decode(token, await self.keys(), algorithms=SIGNING_ALGORITHMS)
            except InvalidKeyIdError:
                # The IdP may have rotated its keys since we fetched them.
                decoded = jwt.decode(token, await self.keys(refresh=True), algorithms=SIGNING_ALGORITHMS)
            expected: dict[str, Any] = {
                "iss": {"essential": True, "value": metadata["issuer"]},
                "aud": {"essential": True, "values": [audience]},
                "exp": {"essential": True},
                "sub": {"essential": True},
            }
            if nonce is not None:
                expected["nonce"] = {"essential": True, "value": nonce}
            jwt.JWTClaimsRegistry(leeway=CLOCK_LEEWAY, **expected).validate(decoded.claims)
        except JoseError as exc:
            why = f"the token was rejected: {exc.error}: {exc.description or ''}".rstrip(": ")
            kind = _kind_of(exc)
            if kind == "wrong audience":
                why += f" (Switchboard expects '{audience}', OIDC_AUDIENCE)"
            raise OidcError(why, kind) from exc
        except ValueError as exc:
            raise OidcError("the token is not a well-formed JWT", "malformed") from exc
        return decoded.claims


def _kind_of(exc: JoseError) -> str:
    """The first word of a refusal, as bearer callers read it (``WWW-Authenticate`` error_description)."""
    if isinstance(exc, ExpiredTokenError):
        return "expired"
    if isinstance(exc, InvalidClaimError) and "'aud'" in str(exc.description):
        return "wrong audience"
    if isinstance(exc, BadSignatureError):
        return "bad signature"
    if isinstance(exc, DecodeError):
        return "malformed"
    return "invalid"
