"""``/scim/v2``: SCIM 2.0 for the identity provider (RFC 7644), authenticated by an admin's ``scim``-scoped token."""

from __future__ import annotations

import json
import uuid
from typing import Any

from litestar import Controller, Request, Response, delete, get, patch, post, put
from litestar.di import NamedDependency, Provide
from litestar.params import FromPath
from pydantic import ValidationError
from scim2_models import (
    Context,
    Error,
    ForbiddenException,
    Group,
    InvalidSyntaxException,
    InvalidValueException,
    ListResponse,
    NotFoundException,
    NotImplementedException,
    ResourceType,
    ResponseParameters,
    Schema,
    SCIMException,
    UnauthorizedException,
    User,
)

from service.auth.deps import REALM, admin_network_allowed
from service.auth.principal import ADMIN_NETWORK_REFUSED, SCIM_SCOPE, TOKEN_PREFIX, Principal
from service.auth.services import principal_from_personal_token
from service.deps import engine, read, write
from service.operators.services import finish_deactivation
from service.problems import EXCEPTION_HANDLERS
from service.queue import enqueue_drain
from service.scim import services
from service.scim.schemas import CONTENT_TYPE, dump, resource_types, schemas, service_provider_config

# The request fields of the services Switchboard reuses, by the SCIM attribute they come from.
_ATTRIBUTE_OF = {"name": "displayName", "deactivated": "active", "operatorId": "members"}


def scim_response(body: dict[str, Any], status: int = 200, headers: dict[str, str] | None = None) -> Response[Any]:
    content = json.dumps(body).encode()
    return Response(content, status_code=status, media_type=CONTENT_TYPE, headers=headers)


def _error(error: Error, headers: dict[str, str] | None = None) -> Response[Any]:
    return scim_response(dump(error, Context.DEFAULT), int(error.status or 500), headers)


def _scim_error(request: Request[Any, Any, Any], exc: Exception) -> Response[Any]:
    """Every failure under ``/scim/v2`` answers a SCIM Error (RFC 7644 section 3.12), never problem details.

    Refusals of the services SCIM reuses keep the status the API gives them (``service.problems``), worded
    for SCIM: a 422 is a 400 ``invalidValue`` and a field taken is a 409 ``uniqueness``, naming the attribute.
    """
    if isinstance(exc, SCIMException):
        headers = {"WWW-Authenticate": REALM} if isinstance(exc, UnauthorizedException) else None
        return _error(exc.to_error(), headers)
    if isinstance(exc, ValidationError):
        return _error(Error.from_validation_errors(exc)[0])
    handler = next(EXCEPTION_HANDLERS[kind] for kind in type(exc).__mro__ if kind in EXCEPTION_HANDLERS)
    answer = handler(request, exc)
    problem = answer.content if isinstance(answer.content, dict) else {}
    fields = [
        f"{_ATTRIBUTE_OF.get(item['field'], item['field'])}: {item['message']}" for item in problem.get("errors", [])
    ]
    status = 400 if answer.status_code == 422 else answer.status_code
    scim_type = {400: "invalidValue", 409: "uniqueness" if fields else None}.get(status)
    detail = "; ".join(fields) or str(problem.get("detail", ""))
    return _error(Error(status=status, scim_type=scim_type, detail=detail), dict(answer.headers))


async def provide_scim_caller(request: Request[Any, Any, Any]) -> Principal:
    """The administrator whose personal access token with the ``scim`` scope the identity provider sends."""
    scheme, _, credential = request.headers.get("authorization", "").partition(" ")
    credential = credential.strip()
    if scheme.lower() != "bearer" or not credential:
        raise UnauthorizedException(detail="Send a personal access token with the 'scim' scope as a bearer token")
    principal = None
    if credential.startswith(TOKEN_PREFIX):
        principal = await principal_from_personal_token(engine(request), credential)
    if principal is None:
        raise UnauthorizedException(detail="The bearer token was refused: unknown, revoked or expired")
    if not principal.scopes or SCIM_SCOPE not in principal.scopes:
        raise ForbiddenException(detail=f"This token lacks the '{SCIM_SCOPE}' scope")
    if not principal.is_admin:
        raise ForbiddenException(detail="The token's owner is no longer an administrator")
    if not admin_network_allowed(request):
        raise ForbiddenException(detail=ADMIN_NETWORK_REFUSED)
    return principal


def _endpoint(kind: str) -> services.Endpoint:
    if kind not in services.ENDPOINTS:
        raise NotFoundException(detail=f"No SCIM endpoint at /{kind}")
    return services.ENDPOINTS[kind]


def _listed(found: list[Any], model: type[Any]) -> Response[Any]:
    listed = ListResponse[model](  # type: ignore[valid-type]
        total_results=len(found), start_index=1, items_per_page=len(found), resources=found
    )
    return scim_response(dump(listed, Context.SEARCH_RESPONSE))


def _one_of(found: list[Any], wanted: str, what: str) -> Response[Any]:
    for item in found:
        if item.id == wanted:
            return scim_response(dump(item))
    raise NotFoundException(detail=f"{what} {wanted} not found")


def _base(request: Request[Any, Any, Any]) -> str:
    return f"{request.app.state.settings.base_url}{ScimController.path}"


async def _payload(request: Request[Any, Any, Any]) -> Any:
    try:
        return json.loads(await request.body())
    except ValueError:
        raise InvalidSyntaxException(detail="The body is not JSON") from None


def _integer(request: Request[Any, Any, Any], name: str) -> int | None:
    value = request.query_params.get(name)
    if value is None:
        return None
    try:
        return int(value)
    except ValueError:
        raise InvalidValueException(detail=f"{name}: must be an integer") from None


def _shown(request: Request[Any, Any, Any], model: type[Any]) -> ResponseParameters[Any]:
    """The ``attributes`` / ``excludedAttributes`` query parameters (RFC 7644 section 3.9)."""
    return ResponseParameters[model].model_validate(  # type: ignore[valid-type]
        {
            "attributes": request.query_params.get("attributes"),
            "excludedAttributes": request.query_params.get("excludedAttributes"),
        }
    )


Req = Request[Any, Any, Any]
Caller = NamedDependency[Principal]


class ScimController(Controller):
    """Discovery, then ``/Users`` and ``/Groups`` (see ``services.ENDPOINTS``); every answer is SCIM JSON."""

    path = "/scim/v2"
    include_in_schema = False  # RFC 7644 describes it; docs/scim.md says how Switchboard maps it
    dependencies = {"scim_caller": Provide(provide_scim_caller)}
    exception_handlers = {kind: _scim_error for kind in (SCIMException, ValidationError, *EXCEPTION_HANDLERS)}

    @get("/ServiceProviderConfig")
    async def service_provider_config(self, request: Req, scim_caller: Caller) -> Response[Any]:
        return scim_response(dump(service_provider_config(_base(request))))

    @get("/ResourceTypes")
    async def resource_types(self, request: Req, scim_caller: Caller) -> Response[Any]:
        return _listed(resource_types(_base(request)), ResourceType)

    @get("/ResourceTypes/{name:str}")
    async def resource_type(self, name: FromPath[str], request: Req, scim_caller: Caller) -> Response[Any]:
        return _one_of(resource_types(_base(request)), name, "ResourceType")

    @get("/Schemas")
    async def schemas(self, request: Req, scim_caller: Caller) -> Response[Any]:
        return _listed(schemas(_base(request)), Schema)

    @get("/Schemas/{schema_id:str}")
    async def schema(self, schema_id: FromPath[str], request: Req, scim_caller: Caller) -> Response[Any]:
        return _one_of(schemas(_base(request)), schema_id, "Schema")

    @post("/.search")
    async def search_everything(self, scim_caller: Caller) -> Response[Any]:
        """Searching Users and Groups at once is not offered (RFC 7644 section 3.4.3 allows a 501)."""
        raise NotImplementedException(detail="Search /Users or /Groups with GET and a filter")

    @get("/{kind:str}")
    async def list_resources(self, kind: FromPath[str], request: Req, scim_caller: Caller) -> Response[Any]:
        endpoint = _endpoint(kind)
        shown = _shown(request, endpoint.model)
        scim_filter = request.query_params.get("filter")
        start, count = _integer(request, "startIndex"), _integer(request, "count")
        found = await read(request, lambda conn: endpoint.list(conn, _base(request), scim_filter, start, count))
        return scim_response(dump(found, Context.SEARCH_RESPONSE, response_parameters=shown))

    @get("/{kind:str}/{resource_id:str}")
    async def get_resource(
        self, kind: FromPath[str], resource_id: FromPath[str], request: Req, scim_caller: Caller
    ) -> Response[Any]:
        endpoint = _endpoint(kind)
        shown = _shown(request, endpoint.model)
        found = await read(request, lambda conn: endpoint.get(conn, resource_id, _base(request)))
        return scim_response(dump(found, response_parameters=shown))

    @post("/{kind:str}")
    async def create_resource(self, kind: FromPath[str], request: Req, scim_caller: Caller) -> Response[Any]:
        endpoint, payload = _endpoint(kind), await _payload(request)
        written = await write(request, lambda conn: endpoint.create(conn, payload, scim_caller, _base(request)))
        return await _written(request, written, scim_caller, Context.RESOURCE_CREATION_RESPONSE, 201)

    @put("/{kind:str}/{resource_id:str}")
    async def replace_resource(
        self, kind: FromPath[str], resource_id: FromPath[str], request: Req, scim_caller: Caller
    ) -> Response[Any]:
        endpoint, payload = _endpoint(kind), await _payload(request)
        written = await write(
            request, lambda conn: endpoint.replace(conn, resource_id, payload, scim_caller, _base(request))
        )
        return await _written(request, written, scim_caller, Context.RESOURCE_REPLACEMENT_RESPONSE)

    @patch("/{kind:str}/{resource_id:str}")
    async def patch_resource(
        self, kind: FromPath[str], resource_id: FromPath[str], request: Req, scim_caller: Caller
    ) -> Response[Any]:
        endpoint, payload = _endpoint(kind), await _payload(request)
        written = await write(
            request, lambda conn: endpoint.patch(conn, resource_id, payload, scim_caller, _base(request))
        )
        return await _written(request, written, scim_caller, Context.RESOURCE_PATCH_RESPONSE)

    @delete("/{kind:str}/{resource_id:str}", status_code=204)
    async def delete_resource(
        self, kind: FromPath[str], resource_id: FromPath[str], request: Req, scim_caller: Caller
    ) -> None:
        """A User is deactivated and unlinked (operators keep their history); a Group's team is deleted."""
        endpoint = _endpoint(kind)
        deleted = await write(request, lambda conn: endpoint.delete(conn, resource_id, scim_caller))
        if endpoint.model is User:
            await _finish_deactivation(request, deleted, scim_caller)


async def _finish_deactivation(request: Req, operator_id: uuid.UUID, caller: Principal) -> None:
    state = request.app.state
    await finish_deactivation(engine(request), state.redis, state.settings, operator_id, caller.operator_id)


async def _written(
    request: Req, resource: User | Group, caller: Principal, context: Context, status: int = 200
) -> Response[Any]:
    """After the commit: a deactivated User's sessions end and conversations move; a Group's queue may drain."""
    resource_id = uuid.UUID(str(resource.id))
    if isinstance(resource, User) and resource.active is False:
        # Also when it already was: a retry finishes what an interrupted request began.
        await _finish_deactivation(request, resource_id, caller)
    if isinstance(resource, Group):  # new members may take queued conversations
        await enqueue_drain(request.app.state.redis, resource_id, "member_added")
    location = {"Location": str(resource.meta.location)} if resource.meta else None
    return scim_response(dump(resource, context), status, location)
