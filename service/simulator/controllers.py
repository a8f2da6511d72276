"""``POST /api/v1/teams/{id}/simulations``: replay a past period against a draft of the team's settings."""

from __future__ import annotations

import uuid
from typing import Any

from litestar import Controller, Request, post
from litestar.di import NamedDependency
from litestar.params import FromPath, JSONBody

from service.auth.principal import Principal, requires_lead
from service.deps import engine
from service.simulator.schemas import SimulationCreate, SimulationPublic
from service.simulator.services import simulate_period


class SimulationController(Controller):
    """The policy simulator, for the team's leads and admins (it shows each member's load)."""

    path = "/api/v1/teams"
    tags = ["Teams"]

    @post(
        "/{team_id:uuid}/simulations",
        operation_id="simulateTeamPolicy",
        summary="Replay a past period against draft settings",
        status_code=200,
    )
    async def simulate(
        self,
        team_id: FromPath[uuid.UUID],
        data: JSONBody[SimulationCreate],
        request: Request[Any, Any, Any],
        principal: NamedDependency[Principal],
    ) -> SimulationPublic:
        """Nothing is stored: the answer holds the draft's figures beside the real ones (docs/routing.md)."""
        requires_lead(principal, team_id)
        return await simulate_period(engine(request), team_id, data)
