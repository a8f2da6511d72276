"""The OpenAPI 3.1 document at ``/schema``: security schemes, and the problem responses every operator route shares."""

from __future__ import annotations

import re
from typing import Any

from litestar import Litestar
from litestar.openapi import OpenAPIConfig
from litestar.openapi.spec import (
    Components,
    OAuthFlow,
    OAuthFlows,
    OpenAPIMediaType,
    OpenAPIResponse,
    Reference,
    Schema,
    SecurityRequirement,
    SecurityScheme,
    Server,
    Tag,
)
from litestar.openapi.spec.enums import OpenAPIType
from litestar.response import ServerSentEvent
from litestar.routes import HTTPRoute

from service.auth.sessions import SESSION_COOKIE
from service.problems import PROBLEM_JSON

API_PREFIX = "/api/v1/"
# Any one credential is enough: a bearer token (personal access token or IdP JWT), a native app's
# OAuth access token (read for safe methods, write for the rest), or the browser session.
API_SECURITY: list[SecurityRequirement] = [{"bearer": []}, {"nativeApp": ["read"]}, {"session": []}]
WRITE_SECURITY: list[SecurityRequirement] = [{"bearer": []}, {"nativeApp": ["write"]}, {"session": []}]
# Relative to the server, as OpenAPI 3.1 allows: the same document serves every deployment.
NATIVE_APP_FLOW = OAuthFlow(
    authorization_url="/oauth/authorize",
    token_url="/oauth/token",
    refresh_url="/oauth/token",
    scopes={
        "read": "Read what the operator may see (safe methods)",
        "write": "Change things (every other method)",
        "admin": "Administration routes, for administrators",
    },
)

_PROBLEM = Schema(
    type=OpenAPIType.OBJECT,
    description="RFC 9457 problem details",
    required=["type", "title", "status", "detail", "instance"],
    properties={
        "type": Schema(type=OpenAPIType.STRING, examples=["about:blank"]),
        "title": Schema(type=OpenAPIType.STRING, examples=["Not Found"]),
        "status": Schema(type=OpenAPIType.INTEGER, examples=[404]),
        "detail": Schema(type=OpenAPIType.STRING, examples=["Conversation not found"]),
        "instance": Schema(type=OpenAPIType.STRING, examples=["/api/v1/conversations/18c2f0a9d41-4be1c2d3"]),
        "errors": Schema(
            type=OpenAPIType.ARRAY,
            description="Validation errors only: each offending field and what is wrong with it",
            items=Schema(
                type=OpenAPIType.OBJECT,
                required=["field", "message"],
                properties={
                    "field": Schema(one_of=[Schema(type=OpenAPIType.STRING), Schema(type=OpenAPIType.NULL)]),
                    "message": Schema(type=OpenAPIType.STRING),
                },
            ),
        ),
    },
)

_EVENT_STREAM = Schema(type=OpenAPIType.STRING, description="Server-Sent Events (id, event, data lines)")

_PROBLEMS = {
    "400": "The request is not valid; ``errors`` names each field",
    "401": "No valid credential (missing, unknown, revoked or expired)",
    "403": "Signed in, but not allowed (role, or the token's scopes)",
    "404": "Not found, or belongs to a team the caller is not in",
    "409": "Conflicts with the current state",
    "422": "Well-formed, but a value cannot be used (an unknown operator, ...); ``errors`` names each field",
}


# What the routes outside /api/v1 answer besides their success and 400, by operation id: the widget gateway (the
# same for each of its operations, plus a few of their own), signed file links, sign-in and the OAuth endpoints.
_WIDGET_PROBLEMS = {
    "403": "Refused: a sender other than the visitor, an origin not allowed, a file URL not signed or expired",
    "404": "No such session (or message, upload, screenshot request) for this widget",
    "413": "The body, or the file, is larger than allowed",
    "422": "Well-formed, but a value cannot be used (too many message ids, ...); ``errors`` names each field",
    "429": "Over the session's or the address's budget; ``Retry-After`` says when to try again",
}
_EDGE_PROBLEMS: dict[str, dict[str, str]] = {
    "widgetConnect": {"426": "This widget version is no longer supported"},
    "widgetUploadFile": {"415": "The file's bytes are not of an accepted type"},
    "widgetScreenshotPut": {"415": "The file's bytes are not of an accepted type"},
    "widgetCompleteUpload": {"415": "The file's bytes are not of an accepted type"},
    "downloadFile": {
        "403": "The URL is not signed, altered or expired",
        "404": "No such file (or it was deleted)",
    },
    "signIn": {"503": "Sign-in is not configured (no identity provider)"},
    "signInCallback": {"403": "The operator is deactivated, or belongs to no mapped group"},
    "signOut": {"403": "The CSRF token is missing or wrong"},
    "oauthToken": {"401": "The client could not be authenticated"},
}
# Their successes, where the handler's default would say otherwise (redirects; OAuth answers 200, RFC 6749).
_EDGE_SUCCESS = {
    "signIn": ("302", "Redirect to the identity provider"),
    "signInCallback": ("302", "Signed in: redirect to the page asked for"),
    "signOut": ("303", "Signed out: redirect to the identity provider's sign-out, or home"),
    "oauthAuthorize": ("302", "Redirect to the identity provider, or back to the app with an error"),
    "oauthToken": ("200", "The tokens (RFC 6749 section 5.1)"),
    "oauthRevoke": ("200", "Revoked, or unknown already (RFC 7009)"),
}


def openapi_config(version: str, path_prefix: str = "") -> OpenAPIConfig:
    """Title, version, server (the site's path prefix), security schemes and tags of the document."""
    return OpenAPIConfig(
        title="Switchboard",
        version=version,
        path="/schema",
        servers=[Server(url=path_prefix or "/")],
        description=(
            "Team routing for PocketPing. Operator endpoints live under /api/v1 and take a bearer token "
            "(a native app's access token `sba_...` from /oauth/token, a personal access token `sbp_...` or the "
            "identity provider's JWT) or the browser session cookie. "
            "Errors are RFC 9457 problem details (application/problem+json). Lists use cursor pagination: "
            "pass `nextCursor` back as `cursor` until it is null."
        ),
        components=Components(
            security_schemes={
                "bearer": SecurityScheme(
                    type="http",
                    scheme="bearer",
                    bearer_format="sbp_ personal access token, or JWT",
                    description="A personal access token (created at /api/v1/me/tokens) or the IdP's access token",
                ),
                "nativeApp": SecurityScheme(
                    type="oauth2",
                    description=(
                        "Native and mobile apps (RFC 8252): a public client with PKCE S256 and a loopback or "
                        "custom-scheme redirect; Switchboard signs the person in at the identity provider. "
                        "Metadata: /.well-known/oauth-authorization-server"
                    ),
                    flows=OAuthFlows(authorization_code=NATIVE_APP_FLOW),
                ),
                "session": SecurityScheme(
                    type="apiKey",
                    name=SESSION_COOKIE,
                    security_scheme_in="cookie",
                    description="Browser session after /auth/login; unsafe methods also need the X-CSRF-Token header",
                ),
            },
            schemas={"Problem": _PROBLEM},
        ),
        tags=[
            Tag(name="Conversations", description="Inbox, search, history, replies and internal notes"),
            Tag(name="Routing", description="Claim, transfer, close, reopen, and why routing decided"),
            Tag(name="Me", description="The signed-in operator and their personal access tokens"),
            Tag(
                name="Authentication",
                description="Browser sign-in and sign-out through the identity provider; native apps' OAuth endpoints",
            ),
            Tag(name="Teams", description="Team settings, members, routing rules and bridge settings"),
            Tag(name="Canned responses", description="Reusable replies with placeholders, and their rendering"),
            Tag(name="Operators", description="Operator administration (admins)"),
            Tag(name="Analytics", description="Team metrics for a period, as JSON or CSV (leads and admins)"),
        ],
    )


def _problem_response(description: str) -> OpenAPIResponse:
    return OpenAPIResponse(
        description=description,
        content={PROBLEM_JSON: OpenAPIMediaType(schema=Reference(ref="#/components/schemas/Problem"))},
    )


def _event_streams(app: Litestar) -> set[tuple[str, str]]:
    """(path, method) of the handlers answering with Server-Sent Events."""
    found = set()
    for route in app.routes:
        if not isinstance(route, HTTPRoute):
            continue
        for handler in route.route_handlers:
            returns = handler.parsed_fn_signature.return_type.annotation
            if isinstance(returns, type) and issubclass(returns, ServerSentEvent):
                path = re.sub(r"\{(\w+):[^}]+\}", r"{\1}", route.path)  # as the document writes it
                found |= {(path, method.lower()) for method in handler.http_methods}
    return found


def finish_openapi(app: Litestar) -> None:
    """Give every ``/api/v1`` operation its security and the problem responses it can return.

    Done once on the built document, so every engineer's routes get the same treatment; it also
    replaces Litestar's generic 400 body, which is not what ``service.problems`` sends, and
    documents event streams as ``text/event-stream`` rather than JSON.
    """
    document = app.openapi_schema
    streams = _event_streams(app)
    for path, item in (document.paths or {}).items():
        operations = [getattr(item, method) for method in ("get", "put", "post", "delete", "patch")]
        for method, operation in zip(("get", "put", "post", "delete", "patch"), operations, strict=True):
            if operation is None:
                continue
            responses = operation.responses or {}
            if (path, method) in streams:
                for response in responses.values():
                    if isinstance(response, OpenAPIResponse) and response.content:
                        response.content = {"text/event-stream": OpenAPIMediaType(schema=_EVENT_STREAM)}
            if "400" in responses:
                responses["400"] = _problem_response(_PROBLEMS["400"])
            if not path.startswith(API_PREFIX):
                _document_edge(operation, path)
                continue
            operation.security = operation.security or (API_SECURITY if method == "get" else WRITE_SECURITY)
            for status, description in _PROBLEMS.items():
                # A write without an id in its path may still name one in its body, a read in its query
                # (a team, an operator): either is 404 when it is not found, or not the caller's.
                if (status == "404" and method == "get" and not _names_an_object(path, operation)) or (
                    status in ("409", "422") and method == "get"
                ):
                    continue
                responses.setdefault(status, _problem_response(description))
            if operation.request_body is not None:
                responses.setdefault("413", _problem_response("The body, or the file, is larger than allowed"))
            if path.endswith("/attachments") and method == "post":
                responses.setdefault("415", _problem_response("The file's bytes are not of an accepted type"))
            operation.responses = dict(sorted(responses.items()))


def _names_an_object(path: str, operation: Any) -> bool:
    """Whether the operation's path, or one of its query parameters (``teamId``, ...), names an object by id."""
    queried = [p.name for p in operation.parameters or [] if getattr(p, "param_in", None) == "query"]
    return "{" in path or any(name.endswith("Id") for name in queried)


def _document_edge(operation: Any, path: str) -> None:
    """The widget gateway's, file links', sign-in's and OAuth's statuses, as they answer them."""
    responses = operation.responses or {}
    problems = {
        **(_WIDGET_PROBLEMS if path.startswith("/pocketping/") else {}),
        **_EDGE_PROBLEMS.get(operation.operation_id or "", {}),
    }
    if path.startswith(("/pocketping/", "/files/", "/oauth/", "/auth/")):
        problems.setdefault("400", _PROBLEMS["400"])
    for status, description in problems.items():
        responses.setdefault(status, _problem_response(description))
    if operation.operation_id in _EDGE_SUCCESS:
        status, description = _EDGE_SUCCESS[operation.operation_id]
        success = next((r for code, r in responses.items() if code.startswith("2")), None)
        for code in [code for code in responses if code.startswith("2")]:
            del responses[code]
        if status.startswith("2") and isinstance(success, OpenAPIResponse):
            success.description = description
            responses[status] = success
        else:
            responses[status] = OpenAPIResponse(description=description)
    operation.responses = dict(sorted(responses.items()))
