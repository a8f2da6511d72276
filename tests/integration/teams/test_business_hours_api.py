"""Business hours as team settings over HTTP: stored canonical, validated naming the field, the opening timer armed."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import httpx
from sqlalchemy.ext.asyncio import AsyncEngine

from service.hours import calendar
from service.hours.services import next_opening_after, team_schedule
from tests.factories import make_team
from tests.integration.teams.test_teams_api import API, errors, person
from tests.support.routing import rows

PARIS_WEEK = {
    "timeZone": "Europe/Paris",
    "weekly": {"tue": ["13:30-17:30", "09:00-12:30"], "mon": ["09:00-17:30"]},
    "holidays": ["2026-12-31/2027-01-01", "2026-12-25"],
}


async def test_lead_sets_hours_stored_sorted_and_the_opening_timer_is_armed(
    http: httpx.AsyncClient, clean_db: AsyncEngine
) -> None:
    team_id = await make_team(clean_db, "Sales", ai_enabled=True)
    overflow_id = await make_team(clean_db, "Night shift")
    _, lead_auth = await person(clean_db, "Lena", team_id, "lead")
    body = {
        "businessHours": PARIS_WEEK,
        "outsideHours": "overflow",
        "outsideHoursTeamId": str(overflow_id),
        "offlineMessage": "We are closed; we answer from 9:00.",
    }
    response = await http.patch(f"{API}/{team_id}", json=body, headers=lead_auth)
    assert response.status_code == 200, response.text
    canonical = {
        "timeZone": "Europe/Paris",
        "weekly": {"mon": ["09:00-17:30"], "tue": ["09:00-12:30", "13:30-17:30"]},
        "holidays": ["2026-12-25", "2026-12-31/2027-01-01"],
    }
    team = response.json()
    assert {k: team[k] for k in body} == {**body, "businessHours": canonical}
    [stored] = await rows(
        clean_db, "SELECT business_hours, outside_hours, outside_hours_team_id FROM team WHERE id = :id", id=team_id
    )
    assert stored == {"business_hours": canonical, "outside_hours": "overflow", "outside_hours_team_id": overflow_id}

    [timer] = await rows(clean_db, "SELECT kind, subject, state, due_at FROM timer")
    expected = next_opening_after(calendar.parse_schedule(canonical), datetime.now(UTC))
    assert timer == {"kind": "hours_open", "subject": str(team_id), "state": "pending", "due_at": expected}

    # What SLA clocks measure in: the stored hours as a calendar (24/7 for a team without hours).
    async with clean_db.connect() as conn:
        assert await team_schedule(conn, team_id) == calendar.parse_schedule(canonical)
        assert await team_schedule(conn, overflow_id) == calendar.ALWAYS_OPEN

    [audit] = await rows(clean_db, "SELECT data FROM audit_event WHERE action = 'team.updated'")
    assert audit["data"]["businessHours"] == canonical
    assert audit["data"]["outsideHoursTeamId"] == str(overflow_id)

    # null clears the hours: 24/7, and the timer is cancelled.
    response = await http.patch(f"{API}/{team_id}", json={"businessHours": None}, headers=lead_auth)
    assert (response.status_code, response.json()["businessHours"]) == (200, None)
    [timer] = await rows(clean_db, "SELECT state FROM timer")
    assert timer == {"state": "cancelled"}


async def test_bad_hours_name_the_field_and_change_nothing(http: httpx.AsyncClient, clean_db: AsyncEngine) -> None:
    team_id = await make_team(clean_db, "Sales")
    _, lead_auth = await person(clean_db, "Lena", team_id, "lead")
    week = {"timeZone": "UTC", "weekly": {"mon": ["09:00-17:00"]}}
    cases = [
        ({"businessHours": {**week, "timeZone": "Mars/Olympus"}}, "businessHours.timeZone"),
        ({"businessHours": {**week, "timeZone": "../../etc/passwd"}}, "businessHours.timeZone"),
        ({"businessHours": {"weekly": {}}}, "businessHours.timeZone"),
        ({"businessHours": {**week, "weekly": {"mon": ["17:00-09:00"]}}}, "businessHours.weekly.mon.0"),
        ({"businessHours": {**week, "weekly": {"mon": ["9-17"]}}}, "businessHours.weekly.mon.0"),
        ({"businessHours": {**week, "weekly": {"mon": ["09:00-12:00", "11:00-13:00"]}}}, "businessHours.weekly.mon"),
        ({"businessHours": {**week, "weekly": {"monday": ["09:00-12:00"]}}}, "businessHours.weekly.monday.[key]"),
        ({"businessHours": {**week, "holidays": ["2026-02-30"]}}, "businessHours.holidays"),
        ({"businessHours": {**week, "holidays": ["2026-12-31/2026-12-01"]}}, "businessHours.holidays"),
        ({"businessHours": {**week, "extra": 1}}, "businessHours.extra"),
        ({"outsideHours": "sleep"}, "outsideHours"),
        ({"outsideHours": None}, "outsideHours"),
        ({"outsideHoursTeamId": "not-a-uuid"}, "outsideHoursTeamId"),
    ]
    for body, field in cases:
        response = await http.patch(f"{API}/{team_id}", json=body, headers=lead_auth)
        assert (response.status_code, errors(response)) == (400, [field]), (body, response.text)

    unknown = str(uuid.uuid4())
    refused = [
        ({"outsideHours": "overflow"}, "outsideHoursTeamId", "outsideHours 'overflow' needs the team to overflow to"),
        ({"outsideHoursTeamId": unknown}, "outsideHoursTeamId", "No team has this id"),
        ({"outsideHoursTeamId": str(team_id)}, "outsideHoursTeamId", "A team cannot overflow to itself"),
        (
            {"outsideHours": "ai"},
            "outsideHours",
            "outsideHours 'ai' needs aiEnabled: the AI answers while the team is closed",
        ),
    ]
    for body, field, message in refused:
        response = await http.patch(f"{API}/{team_id}", json=body, headers=lead_auth)
        assert response.status_code == 422, response.text
        assert response.json()["errors"] == [{"field": field, "message": message}]
    [team] = await rows(clean_db, "SELECT business_hours, outside_hours, outside_hours_team_id FROM team")
    assert team == {"business_hours": None, "outside_hours": "wait", "outside_hours_team_id": None}
    assert await rows(clean_db, "SELECT * FROM audit_event") == []
    assert await rows(clean_db, "SELECT * FROM timer") == []


async def test_admin_creates_a_team_with_hours_and_ai_outside_them(
    http: httpx.AsyncClient, clean_db: AsyncEngine
) -> None:
    _, admin_auth = await person(clean_db, "Ada", is_admin=True)
    body = {
        "name": "Support",
        "aiEnabled": True,
        "outsideHours": "ai",
        # Open every day but the next two, in Tokyo: the timer waits for the day after.
        "businessHours": {"timeZone": "Asia/Tokyo", "holidays": [_tokyo_days(0, 1)]},
    }
    response = await http.post(API, json=body, headers=admin_auth)
    assert response.status_code == 201, response.text
    assert response.json()["outsideHours"] == "ai"
    [timer] = await rows(clean_db, "SELECT kind, due_at FROM timer")
    tokyo_day_after = datetime.now(UTC).astimezone(calendar.ZoneInfo("Asia/Tokyo")).date() + timedelta(days=2)
    assert timer == {
        "kind": "hours_open",
        "due_at": datetime.combine(tokyo_day_after, datetime.min.time(), calendar.ZoneInfo("Asia/Tokyo")),
    }


def _tokyo_days(first: int, last: int) -> str:
    today = datetime.now(UTC).astimezone(calendar.ZoneInfo("Asia/Tokyo")).date()
    return f"{today + timedelta(days=first)}/{today + timedelta(days=last)}"


async def test_deleting_the_overflow_team_makes_its_teams_wait(http: httpx.AsyncClient, clean_db: AsyncEngine) -> None:
    _, admin_auth = await person(clean_db, "Ada", is_admin=True)
    night_id = await make_team(clean_db, "Night shift")
    team_id = await make_team(clean_db, "Sales", outside_hours="overflow", outside_hours_team_id=night_id)
    response = await http.delete(f"{API}/{night_id}", headers=admin_auth)
    assert response.status_code == 204, response.text
    [team] = await rows(clean_db, "SELECT outside_hours, outside_hours_team_id FROM team WHERE id = :id", id=team_id)
    assert team == {"outside_hours": "wait", "outside_hours_team_id": None}
    # The team's other settings can still change.
    response = await http.patch(f"{API}/{team_id}", json={"name": "Sales EU"}, headers=admin_auth)
    assert response.status_code == 200, response.text
