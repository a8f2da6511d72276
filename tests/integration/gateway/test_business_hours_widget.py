"""The widget outside business hours: the connect answer says nobody is online, the team's offline message and when
it answers; inside them, the usual welcome."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from pocketping.models import ConnectResponse
from sqlalchemy.ext.asyncio import AsyncEngine

from service.hours import clock
from service.settings import Settings
from tests.factories import add_member, bearer, make_operator, make_team, personal_token
from tests.integration.gateway.test_team_presence_typing_read import connect, set_status
from tests.support.routing import rows

PARIS_OFFICE = {"timeZone": "Europe/Paris", "weekly": {d: ["09:00-17:30"] for d in ("mon", "tue", "wed", "thu", "fri")}}
SATURDAY_NOON = datetime(2026, 12, 5, 11, 0, tzinfo=UTC)
MONDAY_TEN = datetime(2026, 12, 7, 9, 0, tzinfo=UTC)


def at(settings: Settings, business_now: datetime) -> None:
    """This process's business-hours clock reads ``business_now`` from now on."""
    offset = (business_now - datetime.now(UTC)).total_seconds()
    clock.configure(settings.model_copy(update={"clock_offset_seconds": offset}))


@pytest.fixture(autouse=True)
def real_clock(settings: Settings) -> Any:
    yield
    clock.configure(settings)


async def office(engine: AsyncEngine, **team: Any) -> None:
    """The default team, with Paris office hours and a member online."""
    team_id = await make_team(engine, "Support", is_default=True, business_hours=PARIS_OFFICE, **team)
    await add_member(engine, team_id, await make_operator(engine, "Ada", status="online"))


async def test_outside_hours_the_widget_shows_the_offline_message_and_the_opening(
    http: httpx.AsyncClient, settings: Settings, clean_db: AsyncEngine
) -> None:
    await office(clean_db, welcome_message="Hello!", offline_message="Closed. Back {opensAt}, promise.")
    at(settings, SATURDAY_NOON)
    answer = await connect(http, "v-1")
    # What the real widget reads (the SDK's own model of the answer) ...
    seen = ConnectResponse.model_validate(answer)
    assert (seen.operator_online, seen.welcome_message) == (
        False,
        "Closed. Back Monday 7 December, 09:00 (Europe/Paris), promise.",
    )
    # ... and Switchboard's additions.
    assert (answer["outsideHours"], answer["opensAt"]) == (True, "2026-12-07T08:00:00Z")
    presence = await http.get("/pocketping/presence", params={"sessionId": answer["sessionId"]})
    assert presence.json()["online"] is False

    at(settings, MONDAY_TEN)
    again = await connect(http, "v-1", sessionId=answer["sessionId"])
    assert (again["operatorOnline"], again["welcomeMessage"], again["outsideHours"], again["opensAt"]) == (
        True,
        "Hello!",
        False,
        None,
    )
    presence = await http.get("/pocketping/presence", params={"sessionId": answer["sessionId"]})
    assert presence.json()["online"] is True


async def test_without_an_offline_message_the_widget_says_when_the_team_answers(
    http: httpx.AsyncClient, settings: Settings, clean_db: AsyncEngine
) -> None:
    await office(clean_db, welcome_message="Hello!")
    at(settings, MONDAY_TEN + timedelta(hours=8))  # 18:00 in Paris
    answer = await connect(http, "v-2")
    assert (answer["operatorOnline"], answer["welcomeMessage"], answer["opensAt"]) == (
        False,
        "We are away right now. We will answer from Tuesday 8 December, 09:00 (Europe/Paris).",
        "2026-12-08T08:00:00Z",
    )


async def test_a_member_coming_online_while_the_team_is_closed_is_not_announced_to_widgets(
    http: httpx.AsyncClient, settings: Settings, clean_db: AsyncEngine
) -> None:
    team_id = await make_team(clean_db, "Support", is_default=True, business_hours=PARIS_OFFICE)
    ada = await make_operator(clean_db, "Ada")
    await add_member(clean_db, team_id, ada)
    as_ada = bearer(await personal_token(clean_db, ada))

    async def announced() -> list[bool]:
        found = await rows(clean_db, "SELECT data FROM event WHERE kind = 'team.availability' ORDER BY id")
        return [row["data"]["online"] for row in found]

    at(settings, SATURDAY_NOON)
    await set_status(http, as_ada, "online")
    await set_status(http, as_ada, "offline")
    # Online at night: nothing said (the widgets show nobody); offline: said, as always.
    assert await announced() == [False]
    at(settings, MONDAY_TEN)
    await set_status(http, as_ada, "online")
    assert await announced() == [False, True]
