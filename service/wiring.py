"""How the domains answer the widget gateway's hooks: one set, given to the hub by the app and the worker alike."""

from __future__ import annotations

from service.ai import services as ai
from service.bridges.dispatch import reads_own_message_ids
from service.csat import services as csat
from service.gateway.hooks import GatewayHooks
from service.presence import services as presence
from service.teams import services as teams

GATEWAY_HOOKS = GatewayHooks(
    operator_replied=ai.operator_replied,
    greeting=teams.greeting,
    operator_available=presence.anyone_online,
    rated=csat.rate,
    reads_own_message_ids=reads_own_message_ids,
)
