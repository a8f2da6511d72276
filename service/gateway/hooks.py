"""What the widget gateway asks of the domains: supplied where the app and the worker are wired, never imported."""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from pocketping.bridges import Bridge
from sqlalchemy.ext.asyncio import AsyncConnection


@dataclass(frozen=True)
class Availability:
    """Who can answer the visitor: an operator of the visitor's team online, and the team's AI."""

    online: bool
    ai_enabled: bool
    # Seconds a visitor message waits for a person before the AI answers (when the AI is on).
    ai_active_after: int | None


@dataclass(frozen=True)
class Greeting:
    """What the widget shows on connect: the team's welcome message (its offline message while it is closed), the
    assignee's display name, availability, and when a closed team opens."""

    welcome: str | None
    operator_name: str | None
    availability: Availability
    outside_hours: bool = False
    opens_at: datetime | None = None


@dataclass(frozen=True)
class GatewayHooks:
    """The domains' part in the widget protocol; the hub calls these with a connection of its own."""

    # After every operator message, in a transaction of its own: what a reply means for timers and the AI.
    operator_replied: Callable[[AsyncConnection, str, uuid.UUID | None], Awaitable[None]]
    # The visitor's page, language or identity may have changed (connect, identify): the routing rules
    # choose the team of a session that routing has not placed yet.
    choose_team: Callable[[AsyncConnection, str], Awaitable[None]]
    # The greeting for a session, at connect.
    greeting: Callable[[AsyncConnection, str], Awaitable[Greeting]]
    # The visitor's rating, in a transaction of its own: stored once (False when already rated, None: no session).
    rated: Callable[[AsyncConnection, str, int, str | None], Awaitable[bool | None]]
    # The presence endpoint: the session's team's availability (no session: the default team's; None: no such session).
    availability: Callable[[AsyncConnection, str | None], Awaitable[Availability | None]]
    # Which of these sessions deal with the team: they get its availability changes.
    team_sessions: Callable[[AsyncConnection, uuid.UUID, Sequence[str]], Awaitable[list[str]]]
    # Bridges that look their platforms' message ids up themselves, so the SDK must call their
    # edit and delete hooks although it has no id to give them.
    reads_own_message_ids: Callable[[Bridge], bool]


@dataclass(frozen=True)
class HostHooks:
    """The embedding app's own PocketPing hooks and bridges (library mode), called as the SDK calls them."""

    bridges: Sequence[Bridge] = ()
    on_new_session: Callable[..., Any] | None = None
    on_message: Callable[..., Any] | None = None
    on_event: Callable[..., Any] | None = None
    on_identify: Callable[..., Any] | None = None
    on_csat: Callable[..., Any] | None = None
