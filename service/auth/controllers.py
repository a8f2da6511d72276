"""Sign-in and sign-out through the IdP (``/auth``), native apps' OAuth endpoints (``/oauth``), personal tokens."""

from __future__ import annotations

import hmac
import uuid
from typing import Annotated, Any
from urllib.parse import urlencode

import structlog
from litestar import Controller, Request, Response, delete, get, post
from litestar.datastructures import Cookie
from litestar.di import NamedDependency
from litestar.exceptions import ClientException, PermissionDeniedException, ServiceUnavailableException
from litestar.params import FromPath, FromQuery, JSONBody, QueryParameter
from litestar.response import Redirect, Template

from service.auth import native
from service.auth import services as tokens
from service.auth.oidc import OidcClient, OidcError
from service.auth.principal import Principal
from service.auth.provisioning import sign_in_operator
from service.auth.schemas import TokenCreate, TokenCreated, TokenList
from service.auth.sessions import (
    CSRF_COOKIE,
    CSRF_HEADER,
    LOGIN_COOKIE,
    LOGIN_TTL,
    SESSION_COOKIE,
    SIGNED_OUT_COOKIE,
    cookie_options,
    cookie_path,
    create_session,
    csrf_matches,
    end_session,
    load_session,
    session_key,
    start_login,
    take_login,
)
from service.deps import engine
from service.errors import Forbidden, OAuthRefused
from service.queue import enqueue_drain
from service.settings import Settings

log = structlog.get_logger(__name__)


def _oidc(request: Request[Any, Any, Any]) -> OidcClient:
    oidc: OidcClient | None = request.app.state.oidc
    if oidc is None:
        raise ServiceUnavailableException("Sign-in is not configured: set OIDC_ISSUER and OIDC_CLIENT_ID")
    return oidc


def _settings(request: Request[Any, Any, Any]) -> Settings:
    return request.app.state.settings  # type: ignore[no-any-return]


def _callback_url(settings: Settings) -> str:
    return f"{settings.base_url}/auth/callback"


def _local_path(value: str | None, settings: Settings) -> str:
    """Only paths on this site: an open redirect would let others borrow the sign-in page."""
    if value and value.startswith("/") and not value.startswith(("//", "/\\")):
        return value
    return settings.site_path("/")


def _expired(name: str, settings: Settings, path: str = "") -> Cookie:
    return Cookie(key=name, value="", max_age=0, **cookie_options(settings) | {"path": cookie_path(settings, path)})


async def _to_identity_provider(request: Request[Any, Any, Any], keep: dict[str, str]) -> Redirect:
    """Start the IdP sign-in: its state, nonce and PKCE verifier, with ``keep``, in Redis behind the login cookie."""
    settings = _settings(request)
    try:
        url, login = await _oidc(request).authorization_url(_callback_url(settings))
    except OidcError as exc:
        raise ServiceUnavailableException(str(exc)) from exc
    cookie = await start_login(request.app.state.redis, settings, {**login, **keep})
    options = cookie_options(settings) | {"path": cookie_path(settings, "/auth")}
    return Redirect(
        url, status_code=302, cookies=[Cookie(key=LOGIN_COOKIE, value=cookie, max_age=LOGIN_TTL, **options)]
    )


class SignInFailed(Exception):
    """Why a sign-in did not complete (safe to show), and the status it answers with."""

    def __init__(self, reason: str, status_code: int = 400) -> None:
        super().__init__(reason)
        self.reason = reason
        self.status_code = status_code


def _failure(request: Request[Any, Any, Any], failed: SignInFailed) -> Response[Any]:
    """A browser gets a page saying why, with a way to try again; programs get problem details."""
    detail = f"Sign-in failed: {failed.reason}"
    if request.accept.best_match(["application/json", "text/html"], "application/json") == "text/html":
        return Template("sign_in_failed.html", context={"detail": detail}, status_code=failed.status_code)
    if failed.status_code == 403:
        raise PermissionDeniedException(detail)
    raise ClientException(detail)


class AuthController(Controller):
    """Browser sign-in with the IdP (authorization code + PKCE), and sign-out."""

    path = "/auth"
    tags = ["Authentication"]

    @get("/login", operation_id="signIn", summary="Start signing in at the identity provider")
    async def login(
        self,
        request: Request[Any, Any, Any],
        return_to: Annotated[
            str | None, QueryParameter(name="returnTo", description="A path on this site to land on afterwards")
        ] = None,
    ) -> Redirect:
        """Redirects to the IdP; the state, nonce and PKCE verifier stay server-side, bound to this browser."""
        return await _to_identity_provider(request, {"returnTo": _local_path(return_to, _settings(request))})

    @get("/callback", operation_id="signInCallback", summary="Where the identity provider sends the browser back")
    async def callback(
        self,
        request: Request[Any, Any, Any],
        code: FromQuery[str | None] = None,
        oauth_state: Annotated[str | None, QueryParameter(name="state")] = None,
        error: FromQuery[str | None] = None,
    ) -> Response[Any]:
        """Checks state, exchanges the code, verifies the id_token, signs the operator in.

        A failure is 400 (403 for a deactivated operator or, when required, no mapped group): an HTML
        page saying why for browsers, problem details whose ``detail`` starts with ``Sign-in failed:`` otherwise.
        """
        try:
            return await self._complete(request, code, oauth_state, error)
        except SignInFailed as failed:
            log.info("sign-in rejected", reason=failed.reason)
            return _failure(request, failed)

    async def _complete(
        self, request: Request[Any, Any, Any], code: str | None, oauth_state: str | None, error: str | None
    ) -> Redirect:
        settings = _settings(request)
        redis = request.app.state.redis
        login_cookie = request.cookies.get(LOGIN_COOKIE)
        login = await take_login(redis, settings, login_cookie) if login_cookie else None
        if login is None:
            raise SignInFailed("no sign-in was started in this browser, or it expired")
        if error:
            raise SignInFailed(f"the identity provider answered '{error}'")
        if not oauth_state or not hmac.compare_digest(oauth_state, login["state"]):
            raise SignInFailed("the state does not match this browser's sign-in")
        if not code:
            raise SignInFailed("no authorization code")
        oidc = _oidc(request)
        try:
            tokens = await oidc.exchange_code(code, _callback_url(settings), login["code_verifier"])
            if not isinstance(tokens.get("id_token"), str):
                raise OidcError("the identity provider sent no id_token")
            claims = await oidc.verify(tokens["id_token"], nonce=login["nonce"])
        except OidcError as exc:
            raise SignInFailed(str(exc)) from exc

        try:
            async with engine(request).begin() as conn:
                operator_id, joined = await sign_in_operator(
                    conn,
                    claims,
                    settings.oidc_group_map,
                    settings.oidc_groups_claim,
                    require_mapped_group=settings.oidc_require_mapped_group,
                )
        except Forbidden as exc:
            raise SignInFailed(exc.detail, 403) from exc
        for team_id in joined:
            # A new member may take conversations waiting in the team's queue.
            await enqueue_drain(redis, team_id, "membership")
        if "oauth" in login:
            # A native app's sign-in (/oauth/authorize): the app gets a code, the browser no session.
            app_request = native.AuthorizationRequest.loads(login["oauth"])
            target = await native.issue_code(redis, settings, app_request, operator_id)
            log.info("native app signed in", operator_id=str(operator_id), client_id=app_request.client_id)
            return Redirect(target, status_code=303, cookies=[_expired(LOGIN_COOKIE, settings, path="/auth")])
        session, csrf = await create_session(redis, settings, operator_id, tokens["id_token"])
        log.info("signed in", operator_id=str(operator_id))
        options = cookie_options(settings)
        return Redirect(
            login["returnTo"],
            status_code=303,
            cookies=[
                Cookie(key=SESSION_COOKIE, value=session, max_age=settings.session_ttl_seconds, **options),
                Cookie(
                    key=CSRF_COOKIE, value=csrf, max_age=settings.session_ttl_seconds, **options | {"httponly": False}
                ),
                Cookie(key=LOGIN_COOKIE, value="", max_age=0, **options | {"path": cookie_path(settings, "/auth")}),
                _expired(SIGNED_OUT_COOKIE, settings),
            ],
        )

    @post("/logout", operation_id="signOut", summary="Sign out of Switchboard (and of the IdP when it supports it)")
    async def logout(self, request: Request[Any, Any, Any]) -> Redirect:
        """Needs the CSRF token (header or ``csrfToken`` form field); ends the server-side session."""
        settings = _settings(request)
        redis = request.app.state.redis
        cookie = request.cookies.get(SESSION_COOKIE)
        session = await load_session(redis, settings, cookie) if cookie else None
        target = settings.site_path("/")
        if session is not None and cookie:
            sent = request.headers.get(CSRF_HEADER)
            if sent is None and request.content_type[0] == "application/x-www-form-urlencoded":
                sent = (await request.form()).get("csrfToken")
            if not csrf_matches(session, sent):
                raise PermissionDeniedException(f"Send the session's CSRF token in the {CSRF_HEADER} header")
            await end_session(redis, settings, cookie)
            # What else ends with the session (its presence clients), wired in create_app: auth knows no presence.
            await request.app.state.on_sign_out(session_key(cookie))
            target = await self._idp_logout_url(request, session.id_token, settings)
        signed_out = Cookie(
            key=SIGNED_OUT_COOKIE, value="1", max_age=settings.session_ttl_seconds, **cookie_options(settings)
        )
        return Redirect(
            target,
            status_code=303,
            cookies=[_expired(SESSION_COOKIE, settings), _expired(CSRF_COOKIE, settings), signed_out],
        )

    @staticmethod
    async def _idp_logout_url(request: Request[Any, Any, Any], id_token: str, settings: Settings) -> str:
        """The IdP's end-session endpoint when it has one (RP-initiated logout), else the home page."""
        oidc: OidcClient | None = request.app.state.oidc
        try:
            endpoint = (await oidc.metadata()).get("end_session_endpoint") if oidc else None
        except OidcError:
            endpoint = None
        if not endpoint or oidc is None:
            return settings.site_path("/")
        query = {
            "id_token_hint": id_token,
            "client_id": oidc.client_id,
            "post_logout_redirect_uri": settings.post_logout_redirect_uri,
        }
        return f"{endpoint}?{urlencode(query)}"


class TokenController(Controller):
    """Personal access tokens for scripts and programs: the secret is shown once, only its hash is kept."""

    path = "/api/v1/me/tokens"
    tags = ["Me"]

    @get("", operation_id="listMyTokens", summary="Your live personal access tokens")
    async def list_tokens(self, request: Request[Any, Any, Any], principal: NamedDependency[Principal]) -> TokenList:
        async with engine(request).connect() as conn:
            return await tokens.live_tokens(conn, principal.operator_id)

    @post("", operation_id="createMyToken", summary="Create a personal access token", status_code=201)
    async def create_token(
        self, data: JSONBody[TokenCreate], request: Request[Any, Any, Any], principal: NamedDependency[Principal]
    ) -> TokenCreated:
        """The response holds the secret; it cannot be shown again. A token never gets more than its creator."""
        async with engine(request).begin() as conn:
            return await tokens.create_token(conn, principal, data)

    @delete("/{token_id:uuid}", operation_id="revokeMyToken", summary="Revoke a personal access token", status_code=204)
    async def revoke_token(
        self, token_id: FromPath[uuid.UUID], request: Request[Any, Any, Any], principal: NamedDependency[Principal]
    ) -> None:
        """It stops working at once; someone else's token, or one already revoked, is 404."""
        async with engine(request).begin() as conn:
            await tokens.revoke_token(conn, principal.operator_id, token_id)


# Token responses must not be cached (RFC 6749 section 5.1).
NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}


async def _form(request: Request[Any, Any, Any]) -> dict[str, str]:
    """The urlencoded body OAuth clients send; anything else reads as an empty form (400 invalid_request)."""
    if request.content_type[0] != "application/x-www-form-urlencoded":
        return {}
    return {key: value for key, value in (await request.form()).items() if isinstance(value, str)}


class OAuthController(Controller):
    """Switchboard as the OAuth 2.0 authorization server of native apps (RFC 8252): public clients with PKCE."""

    path = "/oauth"
    tags = ["Authentication"]

    @get("/authorize", operation_id="oauthAuthorize", summary="A native app starts signing in (RFC 8252, PKCE)")
    async def authorize(
        self,
        request: Request[Any, Any, Any],
        client_id: FromQuery[str | None] = None,
        redirect_uri: FromQuery[str | None] = None,
        response_type: FromQuery[str | None] = None,
        code_challenge: FromQuery[str | None] = None,
        code_challenge_method: FromQuery[str | None] = None,
        requested_scope: Annotated[str | None, QueryParameter(name="scope")] = None,
        oauth_state: Annotated[str | None, QueryParameter(name="state")] = None,
    ) -> Redirect:
        """Sends the browser through the IdP sign-in, then to ``redirect_uri`` with a one-time ``code``.

        A wrong ``client_id`` or ``redirect_uri`` is a 400 here (never a redirect there); other mistakes
        go back to the app as ``error`` and ``error_description`` (RFC 6749 section 4.1.2.1).
        """
        params = {
            "client_id": client_id,
            "redirect_uri": redirect_uri,
            "response_type": response_type,
            "code_challenge": code_challenge,
            "code_challenge_method": code_challenge_method,
            "scope": requested_scope,
            "state": oauth_state,
        }
        try:
            app_request = native.authorization_request(_settings(request), params)
        except OAuthRefused as exc:
            target = native.redirect_with(
                redirect_uri or "", oauth_state, error=exc.error, error_description=exc.detail
            )
            return Redirect(target, status_code=302)
        home = _settings(request).site_path("/")
        return await _to_identity_provider(request, {"returnTo": home, "oauth": app_request.dumps()})

    @post("/token", operation_id="oauthToken", summary="Exchange a code or a refresh token (form-encoded)")
    async def token(self, request: Request[Any, Any, Any]) -> Response[dict[str, Any]]:
        """``grant_type=authorization_code`` (code, redirect_uri, client_id, code_verifier) or
        ``grant_type=refresh_token`` (refresh_token, client_id). Refusals are 400 with ``error``."""
        form = await _form(request)
        settings = _settings(request)
        if form.get("grant_type") == "authorization_code":
            tokens_ = await native.exchange_code(engine(request), request.app.state.redis, settings, form)
        elif form.get("grant_type") == "refresh_token":
            tokens_ = await native.refresh(engine(request), settings, form)
        else:
            raise OAuthRefused("unsupported_grant_type", "grant_type must be authorization_code or refresh_token")
        return Response(tokens_, status_code=200, headers=NO_STORE)

    @post("/revoke", operation_id="oauthRevoke", summary="Sign a native app out: revoke a token (RFC 7009)")
    async def revoke(self, request: Request[Any, Any, Any]) -> Response[None]:
        """``token`` (access or refresh) and ``client_id``: every token of that sign-in stops working. 200
        also for a token that is unknown or already revoked, as RFC 7009 asks."""
        await native.revoke(engine(request), _settings(request), await _form(request))
        return Response(None, status_code=200, headers=NO_STORE)


@get(
    "/.well-known/oauth-authorization-server",
    operation_id="oauthServerMetadata",
    summary="Authorization server metadata for native apps (RFC 8414)",
    tags=["Authentication"],
)
async def authorization_server_metadata(request: Request[Any, Any, Any]) -> dict[str, Any]:
    return native.server_metadata(_settings(request))
