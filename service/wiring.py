"""How the domains answer the widget gateway's hooks: one set, given to the hub by the app and the worker alike."""

from __future__ import annotations

from service.ai import services as ai
from service.bridges.dispatch import reads_own_message_ids
from service.gateway.hooks import GatewayHooks
from service.routing import placement
from service.teams import visitors

GATEWAY_HOOKS = GatewayHooks(
    operator_replied=ai.operator_replied,
    choose_team=placement.choose_team,
    greeting=visitors.greeting,
    availability=visitors.availability,
    team_sessions=visitors.team_sessions,
    reads_own_message_ids=reads_own_message_ids,
)
