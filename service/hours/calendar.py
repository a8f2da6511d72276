"""A weekly schedule of open hours in an IANA time zone, with holidays; pure functions over UTC instants.

Intervals are wall-clock times of one local day, half-open (``09:00-17:30`` is open at 09:00, closed
at 17:30); ``24:00`` ends an interval at the next midnight, so ``mon 20:00-24:00`` and ``tue 00:00-02:00``
form one open span. Across DST changes the wall clock decides: an interval starting in a skipped hour
starts at the change, and a repeated hour counts twice when an interval covers both passes (its first
pass is the one an interval end inside it names). A schedule without any weekly interval is open all
day, every day (except its holidays): the "no hours configured" case is 24/7.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from functools import cached_property
from itertools import pairwise
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
DAY_MINUTES = 24 * 60
# Bounds that keep a schedule small enough to scan day by day.
MAX_INTERVALS_PER_DAY = 12
MAX_HOLIDAYS = 366
MAX_HOLIDAY_RANGE_DAYS = 366
# How far past the last holiday a scan looks for an opening before saying "never".
_HORIZON = timedelta(days=400)

_INTERVAL = re.compile(r"^(\d{2}):(\d{2})-(\d{2}):(\d{2})$")

Interval = tuple[int, int]
"""Minutes since local midnight: (start, end), 0 <= start < end <= 1440."""


class ScheduleError(ValueError):
    """A schedule document that cannot be a schedule; ``field`` is the JSON path of the bad value."""

    def __init__(self, field: str, detail: str) -> None:
        super().__init__(f"{field}: {detail}")
        self.field = field
        self.detail = detail


@dataclass(frozen=True)
class Schedule:
    """Open intervals per weekday (Monday first) in ``time_zone``; holidays are inclusive date ranges."""

    time_zone: str = "UTC"
    weekly: tuple[tuple[Interval, ...], ...] = ((),) * 7
    holidays: tuple[tuple[date, date], ...] = ()
    zone: ZoneInfo = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "zone", ZoneInfo(self.time_zone))

    @property
    def always_open(self) -> bool:
        """No weekly interval configured: open all day every day, holidays aside."""
        return not any(self.weekly)

    @cached_property
    def last_holiday(self) -> date | None:
        """The latest holiday date, or None."""
        return max((end for _, end in self.holidays), default=None)

    def is_holiday(self, day: date) -> bool:
        """Whether the local date ``day`` is a holiday."""
        return any(start <= day <= end for start, end in self.holidays)


ALWAYS_OPEN = Schedule()
"""The schedule of a team with no business hours: open 24/7."""


# --- parsing -------------------------------------------------------------------------------------


def _minutes(hours: str, minutes: str) -> int | None:
    h, m = int(hours), int(minutes)
    if m > 59 or h > 24 or (h == 24 and m):
        return None
    return h * 60 + m


def parse_interval(text: str) -> Interval | None:
    """``"09:00-17:30"`` as minutes, or None when it is not a valid non-empty interval."""
    found = _INTERVAL.match(text)
    if not found:
        return None
    start, end = _minutes(*found.group(1, 2)), _minutes(*found.group(3, 4))
    if start is None or end is None or start >= end or start == DAY_MINUTES:
        return None
    return (start, end)


def format_interval(interval: Interval) -> str:
    """Minutes back to ``"HH:MM-HH:MM"``."""
    return "-".join(f"{m // 60:02d}:{m % 60:02d}" for m in interval)


def parse_day(pointer: str, raw: object) -> tuple[Interval, ...]:
    """One weekday's list of ``"HH:MM-HH:MM"`` as sorted, non-overlapping intervals (``pointer`` names it in errors)."""
    if not isinstance(raw, list):
        raise ScheduleError(pointer, "must be a list of 'HH:MM-HH:MM' intervals")
    if len(raw) > MAX_INTERVALS_PER_DAY:
        raise ScheduleError(pointer, f"at most {MAX_INTERVALS_PER_DAY} intervals per day")
    intervals: list[tuple[Interval, int]] = []
    for index, text in enumerate(raw):
        interval = parse_interval(text) if isinstance(text, str) else None
        if interval is None:
            raise ScheduleError(f"{pointer}[{index}]", "must be 'HH:MM-HH:MM' with the start before the end")
        intervals.append((interval, index))
    intervals.sort()
    for (previous, _), (current, index) in pairwise(intervals):
        if current[0] < previous[1]:
            raise ScheduleError(
                f"{pointer}[{index}]", f"overlaps {format_interval(previous)}: intervals of a day must not overlap"
            )
    return tuple(interval for interval, _ in intervals)


def _parse_date(pointer: str, text: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise ScheduleError(pointer, "must be a date 'YYYY-MM-DD' or a range 'YYYY-MM-DD/YYYY-MM-DD'") from None


def parse_holidays(raw: object) -> tuple[tuple[date, date], ...]:
    """Dates and ``"first/last"`` ranges as sorted, inclusive (first, last) pairs."""
    if not isinstance(raw, list):
        raise ScheduleError("holidays", "must be a list of dates or date ranges")
    if len(raw) > MAX_HOLIDAYS:
        raise ScheduleError("holidays", f"at most {MAX_HOLIDAYS} entries")
    ranges: list[tuple[date, date]] = []
    for index, text in enumerate(raw):
        pointer = f"holidays[{index}]"
        if not isinstance(text, str):
            raise ScheduleError(pointer, "must be a date 'YYYY-MM-DD' or a range 'YYYY-MM-DD/YYYY-MM-DD'")
        first, sep, last = text.partition("/")
        start = _parse_date(pointer, first)
        end = _parse_date(pointer, last) if sep else start
        if end < start:
            raise ScheduleError(pointer, "a range must end on or after its first day")
        if (end - start).days >= MAX_HOLIDAY_RANGE_DAYS:
            raise ScheduleError(pointer, f"a range spans at most {MAX_HOLIDAY_RANGE_DAYS} days")
        ranges.append((start, end))
    return tuple(sorted(set(ranges)))


def parse_zone(raw: object) -> str:
    """An IANA time zone name, checked against the system's tz database."""
    if not isinstance(raw, str) or not raw:
        raise ScheduleError("timeZone", "must be an IANA time zone name such as 'Europe/Paris'")
    try:
        ZoneInfo(raw)
    except (ZoneInfoNotFoundError, ValueError):
        raise ScheduleError("timeZone", f"unknown time zone {raw!r}") from None
    return raw


def parse_schedule(document: Mapping[str, object]) -> Schedule:
    """``{"timeZone", "weekly": {"mon": ["09:00-17:30"], ...}, "holidays": ["2026-12-25", "a/b"]}``."""
    zone = parse_zone(document.get("timeZone"))
    weekly_raw = document.get("weekly", {})
    if not isinstance(weekly_raw, Mapping):
        raise ScheduleError("weekly", "must be an object keyed by weekday ('mon' ... 'sun')")
    unknown = sorted(set(weekly_raw) - set(WEEKDAYS))
    if unknown:
        raise ScheduleError(f"weekly.{unknown[0]}", "is not a weekday: use 'mon' ... 'sun'")
    weekly = tuple(parse_day(f"weekly.{day}", weekly_raw.get(day, [])) for day in WEEKDAYS)
    holidays = parse_holidays(document.get("holidays", []))
    return Schedule(time_zone=zone, weekly=weekly, holidays=holidays)


def schedule_document(schedule: Schedule) -> dict[str, object]:
    """The JSON form ``parse_schedule`` reads (days without intervals left out)."""
    return {
        "timeZone": schedule.time_zone,
        "weekly": {
            day: [format_interval(i) for i in intervals]
            for day, intervals in zip(WEEKDAYS, schedule.weekly, strict=True)
            if intervals
        },
        "holidays": holiday_texts(schedule.holidays),
    }


def holiday_texts(holidays: tuple[tuple[date, date], ...]) -> list[str]:
    """Holiday ranges back to ``"YYYY-MM-DD"`` (one day) or ``"YYYY-MM-DD/YYYY-MM-DD"``."""
    return [start.isoformat() if start == end else f"{start}/{end}" for start, end in holidays]


# --- arithmetic ----------------------------------------------------------------------------------


def _utc(at: datetime) -> datetime:
    if at.tzinfo is None:
        raise ValueError("business-hours arithmetic needs aware datetimes")
    return at.astimezone(UTC)


def _instant(zone: ZoneInfo, day: date, minute: int) -> datetime:
    """The UTC instant of a local wall time; a wall time the clock skips maps to the moment of the change."""
    if minute == DAY_MINUTES:
        day, minute = day + timedelta(days=1), 0
    wall = datetime.combine(day, time(minute // 60, minute % 60))
    first = wall.replace(tzinfo=zone).astimezone(UTC)
    if first.astimezone(zone).replace(tzinfo=None) == wall:
        return first
    # A gap: the two readings of the wall time straddle the change; find it to the second.
    low, high = sorted((first, wall.replace(tzinfo=zone, fold=1).astimezone(UTC)))
    after = high.astimezone(zone).utcoffset()
    while high - low > timedelta(seconds=1):
        middle = low + (high - low) / 2
        middle = middle.replace(microsecond=0)
        if middle.astimezone(zone).utcoffset() == after:
            high = middle
        else:
            low = middle
    return high


def _day_spans(schedule: Schedule, day: date) -> list[tuple[datetime, datetime]]:
    if schedule.is_holiday(day):
        return []
    intervals = schedule.weekly[day.weekday()] or (((0, DAY_MINUTES),) if schedule.always_open else ())
    spans = []
    for start, end in intervals:
        low, high = _instant(schedule.zone, day, start), _instant(schedule.zone, day, end)
        if low < high:
            spans.append((low, high))
    return spans


def spans(schedule: Schedule, at: datetime) -> Iterator[tuple[datetime, datetime | None]]:
    """The open spans (UTC, merged where they touch) that end after ``at``, in order; None ends never."""
    at = _utc(at)
    day = at.astimezone(schedule.zone).date() - timedelta(days=1)
    last_holiday = schedule.last_holiday
    horizon = max(day, last_holiday or day) + _HORIZON
    pending: tuple[datetime, datetime] | None = None
    while day <= horizon:
        if schedule.always_open and (last_holiday is None or day > last_holiday):
            start = _instant(schedule.zone, day, 0)
            if pending is not None:
                if pending[1] >= start:
                    start = pending[0]
                elif pending[1] > at:
                    yield pending
            yield (start, None)
            return
        for low, high in _day_spans(schedule, day):
            if pending is not None and low <= pending[1]:
                pending = (pending[0], max(pending[1], high))
                continue
            if pending is not None and pending[1] > at:
                yield pending
            pending = (low, high)
        day += timedelta(days=1)
    if pending is not None and pending[1] > at:
        yield pending


def is_open(schedule: Schedule, at: datetime) -> bool:
    """Whether the schedule is open at the instant ``at``."""
    at = _utc(at)
    first = next(spans(schedule, at), None)
    return first is not None and first[0] <= at


def next_opening(schedule: Schedule, at: datetime) -> datetime | None:
    """The earliest instant at or after ``at`` when the schedule is open (``at`` if open); None if never."""
    at = _utc(at)
    first = next(spans(schedule, at), None)
    return None if first is None else max(first[0], at)


def next_closing(schedule: Schedule, at: datetime) -> datetime | None:
    """The earliest instant at or after ``at`` when the schedule is closed (``at`` if closed); None if never."""
    at = _utc(at)
    first = next(spans(schedule, at), None)
    if first is None or first[0] > at:
        return at
    return first[1]


def business_seconds_between(schedule: Schedule, start: datetime, end: datetime) -> float:
    """Open seconds in ``[start, end)``; 0 when ``end`` is not after ``start``."""
    start, end = _utc(start), _utc(end)
    total = timedelta(0)
    if end <= start:
        return 0.0
    for low, high in spans(schedule, start):
        if low >= end:
            break
        total += (end if high is None else min(high, end)) - max(low, start)
        if high is None or high >= end:
            break
    return total.total_seconds()


def add_business_seconds(schedule: Schedule, start: datetime, seconds: float) -> datetime:
    """The earliest instant with ``seconds`` of open time since ``start`` (``start`` itself for 0).

    The inverse of ``business_seconds_between``: ``business_seconds_between(s, start, result) == seconds``.
    Raises ValueError for negative seconds or a schedule that never opens again.
    """
    start = _utc(start)
    if seconds < 0:
        raise ValueError("seconds must not be negative")
    remaining = timedelta(seconds=seconds)
    if not remaining:
        return start
    for low, high in spans(schedule, start):
        low = max(low, start)
        if high is None or remaining <= high - low:
            return low + remaining
        remaining -= high - low
    raise ValueError("the schedule never opens again")
