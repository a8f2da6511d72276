"""``/api/v1/audit-events`` (admins) and ``/api/v1/teams/{id}/assignments`` (the team's leads and admins)."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Any

from litestar import Controller, Request, get
from litestar.di import NamedDependency
from litestar.params import FromPath, QueryParameter

from service.auth.principal import Principal, requires_admin, requires_lead
from service.deps import Cursor, Limit, read
from service.history import services
from service.history.schemas import AssignmentPage, AuditEventPage
from service.history.services import Window

Since = Annotated[
    datetime | None, QueryParameter(name="from", description="Only rows from this time on (RFC 3339; no offset: UTC)")
]
Until = Annotated[
    datetime | None, QueryParameter(name="to", description="Only rows before this time (RFC 3339; no offset: UTC)")
]


class HistoryController(Controller):
    """What happened, page by page, newest first."""

    path = "/api/v1"
    tags = ["History"]

    @get("/audit-events", operation_id="listAuditEvents", summary="The audit log (admins)", opt={"admin": True})
    async def audit_events(
        self,
        request: Request[Any, Any, Any],
        principal: NamedDependency[Principal],
        action: Annotated[str | None, QueryParameter(description="e.g. team.updated", max_length=100)] = None,
        subject_type: Annotated[
            str | None, QueryParameter(name="subjectType", description="e.g. team, operator", max_length=100)
        ] = None,
        subject_id: Annotated[str | None, QueryParameter(name="subjectId", max_length=200)] = None,
        actor_id: Annotated[uuid.UUID | None, QueryParameter(name="actorId", description="Who acted")] = None,
        since: Since = None,
        until: Until = None,
        cursor: Cursor = None,
        limit: Limit = 50,
    ) -> AuditEventPage:
        """Every configuration change: who made it, from which address, and the changed fields."""
        requires_admin(principal)
        window = Window(since, until, cursor, limit)
        return await read(
            request,
            lambda conn: services.audit_events(
                conn, window, action=action, subject_type=subject_type, subject_id=subject_id, actor_id=actor_id
            ),
        )

    @get(
        "/teams/{team_id:uuid}/assignments",
        operation_id="listTeamAssignments",
        summary="Who held the team's conversations, and why (leads)",
    )
    async def team_assignments(
        self,
        team_id: FromPath[uuid.UUID],
        request: Request[Any, Any, Any],
        principal: NamedDependency[Principal],
        operator_id: Annotated[uuid.UUID | None, QueryParameter(name="operatorId")] = None,
        conversation_id: Annotated[str | None, QueryParameter(name="conversationId", max_length=100)] = None,
        since: Since = None,
        until: Until = None,
        cursor: Cursor = None,
        limit: Limit = 50,
    ) -> AssignmentPage:
        """Each assignment started in the window: routed, claimed, transferred..., and how it ended."""
        requires_lead(principal, team_id)
        window = Window(since, until, cursor, limit)
        return await read(
            request,
            lambda conn: services.team_assignments(
                conn, team_id, window, operator_id=operator_id, conversation_id=conversation_id
            ),
        )
