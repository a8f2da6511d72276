"""The time business hours are judged at: the wall clock, moved by ``CLOCK_OFFSET_SECONDS`` (0 in production).

The offset is a rehearsal and test device: every process of a deployment given the same offset lives
the same shifted day (a Monday 08:59 at any hour), while timers stay due in real time, which is what
PostgreSQL and the job queue measure.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from service.settings import Settings

_offset = timedelta(0)


def configure(settings: Settings) -> None:
    """Take this process's offset from its settings (the api and the worker do, when their resources open)."""
    global _offset
    _offset = timedelta(seconds=settings.clock_offset_seconds)


def now() -> datetime:
    """The current business-hours time (UTC)."""
    return datetime.now(UTC) + _offset


def to_real(at: datetime) -> datetime:
    """A business-hours instant as the real instant it happens at (when a timer for it is due)."""
    return at - _offset
