"""Each team's PocketPing bridges, built from its stored settings and rebuilt when they change."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from dataclasses import dataclass, field
from typing import Any

import structlog
from pocketping import PocketPing

from service.bridges.platforms import PlatformBridge, build_bridge
from service.files.services import Files
from service.settings import Settings
from service.teams.services import BRIDGE_REQUIRED, bridge_secret

log = structlog.get_logger(__name__)
# A replaced bridge may still be posting for a call that started before the change: its HTTP
# client is closed this much later, not under that call's feet.
RETIRE_AFTER_SECONDS = 60.0


@dataclass
class TeamBridges:
    """The enabled bridges of one team, by platform, as built from ``stored`` (the team's ``bridge_settings``)."""

    team_id: uuid.UUID
    stored: dict[str, Any]
    bridges: dict[str, PlatformBridge] = field(default_factory=dict)


class BridgeRegistry:
    """Per-process cache of team bridges, keyed by team; callers pass the settings they just read.

    Every caller reads the team's ``bridge_settings`` in the query it makes anyway (the
    conversation's current team), so a change made through the API is followed at the next
    call, in every process, without a restart or a message between processes.
    """

    def __init__(self, settings: Settings, files: Files) -> None:
        self._settings = settings
        # Where the files on bridged messages are read from, and files from the chats are kept.
        self.files = files
        self._teams: dict[uuid.UUID, TeamBridges] = {}
        self._lock = asyncio.Lock()
        self._retiring: dict[asyncio.Task[None], TeamBridges] = {}
        # Given to the SDK bridges, which look up replied-to messages in its storage.
        self.pocketping: PocketPing | None = None

    @property
    def settings(self) -> Settings:
        return self._settings

    async def team(self, team_id: uuid.UUID, stored: dict[str, Any]) -> TeamBridges:
        """The team's bridges for these stored settings; built (or rebuilt) when they differ from the cached ones."""
        current = self._teams.get(team_id)
        if current is not None and current.stored == stored:
            return current
        async with self._lock:
            current = self._teams.get(team_id)
            if current is not None and current.stored == stored:
                return current
            fresh = TeamBridges(team_id, stored, await self._build(team_id, stored))
            self._teams[team_id] = fresh
        if current is not None:
            self._retire(current)
        return fresh

    async def _build(self, team_id: uuid.UUID, stored: dict[str, Any]) -> dict[str, PlatformBridge]:
        bridges: dict[str, PlatformBridge] = {}
        for platform, entry in stored.items():
            if not entry.get("enabled") or platform not in BRIDGE_REQUIRED:
                continue
            try:
                token = bridge_secret(self._settings.secret_key, stored, platform, "botToken")
                if token is None:
                    continue
                bridge = build_bridge(platform, entry, token, self._settings)
                await bridge.init(self.pocketping)  # type: ignore[arg-type]
            except Exception:
                # Never the exception's text: it could quote the settings.
                log.warning("bridge not built", team_id=str(team_id), platform=platform)
                continue
            bridges[platform] = bridge
        log.info("team bridges built", team_id=str(team_id), platforms=sorted(bridges))
        return bridges

    def _retire(self, old: TeamBridges) -> None:
        async def later() -> None:
            await asyncio.sleep(RETIRE_AFTER_SECONDS)
            await _destroy(old)

        task = asyncio.get_running_loop().create_task(later())
        self._retiring[task] = old
        task.add_done_callback(lambda done: self._retiring.pop(done, None))

    async def close(self) -> None:
        """Close every HTTP client (process shutdown)."""
        for task, old in list(self._retiring.items()):
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            await _destroy(old)
        for team in self._teams.values():
            await _destroy(team)
        self._teams.clear()


async def _destroy(team: TeamBridges) -> None:
    for bridge in team.bridges.values():
        with contextlib.suppress(Exception):
            await bridge.destroy()
