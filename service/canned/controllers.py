"""Canned-response endpoints under ``/api/v1/canned-responses``, including rendering for a conversation."""

from __future__ import annotations

import uuid
from typing import Annotated, Any

from litestar import Controller, Request, delete, get, patch, post
from litestar.di import NamedDependency
from litestar.params import FromPath, JSONBody, QueryParameter

from service.auth.principal import Principal
from service.canned import services
from service.canned.schemas import (
    CannedCreate,
    CannedPage,
    CannedPublic,
    CannedUpdate,
    PreviewRequest,
    RenderedPublic,
    RenderRequest,
)
from service.deps import Cursor, Limit, read, write


class CannedResponseController(Controller):
    """Reusable replies: your own, and your teams' (managed by their leads)."""

    path = "/api/v1/canned-responses"
    tags = ["Canned responses"]

    @get("", operation_id="listCannedResponses", summary="The canned responses you can use")
    async def list_canned(
        self,
        request: Request[Any, Any, Any],
        principal: NamedDependency[Principal],
        team_id: Annotated[uuid.UUID | None, QueryParameter(name="teamId", description="Only this team's")] = None,
        prefix: Annotated[
            str | None,
            QueryParameter(pattern=r"^[A-Za-z0-9_\-]{1,32}$", description="Shortcuts starting with this ('/' picker)"),
        ] = None,
        cursor: Cursor = None,
        limit: Limit = 50,
    ) -> CannedPage:
        """Your personal responses and those of your teams (or of ``teamId``), by shortcut."""
        return await read(
            request,
            lambda conn: services.list_canned(
                conn, principal, team_id=team_id, prefix=prefix, cursor=cursor, limit=limit
            ),
        )

    @post("", operation_id="createCannedResponse", summary="Create a canned response")
    async def create_canned(
        self, data: JSONBody[CannedCreate], request: Request[Any, Any, Any], principal: NamedDependency[Principal]
    ) -> CannedPublic:
        """With ``teamId``: the team's (its leads); without: your own. 409 naming ``shortcut`` if taken."""
        return await write(request, lambda conn: services.create_canned(conn, data, principal))

    @post("/preview", operation_id="previewCannedResponse", summary="Fill a draft body", status_code=200)
    async def preview(
        self, data: JSONBody[PreviewRequest], request: Request[Any, Any, Any], principal: NamedDependency[Principal]
    ) -> RenderedPublic:
        """A body not saved yet, checked and filled as ``render`` would (for editors' live previews)."""
        return await read(
            request, lambda conn: services.preview_canned(conn, data.body, data.conversation_id, principal)
        )

    @get("/{canned_id:uuid}", operation_id="getCannedResponse", summary="A canned response")
    async def get_canned(
        self, canned_id: FromPath[uuid.UUID], request: Request[Any, Any, Any], principal: NamedDependency[Principal]
    ) -> CannedPublic:
        return await read(request, lambda conn: services.get_canned(conn, canned_id, principal))

    @patch("/{canned_id:uuid}", operation_id="updateCannedResponse", summary="Change a canned response")
    async def update_canned(
        self,
        canned_id: FromPath[uuid.UUID],
        data: JSONBody[CannedUpdate],
        request: Request[Any, Any, Any],
        principal: NamedDependency[Principal],
    ) -> CannedPublic:
        """The team's leads, or the owner of a personal one."""
        return await write(request, lambda conn: services.update_canned(conn, canned_id, data, principal))

    @delete("/{canned_id:uuid}", operation_id="deleteCannedResponse", summary="Delete a canned response")
    async def delete_canned(
        self, canned_id: FromPath[uuid.UUID], request: Request[Any, Any, Any], principal: NamedDependency[Principal]
    ) -> None:
        await write(request, lambda conn: services.delete_canned(conn, canned_id, principal))

    @post(
        "/{canned_id:uuid}/render",
        operation_id="renderCannedResponse",
        summary="Fill a canned response for a conversation",
        status_code=200,
    )
    async def render(
        self,
        canned_id: FromPath[uuid.UUID],
        data: JSONBody[RenderRequest],
        request: Request[Any, Any, Any],
        principal: NamedDependency[Principal],
    ) -> RenderedPublic:
        """Placeholders filled from the conversation's visitor and team and from you; nothing is sent."""
        return await read(
            request, lambda conn: services.render_canned(conn, canned_id, data.conversation_id, principal)
        )
