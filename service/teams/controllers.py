"""Team endpoints: settings, members, routing rules and bridge settings under ``/api/v1/teams``."""

from __future__ import annotations

import uuid
from typing import Any

from litestar import Controller, Request, delete, get, patch, post, put
from litestar.di import NamedDependency
from litestar.params import FromPath, JSONBody

from service.auth.principal import Principal, requires_admin, requires_lead, requires_team_member
from service.deps import Cursor, Limit, read, write
from service.queue import enqueue_drain
from service.settings import Settings
from service.teams import rules as rules_service
from service.teams import services
from service.teams.schemas import (
    BridgesPublic,
    BridgesUpdate,
    MemberCreate,
    MemberList,
    MemberPublic,
    MemberUpdate,
    RuleList,
    RulesReplace,
    TeamCreate,
    TeamPage,
    TeamPublic,
    TeamUpdate,
)


async def _drain(request: Request[Any, Any, Any], team_id: uuid.UUID, trigger: str) -> None:
    """After the commit: room may have opened (capacity, skills, policy), so the queue is offered again."""
    await enqueue_drain(request.app.state.redis, team_id, trigger)


class TeamController(Controller):
    """Teams and their configuration: members read, leads change, admins create and delete."""

    path = "/api/v1/teams"
    tags = ["Teams"]

    @get("", operation_id="listTeams", summary="The caller's teams (every team for admins)")
    async def list_teams(
        self,
        request: Request[Any, Any, Any],
        principal: NamedDependency[Principal],
        cursor: Cursor = None,
        limit: Limit = 50,
    ) -> TeamPage:
        """Ordered by name; bridge settings only on teams the caller leads."""
        return await read(request, lambda conn: services.list_teams(conn, principal, cursor, limit))

    @post("", operation_id="createTeam", summary="Create a team", opt={"admin": True})
    async def create_team(
        self, data: JSONBody[TeamCreate], request: Request[Any, Any, Any], principal: NamedDependency[Principal]
    ) -> TeamPublic:
        """Admins only; a taken name is a 409 naming ``name``."""
        requires_admin(principal)
        return await write(request, lambda conn: services.create_team(conn, data, principal))

    @get("/{team_id:uuid}", operation_id="getTeam", summary="A team's configuration")
    async def get_team(
        self, team_id: FromPath[uuid.UUID], request: Request[Any, Any, Any], principal: NamedDependency[Principal]
    ) -> TeamPublic:
        requires_team_member(principal, team_id, "Team")
        return await read(request, lambda conn: services.get_team(conn, team_id, principal))

    @patch("/{team_id:uuid}", operation_id="updateTeam", summary="Change a team's settings")
    async def update_team(
        self,
        team_id: FromPath[uuid.UUID],
        data: JSONBody[TeamUpdate],
        request: Request[Any, Any, Any],
        principal: NamedDependency[Principal],
    ) -> TeamPublic:
        """Leads and admins; only admins may move ``isDefault``. Policy or capacity changes drain the queue."""
        requires_lead(principal, team_id)
        if data.is_default is not None:
            requires_admin(principal)
        team, drain = await write(request, lambda conn: services.update_team(conn, team_id, data, principal))
        if drain:
            await _drain(request, team_id, "team_settings")
        return team

    @delete("/{team_id:uuid}", operation_id="deleteTeam", summary="Delete a team", opt={"admin": True})
    async def delete_team(
        self, team_id: FromPath[uuid.UUID], request: Request[Any, Any, Any], principal: NamedDependency[Principal]
    ) -> None:
        """Admins only; 409 for the default team or while the team has open conversations."""
        requires_admin(principal)
        await write(request, lambda conn: services.delete_team(conn, team_id, principal))

    # --- members

    @get("/{team_id:uuid}/members", operation_id="listTeamMembers", summary="A team's members")
    async def list_members(
        self, team_id: FromPath[uuid.UUID], request: Request[Any, Any, Any], principal: NamedDependency[Principal]
    ) -> MemberList:
        """Every member with role, capacity, skills and current load, by name."""
        requires_team_member(principal, team_id, "Team")
        return MemberList(items=await read(request, lambda conn: services.list_members(conn, team_id)))

    @post("/{team_id:uuid}/members", operation_id="addTeamMember", summary="Add an operator to a team")
    async def add_member(
        self,
        team_id: FromPath[uuid.UUID],
        data: JSONBody[MemberCreate],
        request: Request[Any, Any, Any],
        principal: NamedDependency[Principal],
    ) -> MemberPublic:
        """Leads and admins; 409 if already a member, 422 for an unknown or deactivated operator."""
        requires_lead(principal, team_id)
        member = await write(request, lambda conn: services.add_member(conn, team_id, data, principal))
        await _drain(request, team_id, "member_added")
        return member

    @patch("/{team_id:uuid}/members/{operator_id:uuid}", operation_id="updateTeamMember", summary="Change a membership")
    async def update_member(
        self,
        team_id: FromPath[uuid.UUID],
        operator_id: FromPath[uuid.UUID],
        data: JSONBody[MemberUpdate],
        request: Request[Any, Any, Any],
        principal: NamedDependency[Principal],
    ) -> MemberPublic:
        """Role, capacity (null = the team default) or skills; capacity and skill changes drain the queue."""
        requires_lead(principal, team_id)
        member, drain = await write(
            request, lambda conn: services.update_member(conn, team_id, operator_id, data, principal)
        )
        if drain:
            await _drain(request, team_id, "member_updated")
        return member

    @delete(
        "/{team_id:uuid}/members/{operator_id:uuid}", operation_id="removeTeamMember", summary="Remove a membership"
    )
    async def remove_member(
        self,
        team_id: FromPath[uuid.UUID],
        operator_id: FromPath[uuid.UUID],
        request: Request[Any, Any, Any],
        principal: NamedDependency[Principal],
    ) -> None:
        """Leads and admins; the operator keeps conversations they hold until they are closed or transferred."""
        requires_lead(principal, team_id)
        await write(request, lambda conn: services.remove_member(conn, team_id, operator_id, principal))

    # --- routing rules

    @get("/{team_id:uuid}/rules", operation_id="listTeamRules", summary="A team's routing rules, in order")
    async def list_rules(
        self, team_id: FromPath[uuid.UUID], request: Request[Any, Any, Any], principal: NamedDependency[Principal]
    ) -> RuleList:
        requires_team_member(principal, team_id, "Team")
        return await read(request, lambda conn: rules_service.list_rules(conn, team_id))

    @put("/{team_id:uuid}/rules", operation_id="replaceTeamRules", summary="Replace a team's routing rules")
    async def replace_rules(
        self,
        team_id: FromPath[uuid.UUID],
        data: JSONBody[RulesReplace],
        request: Request[Any, Any, Any],
        principal: NamedDependency[Principal],
    ) -> RuleList:
        """The whole ordered list at once (reorder, add, edit, remove); all or nothing."""
        requires_lead(principal, team_id)
        return await write(request, lambda conn: rules_service.replace_rules(conn, team_id, data, principal))

    # --- bridges

    @get("/{team_id:uuid}/bridges", operation_id="getTeamBridges", summary="A team's bridge settings")
    async def get_bridges(
        self, team_id: FromPath[uuid.UUID], request: Request[Any, Any, Any], principal: NamedDependency[Principal]
    ) -> BridgesPublic:
        """Leads and admins; secrets appear only as ``...Configured`` flags."""
        requires_lead(principal, team_id)
        team = await read(request, lambda conn: services.get_team(conn, team_id, principal))
        return team.bridges or BridgesPublic()

    @patch("/{team_id:uuid}/bridges", operation_id="updateTeamBridges", summary="Change a team's bridge settings")
    async def update_bridges(
        self,
        team_id: FromPath[uuid.UUID],
        data: JSONBody[BridgesUpdate],
        request: Request[Any, Any, Any],
        principal: NamedDependency[Principal],
    ) -> BridgesPublic:
        """Leads and admins; secrets are encrypted at rest and never returned."""
        requires_lead(principal, team_id)
        settings: Settings = request.app.state.settings
        return await write(
            request, lambda conn: services.update_bridges(conn, team_id, data, principal, settings.secret_key)
        )
