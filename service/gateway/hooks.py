"""What the widget gateway asks of the domains: supplied where the app and the worker are wired, never imported."""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from pocketping.bridges import Bridge
from sqlalchemy.ext.asyncio import AsyncConnection


@dataclass(frozen=True)
class Greeting:
    """What the widget shows on connect: the team's welcome message and the assignee's display name."""

    welcome: str | None
    operator_name: str | None


@dataclass(frozen=True)
class GatewayHooks:
    """The domains' part in the widget protocol; the hub calls these with a connection of its own."""

    # After every operator message, in a transaction of its own: what a reply means for timers and the AI.
    operator_replied: Callable[[AsyncConnection, str, uuid.UUID | None], Awaitable[None]]
    # The greeting for a session, at connect.
    greeting: Callable[[AsyncConnection, str], Awaitable[Greeting]]
    # Whether someone is there to answer: connect's ``operatorOnline`` and the presence endpoint.
    operator_available: Callable[[AsyncConnection], Awaitable[bool]]
    # The visitor's rating, in a transaction of its own: stored once (False when already rated, None: no session).
    rated: Callable[[AsyncConnection, str, int, str | None], Awaitable[bool | None]]
    # Bridges that look their platforms' message ids up themselves, so the SDK must call their
    # edit and delete hooks although it has no id to give them.
    reads_own_message_ids: Callable[[Bridge], bool]
