"""Business-hours arithmetic: openings, closings, open seconds and their inverse, across DST and holidays."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from service.hours.calendar import (
    ALWAYS_OPEN,
    Schedule,
    ScheduleError,
    add_business_seconds,
    business_seconds_between,
    is_open,
    next_closing,
    next_opening,
    parse_schedule,
    schedule_document,
)

PARIS = parse_schedule(
    {
        "timeZone": "Europe/Paris",
        "weekly": {day: ["09:00-12:30", "13:30-17:30"] for day in ("mon", "tue", "wed", "thu", "fri")},
        "holidays": ["2026-12-25", "2026-12-31/2027-01-01"],
    }
)
NIGHTS = parse_schedule(
    {"timeZone": "America/New_York", "weekly": {"mon": ["20:00-24:00"], "tue": ["00:00-02:00", "22:00-23:00"]}}
)


def utc(*parts: int) -> datetime:
    return datetime(*parts, tzinfo=UTC)  # type: ignore[misc]


# --- fixed examples ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("at", "expected"),
    [
        (utc(2026, 12, 7, 8, 0), True),  # Monday 09:00 Paris (UTC+1): opens exactly now
        (utc(2026, 12, 7, 7, 59, 59), False),
        (utc(2026, 12, 7, 11, 30), False),  # 12:30 Paris: lunch starts, half-open interval
        (utc(2026, 12, 7, 12, 30), True),
        (utc(2026, 12, 7, 16, 30), False),  # 17:30 Paris
        (utc(2026, 12, 5, 10, 0), False),  # Saturday
        (utc(2026, 12, 25, 10, 0), False),  # Christmas, a Friday
        (utc(2027, 1, 1, 10, 0), False),  # inside the range holiday
        (utc(2027, 1, 4, 10, 0), True),
    ],
)
def test_is_open(at: datetime, expected: bool) -> None:
    assert is_open(PARIS, at) is expected


def test_next_opening_and_closing() -> None:
    friday_evening = utc(2026, 12, 4, 17, 0)  # 18:00 Paris
    assert next_opening(PARIS, friday_evening) == utc(2026, 12, 7, 8, 0)
    assert next_closing(PARIS, friday_evening) == friday_evening
    monday = utc(2026, 12, 7, 9, 15)
    assert next_opening(PARIS, monday) == monday
    assert next_closing(PARIS, monday) == utc(2026, 12, 7, 11, 30)
    # Christmas Eve closes at 17:30; Christmas and the weekend are shut; Monday 28 opens.
    assert next_opening(PARIS, utc(2026, 12, 24, 17, 0)) == utc(2026, 12, 28, 8, 0)
    # The range holiday covers 31 Dec and 1 Jan.
    assert next_opening(PARIS, utc(2026, 12, 30, 17, 0)) == utc(2027, 1, 4, 8, 0)


def test_intervals_touching_midnight_are_one_span() -> None:
    # Monday 20:00 New York (UTC-5) = 01:00 UTC Tuesday; it stays open until Tuesday 02:00 local.
    assert next_closing(NIGHTS, utc(2026, 12, 8, 1, 0)) == utc(2026, 12, 8, 7, 0)
    assert business_seconds_between(NIGHTS, utc(2026, 12, 8, 0, 0), utc(2026, 12, 9, 0, 0)) == 6 * 3600
    assert next_opening(NIGHTS, utc(2026, 12, 8, 7, 0)) == utc(2026, 12, 9, 3, 0)


def test_business_seconds_and_inverse() -> None:
    friday_afternoon = utc(2026, 12, 4, 15, 0)  # 16:00 Paris, 1 h 30 before closing
    monday_ten = utc(2026, 12, 7, 9, 0)
    assert business_seconds_between(PARIS, friday_afternoon, monday_ten) == 2.5 * 3600
    assert add_business_seconds(PARIS, friday_afternoon, 2.5 * 3600) == monday_ten
    # Ends exactly at a closing: the earliest instant, not the next opening.
    assert add_business_seconds(PARIS, friday_afternoon, 1.5 * 3600) == utc(2026, 12, 4, 16, 30)
    assert add_business_seconds(PARIS, friday_afternoon, 0) == friday_afternoon
    assert business_seconds_between(PARIS, monday_ten, friday_afternoon) == 0.0
    with pytest.raises(ValueError, match="negative"):
        add_business_seconds(PARIS, friday_afternoon, -1)


def test_no_hours_is_always_open() -> None:
    at = utc(2026, 3, 29, 1, 30)
    assert is_open(ALWAYS_OPEN, at) is True
    assert next_opening(ALWAYS_OPEN, at) == at
    assert next_closing(ALWAYS_OPEN, at) is None
    assert business_seconds_between(ALWAYS_OPEN, at, at + timedelta(days=3)) == 3 * 86400
    assert add_business_seconds(ALWAYS_OPEN, at, 86400) == at + timedelta(days=1)
    empty = parse_schedule({"timeZone": "Asia/Tokyo"})
    assert empty.always_open and is_open(empty, at)


def test_always_open_with_holidays_closes_on_those_days_only() -> None:
    schedule = parse_schedule({"timeZone": "Asia/Tokyo", "holidays": ["2027-01-01/2027-01-03"]})
    # Tokyo is UTC+9: 1 Jan local midnight is 31 Dec 15:00 UTC.
    assert next_closing(schedule, utc(2026, 12, 30, 0, 0)) == utc(2026, 12, 31, 15, 0)
    assert next_opening(schedule, utc(2026, 12, 31, 15, 0)) == utc(2027, 1, 3, 15, 0)
    assert next_closing(schedule, utc(2027, 1, 4, 0, 0)) is None


# --- DST --------------------------------------------------------------------------------------------

OVERNIGHT_PARIS = parse_schedule({"timeZone": "Europe/Paris", "weekly": {"sun": ["00:00-24:00"]}})


def test_spring_forward_day_has_23_hours() -> None:
    # 29 March 2026: Paris skips 02:00-03:00 local (01:00 UTC).
    day_start, day_end = utc(2026, 3, 28, 23, 0), utc(2026, 3, 29, 22, 0)
    assert business_seconds_between(OVERNIGHT_PARIS, day_start, day_end) == 23 * 3600
    assert next_closing(OVERNIGHT_PARIS, day_start) == day_end


def test_fall_back_day_has_25_hours() -> None:
    # 25 October 2026: Paris repeats 02:00-03:00 local.
    day_start, day_end = utc(2026, 10, 24, 22, 0), utc(2026, 10, 25, 23, 0)
    assert business_seconds_between(OVERNIGHT_PARIS, day_start, day_end) == 25 * 3600


def test_interval_starting_in_the_skipped_hour_starts_at_the_change() -> None:
    schedule = parse_schedule({"timeZone": "Europe/Paris", "weekly": {"sun": ["02:30-04:00"]}})
    # 02:30 does not exist on 29 March 2026; the clock jumps to 03:00 at 01:00 UTC.
    assert next_opening(schedule, utc(2026, 3, 29, 0, 0)) == utc(2026, 3, 29, 1, 0)
    assert next_closing(schedule, utc(2026, 3, 29, 1, 0)) == utc(2026, 3, 29, 2, 0)
    # An ordinary Sunday: 02:30-04:00 CET is 01:30-03:00 UTC.
    assert next_opening(schedule, utc(2026, 3, 22, 0, 0)) == utc(2026, 3, 22, 1, 30)


def test_nine_to_five_keeps_local_time_across_the_change() -> None:
    week = parse_schedule({"timeZone": "America/New_York", "weekly": {"fri": ["09:00-17:00"], "mon": ["09:00-17:00"]}})
    # New York moves from UTC-4 to UTC-5 on Sunday 1 November 2026.
    assert next_opening(week, utc(2026, 10, 30, 0, 0)) == utc(2026, 10, 30, 13, 0)
    assert next_opening(week, utc(2026, 10, 31, 0, 0)) == utc(2026, 11, 2, 14, 0)
    assert business_seconds_between(week, utc(2026, 10, 30, 0, 0), utc(2026, 11, 3, 0, 0)) == 16 * 3600


# --- parsing ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("document", "field"),
    [
        ({"timeZone": "Mars/Olympus"}, "timeZone"),
        ({"timeZone": "../../etc/passwd"}, "timeZone"),
        ({}, "timeZone"),
        ({"timeZone": "UTC", "weekly": {"monday": []}}, "weekly.monday"),
        ({"timeZone": "UTC", "weekly": {"mon": "09:00-17:00"}}, "weekly.mon"),
        ({"timeZone": "UTC", "weekly": {"mon": ["17:00-09:00"]}}, "weekly.mon[0]"),
        ({"timeZone": "UTC", "weekly": {"mon": ["09:00-09:00"]}}, "weekly.mon[0]"),
        ({"timeZone": "UTC", "weekly": {"mon": ["9:00-17:00"]}}, "weekly.mon[0]"),
        ({"timeZone": "UTC", "weekly": {"mon": ["09:60-17:00"]}}, "weekly.mon[0]"),
        ({"timeZone": "UTC", "weekly": {"mon": ["09:00-24:01"]}}, "weekly.mon[0]"),
        ({"timeZone": "UTC", "weekly": {"tue": ["09:00-12:00", "11:00-13:00"]}}, "weekly.tue[1]"),
        ({"timeZone": "UTC", "weekly": {"tue": ["11:00-13:00", "09:00-12:00"]}}, "weekly.tue[0]"),
        ({"timeZone": "UTC", "holidays": ["2026-13-01"]}, "holidays[0]"),
        ({"timeZone": "UTC", "holidays": ["2026-12-01", "2026-12-31/2026-12-30"]}, "holidays[1]"),
        ({"timeZone": "UTC", "holidays": ["2026-01-01/2027-06-01"]}, "holidays[0]"),
        ({"timeZone": "UTC", "holidays": "2026-12-25"}, "holidays"),
    ],
)
def test_parse_errors_name_the_field(document: dict[str, object], field: str) -> None:
    with pytest.raises(ScheduleError) as caught:
        parse_schedule(document)
    assert caught.value.field == field


def test_document_round_trip() -> None:
    document = schedule_document(PARIS)
    assert document == {
        "timeZone": "Europe/Paris",
        "weekly": {day: ["09:00-12:30", "13:30-17:30"] for day in ("mon", "tue", "wed", "thu", "fri")},
        "holidays": ["2026-12-25", "2026-12-31/2027-01-01"],
    }
    assert parse_schedule(document) == PARIS
    touching = parse_schedule({"timeZone": "UTC", "weekly": {"mon": ["12:00-13:00", "09:00-12:00"]}})
    assert touching.weekly[0] == ((540, 720), (720, 780))
    assert Schedule().always_open


def test_naive_datetimes_are_refused() -> None:
    with pytest.raises(ValueError, match="aware"):
        is_open(PARIS, datetime(2026, 12, 7, 9, 0))


# --- properties -------------------------------------------------------------------------------------

ZONES = ("UTC", "Europe/Paris", "America/New_York", "Australia/Lord_Howe", "Asia/Kolkata", "America/Santiago")
interval_text = st.tuples(st.integers(0, 47), st.integers(1, 48)).map(
    lambda pair: (min(pair[0], pair[1] - 1) * 30, max(pair[0] + 1, pair[1]) * 30)
)


@st.composite
def schedules(draw: st.DrawFn) -> Schedule:
    weekly: dict[str, list[str]] = {}
    for day in draw(st.lists(st.sampled_from(("mon", "tue", "wed", "thu", "fri", "sat", "sun")), unique=True)):
        start, end = draw(interval_text)
        chunks = [f"{start // 60:02d}:{start % 60:02d}-{end // 60:02d}:{end % 60:02d}"]
        weekly[day] = chunks
    holidays = [
        d.isoformat() for d in draw(st.lists(st.dates(date(2026, 1, 1), date(2027, 12, 31)), max_size=5, unique=True))
    ]
    return parse_schedule({"timeZone": draw(st.sampled_from(ZONES)), "weekly": weekly, "holidays": holidays})


instants = st.integers(0, 2 * 365 * 86400).map(lambda s: utc(2026, 1, 1) + timedelta(seconds=s))
durations = st.integers(0, 30 * 86400)


@settings(max_examples=150, deadline=None)
@given(schedule=schedules(), start=instants, seconds=durations)
def test_add_then_measure_round_trips(schedule: Schedule, start: datetime, seconds: int) -> None:
    end = add_business_seconds(schedule, start, seconds)
    assert end >= start
    assert business_seconds_between(schedule, start, end) == seconds
    if seconds:
        # The earliest such instant: it is open just before it.
        assert business_seconds_between(schedule, start, end - timedelta(seconds=1)) == seconds - 1


@settings(max_examples=150, deadline=None)
@given(schedule=schedules(), start=instants, a=durations, b=durations)
def test_measure_is_monotonic_and_additive(schedule: Schedule, start: datetime, a: int, b: int) -> None:
    middle = start + timedelta(seconds=a)
    end = middle + timedelta(seconds=b)
    first = business_seconds_between(schedule, start, middle)
    second = business_seconds_between(schedule, middle, end)
    assert 0 <= first <= a and 0 <= second <= b
    assert business_seconds_between(schedule, start, end) == first + second
    assert add_business_seconds(schedule, start, first + second) <= end


@settings(max_examples=150, deadline=None)
@given(schedule=schedules(), at=instants)
def test_closed_time_counts_zero_and_openings_agree(schedule: Schedule, at: datetime) -> None:
    opening = next_opening(schedule, at)
    assert opening is not None
    assert is_open(schedule, opening)
    if is_open(schedule, at):
        assert opening == at
        closing = next_closing(schedule, at)
        if closing is not None:
            assert closing > at and not is_open(schedule, closing)
            assert business_seconds_between(schedule, at, closing) == (closing - at).total_seconds()
    else:
        assert next_closing(schedule, at) == at
        assert business_seconds_between(schedule, at, opening) == 0
        assert add_business_seconds(schedule, at, 1) == opening + timedelta(seconds=1)
