"""SLA deadlines in business time: the at-risk moment and the deadline skip the team's closed hours."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from service.hours import calendar
from service.sla.clocks import deadlines

OFFICE = calendar.parse_schedule(
    {
        "timeZone": "Europe/Paris",
        "weekly": {day: ["09:00-12:00", "14:00-18:00"] for day in ("mon", "tue", "wed", "thu", "fri")},
        "holidays": ["2026-12-25"],
    }
)


def paris(day: int, hour: int, minute: int = 0) -> datetime:
    """December 2026 in Paris (UTC+1)."""
    return datetime(2026, 12, day, hour - 1, minute, tzinfo=UTC)


def test_around_the_clock_is_plain_addition() -> None:
    start = datetime(2026, 12, 5, 23, 0, tzinfo=UTC)
    assert deadlines(start, 3600, 0.8, calendar.ALWAYS_OPEN) == (
        start + timedelta(seconds=2880),
        start + timedelta(seconds=3600),
    )


def test_the_lunch_break_and_the_night_pause_the_clock() -> None:
    # Thursday 11:30: 30 min before lunch, 4 h in the afternoon, then Friday from 09:00.
    assert deadlines(paris(3, 11, 30), 2 * 3600, 0.25, OFFICE) == (paris(3, 12), paris(3, 15, 30))
    assert deadlines(paris(3, 11, 30), 5 * 3600, 0.5, OFFICE) == (paris(3, 16), paris(4, 9, 30))


def test_a_clock_started_while_closed_runs_from_the_opening() -> None:
    # Saturday noon: nothing runs until Monday 09:00.
    assert deadlines(paris(5, 12), 600, 0.5, OFFICE) == (paris(7, 9, 5), paris(7, 9, 10))


def test_holidays_are_closed() -> None:
    # Thursday 24 December 17:00, two hours: one that evening; Christmas (a holiday) and the weekend are closed.
    assert deadlines(paris(24, 17), 2 * 3600, 0.5, OFFICE) == (paris(24, 18), paris(28, 10))
