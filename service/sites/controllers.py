"""``/api/v1/sites`` (admins manage connected sites) and ``/api/v1/connect/events`` (their connectors send events)."""

from __future__ import annotations

import uuid
from typing import Annotated, Any

import structlog
from litestar import Controller, Request, get, patch, post
from litestar.di import NamedDependency
from litestar.exceptions import NotAuthorizedException
from litestar.params import FromPath, JSONBody, QueryParameter
from pydantic import ValidationError

from service.auth.principal import Principal, requires_admin
from service.deps import engine, read, write
from service.errors import field_malformed
from service.gateway.hub import SwitchboardPocketPing
from service.sites import services
from service.sites.schemas import ConnectBatch, ConnectResult, SiteCreate, SiteCreated, SitePage, SitePublic, SiteUpdate

log = structlog.get_logger(__name__)

Cursor = Annotated[str | None, QueryParameter(description="nextCursor of the previous page", max_length=500)]
Limit = Annotated[int, QueryParameter(ge=1, le=100, description="Items per page")]
ADMIN = {"admin": True}
# A batch of events (the connector keeps its batches under connect.MAX_BATCH_BYTES).
MAX_BODY_BYTES = 2 * 1024 * 1024


class SiteController(Controller):
    """Connected sites: customer backends that keep their own PocketPing and send it here (docs/connect.md)."""

    path = "/api/v1/sites"
    tags = ["Sites"]

    @post("", operation_id="createSite", summary="Connect a site", status_code=201, opt=ADMIN)
    async def create_site(
        self, data: JSONBody[SiteCreate], request: Request[Any, Any, Any], principal: NamedDependency[Principal]
    ) -> SiteCreated:
        """Admins only. The response carries the site key, once; only its hash is kept."""
        requires_admin(principal)
        settings = request.app.state.settings
        return await write(request, lambda conn: services.create_site(conn, data, settings))

    @get("", operation_id="listSites", summary="The connected sites", opt=ADMIN)
    async def list_sites(
        self,
        request: Request[Any, Any, Any],
        principal: NamedDependency[Principal],
        cursor: Cursor = None,
        limit: Limit = 50,
    ) -> SitePage:
        """Oldest first; revoked ones too."""
        requires_admin(principal)
        return await read(request, lambda conn: services.list_sites(conn, cursor, limit))

    @get("/{site_id:uuid}", operation_id="getSite", summary="A connected site", opt=ADMIN)
    async def get_site(
        self, site_id: FromPath[uuid.UUID], request: Request[Any, Any, Any], principal: NamedDependency[Principal]
    ) -> SitePublic:
        requires_admin(principal)
        return await read(request, lambda conn: services.get_site(conn, site_id))

    @patch(
        "/{site_id:uuid}", operation_id="updateSite", summary="Change a site's name, callback URL or team", opt=ADMIN
    )
    async def update_site(
        self,
        site_id: FromPath[uuid.UUID],
        data: JSONBody[SiteUpdate],
        request: Request[Any, Any, Any],
        principal: NamedDependency[Principal],
    ) -> SitePublic:
        requires_admin(principal)
        return await write(request, lambda conn: services.update_site(conn, site_id, data))

    @post(
        "/{site_id:uuid}/rotate-key",
        operation_id="rotateSiteKey",
        summary="Replace a site's key",
        status_code=200,
        opt=ADMIN,
    )
    async def rotate_key(
        self, site_id: FromPath[uuid.UUID], request: Request[Any, Any, Any], principal: NamedDependency[Principal]
    ) -> SiteCreated:
        """The new key, once; the old one is refused from now on (and callbacks are signed with the new one)."""
        requires_admin(principal)
        settings = request.app.state.settings
        return await write(request, lambda conn: services.rotate_key(conn, site_id, settings))

    @post(
        "/{site_id:uuid}/revoke", operation_id="revokeSite", summary="Revoke a site's key", status_code=200, opt=ADMIN
    )
    async def revoke_site(
        self, site_id: FromPath[uuid.UUID], request: Request[Any, Any, Any], principal: NamedDependency[Principal]
    ) -> SitePublic:
        """Its connector is refused (401) and it gets no callbacks; its conversations stay. Rotating brings it back."""
        requires_admin(principal)
        return await write(request, lambda conn: services.revoke_site(conn, site_id))


class ConnectController(Controller):
    """Where a site's connector (``service.connect.SwitchboardBridge``) sends its events."""

    path = "/api/v1/connect"
    tags = ["Sites"]

    @post(
        "/events",
        operation_id="sendSiteEvents",
        summary="Events of a connected site",
        status_code=200,
        request_max_body_size=MAX_BODY_BYTES,
    )
    async def events(
        self, request: Request[Any, Any, Any], pocketping: NamedDependency[SwitchboardPocketPing]
    ) -> ConnectResult:
        """Signed with the site key (``Switchboard-Site-Key``, ``Switchboard-Timestamp``, ``Switchboard-Signature``:
        ``v1=`` HMAC-SHA256 of ``"{timestamp}." + body``); 401 and nothing stored otherwise. Applied in order, each
        event once; a 200 means every event in it is committed (applied, a duplicate, or rejected for good)."""
        body = await request.body()
        settings = request.app.state.settings
        async with engine(request).connect() as conn:
            site = await services.authenticate(
                conn, request.headers, body, settings.connect_signature_tolerance_seconds
            )
        if isinstance(site, str):
            log.info("site request refused", reason=site)
            raise NotAuthorizedException(f"Site request refused: {site}")
        try:
            batch = ConnectBatch.model_validate_json(body)
        except ValidationError as exc:
            error = exc.errors()[0]
            field = ".".join(str(part) for part in error["loc"]) or "body"
            raise field_malformed(field, error["msg"]) from None
        return await services.ingest(engine(request), pocketping, site, batch)
