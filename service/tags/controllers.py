"""Tag endpoints: a team's tags (``/api/v1/teams/{id}/tags``) and a conversation's (``.../conversations/{id}/tags``)."""

from __future__ import annotations

import uuid
from typing import Any

from litestar import Controller, Request, delete, get, patch, post
from litestar.di import NamedDependency
from litestar.params import FromPath, JSONBody

from service.auth.principal import Principal, requires_lead, requires_team_member
from service.deps import read, write
from service.tags import services
from service.tags.schemas import ConversationTagCreate, ConversationTagList, TagCreate, TagList, TagPublic, TagUpdate


class TeamTagController(Controller):
    """A team's tags: its members read them, its leads (and admins) change them."""

    path = "/api/v1/teams/{team_id:uuid}/tags"
    tags = ["Tags"]

    @get("", operation_id="listTeamTags", summary="A team's tags, by name")
    async def list_tags(
        self, team_id: FromPath[uuid.UUID], request: Request[Any, Any, Any], principal: NamedDependency[Principal]
    ) -> TagList:
        requires_team_member(principal, team_id, "Team")
        return await read(request, lambda conn: services.list_tags(conn, team_id))

    @post("", operation_id="createTeamTag", summary="Create a tag")
    async def create_tag(
        self,
        team_id: FromPath[uuid.UUID],
        data: JSONBody[TagCreate],
        request: Request[Any, Any, Any],
        principal: NamedDependency[Principal],
    ) -> TagPublic:
        """The team's leads; a name the team already has (whatever its case) is a 409 naming ``name``."""
        requires_lead(principal, team_id)
        return await write(request, lambda conn: services.create_tag(conn, team_id, data, principal))

    @patch("/{tag_id:uuid}", operation_id="updateTeamTag", summary="Rename or recolour a tag")
    async def update_tag(
        self,
        team_id: FromPath[uuid.UUID],
        tag_id: FromPath[uuid.UUID],
        data: JSONBody[TagUpdate],
        request: Request[Any, Any, Any],
        principal: NamedDependency[Principal],
    ) -> TagPublic:
        requires_lead(principal, team_id)
        return await write(request, lambda conn: services.update_tag(conn, team_id, tag_id, data, principal))

    @delete("/{tag_id:uuid}", operation_id="deleteTeamTag", summary="Delete a tag")
    async def delete_tag(
        self,
        team_id: FromPath[uuid.UUID],
        tag_id: FromPath[uuid.UUID],
        request: Request[Any, Any, Any],
        principal: NamedDependency[Principal],
    ) -> None:
        """It leaves every conversation, and the team's rules and macros no longer set it."""
        requires_lead(principal, team_id)
        await write(request, lambda conn: services.delete_tag(conn, team_id, tag_id, principal))


class ConversationTagController(Controller):
    """The tags on a conversation: members of its team put the team's tags on and take them off."""

    path = "/api/v1/conversations/{conversation_id:str}/tags"
    tags = ["Tags"]

    @get("", operation_id="listConversationTags", summary="The conversation's tags")
    async def list_tags(
        self, conversation_id: FromPath[str], request: Request[Any, Any, Any], principal: NamedDependency[Principal]
    ) -> ConversationTagList:
        return await read(request, lambda conn: services.list_conversation_tags(conn, conversation_id, principal))

    @post("", operation_id="tagConversation", summary="Put a tag on the conversation", status_code=200)
    async def tag(
        self,
        conversation_id: FromPath[str],
        data: JSONBody[ConversationTagCreate],
        request: Request[Any, Any, Any],
        principal: NamedDependency[Principal],
    ) -> ConversationTagList:
        """A tag of the conversation's team (422 naming ``tagId`` for any other); already on it: nothing changes."""
        return await write(
            request, lambda conn: services.tag_conversation(conn, conversation_id, data.tag_id, principal)
        )

    @delete(
        "/{tag_id:uuid}", operation_id="untagConversation", summary="Take a tag off the conversation", status_code=200
    )
    async def untag(
        self,
        conversation_id: FromPath[str],
        tag_id: FromPath[uuid.UUID],
        request: Request[Any, Any, Any],
        principal: NamedDependency[Principal],
    ) -> ConversationTagList:
        """404 when the tag is not on it."""
        return await write(request, lambda conn: services.untag_conversation(conn, conversation_id, tag_id, principal))
