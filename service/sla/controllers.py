"""``/api/v1/teams/{teamId}/sla-policies``: a team's SLA policies, managed by its leads and admins."""

from __future__ import annotations

import uuid
from typing import Any

from litestar import Controller, Request, delete, get, patch, post
from litestar.di import NamedDependency
from litestar.params import FromPath, JSONBody

from service.auth.principal import Principal, requires_lead
from service.deps import read, write
from service.sla import policies
from service.sla.schemas import SlaPolicyCreate, SlaPolicyList, SlaPolicyPublic, SlaPolicyUpdate


class SlaPolicyController(Controller):
    """SLA targets per priority and their escalation steps (see docs/routing.md, "SLA policies")."""

    path = "/api/v1/teams/{team_id:uuid}/sla-policies"
    tags = ["SLA"]

    @get("", operation_id="listSlaPolicies", summary="The team's SLA policies")
    async def list_policies(
        self, team_id: FromPath[uuid.UUID], request: Request[Any, Any, Any], principal: NamedDependency[Principal]
    ) -> SlaPolicyList:
        """By priority, the catch-all (no priority) last."""
        requires_lead(principal, team_id)
        return await read(request, lambda conn: policies.list_policies(conn, team_id))

    @post("", operation_id="createSlaPolicy", summary="Add an SLA policy", status_code=201)
    async def create_policy(
        self,
        team_id: FromPath[uuid.UUID],
        data: JSONBody[SlaPolicyCreate],
        request: Request[Any, Any, Any],
        principal: NamedDependency[Principal],
    ) -> SlaPolicyPublic:
        """One per priority (409 naming ``priority``); an overflow step names another team (422 naming it)."""
        requires_lead(principal, team_id)
        return await write(request, lambda conn: policies.create_policy(conn, team_id, data, principal.operator_id))

    @get("/{policy_id:uuid}", operation_id="getSlaPolicy", summary="An SLA policy")
    async def get_policy(
        self,
        team_id: FromPath[uuid.UUID],
        policy_id: FromPath[uuid.UUID],
        request: Request[Any, Any, Any],
        principal: NamedDependency[Principal],
    ) -> SlaPolicyPublic:
        requires_lead(principal, team_id)
        return await read(request, lambda conn: policies.get_policy(conn, team_id, policy_id))

    @patch("/{policy_id:uuid}", operation_id="updateSlaPolicy", summary="Change an SLA policy")
    async def update_policy(
        self,
        team_id: FromPath[uuid.UUID],
        policy_id: FromPath[uuid.UUID],
        data: JSONBody[SlaPolicyUpdate],
        request: Request[Any, Any, Any],
        principal: NamedDependency[Principal],
    ) -> SlaPolicyPublic:
        """Only the fields given change; running clocks keep their deadlines."""
        requires_lead(principal, team_id)
        return await write(
            request, lambda conn: policies.update_policy(conn, team_id, policy_id, data, principal.operator_id)
        )

    @delete("/{policy_id:uuid}", operation_id="deleteSlaPolicy", summary="Remove an SLA policy", status_code=204)
    async def delete_policy(
        self,
        team_id: FromPath[uuid.UUID],
        policy_id: FromPath[uuid.UUID],
        request: Request[Any, Any, Any],
        principal: NamedDependency[Principal],
    ) -> None:
        requires_lead(principal, team_id)
        await write(request, lambda conn: policies.delete_policy(conn, team_id, policy_id, principal.operator_id))
