"""The team settings pages over HTTP: which teams are listed, what each section shows, and what it never shows."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import httpx
from sqlalchemy.ext.asyncio import AsyncEngine

from service.hours import clock
from service.settings import Settings
from tests.factories import add_member, bearer, make_operator, make_team, personal_token

SATURDAY_NOON = datetime(2026, 12, 5, 11, 0, tzinfo=UTC)


async def test_the_index_lists_the_teams_the_caller_leads(http: httpx.AsyncClient, clean_db: AsyncEngine) -> None:
    led, joined, other = [await make_team(clean_db, name) for name in ("Billing", "Sales", "Ops")]
    lena = await make_operator(clean_db, "Lena")
    await add_member(clean_db, led, lena, "lead")
    await add_member(clean_db, joined, lena, "operator")
    as_lena = bearer(await personal_token(clean_db, lena))
    as_ada = bearer(await personal_token(clean_db, await make_operator(clean_db, "Ada", is_admin=True)))

    def teams(page: httpx.Response) -> list[str]:
        assert page.status_code == 200, page.text
        return re.findall(r'data-team="([^"]+)"', page.text)

    assert teams(await http.get("/app/teams", headers=as_lena)) == [str(led)]
    assert teams(await http.get("/app/teams", headers=as_ada)) == [str(led), str(other), str(joined)]
    assert 'href="/app/teams"' in (await http.get("/app", headers=as_lena)).text


async def test_sections_show_the_stored_settings_escaped_and_never_a_secret(
    http: httpx.AsyncClient, clean_db: AsyncEngine
) -> None:
    team = await make_team(clean_db, "Support <b>")
    lena, olga = await make_operator(clean_db, "Lena"), await make_operator(clean_db, "Olga")
    await add_member(clean_db, team, lena, "lead")
    await add_member(clean_db, team, olga, "operator", capacity=3, skills=["billing"])
    as_lena = bearer(await personal_token(clean_db, lena))
    api = f"/api/v1/teams/{team}"
    secret = "xoxb-slack-secret-token"
    changes = [
        ("PATCH", api, {"routingPolicy": "least_busy", "welcomeMessage": "Hi <there>", "aiEnabled": True}, 200),
        (
            "PUT",
            f"{api}/rules",
            {"rules": [{"name": "VIP", "conditions": {"identity": {"plan": "true", "age": 30}}}]},
            200,
        ),
        ("PATCH", f"{api}/bridges", {"slack": {"channelId": "C0123456", "botToken": secret}}, 200),
        ("POST", f"{api}/webhooks", {"url": "https://example.com/hook", "events": ["conversation.closed"]}, 201),
    ]
    for method, path, body, status in changes:
        response = await http.request(method, path, json=body, headers=as_lena)
        assert response.status_code == status, response.text
    webhook_secret = response.json()["secret"]

    page = await http.get(f"/app/teams/{team}", headers=as_lena)
    assert page.status_code == 200
    html = page.text
    assert "Support &lt;b&gt;" in html and "Support <b>" not in html
    assert '<option value="least_busy" selected>' in html
    assert "Hi &lt;there&gt;</textarea>" in html
    assert re.search(r'name="aiEnabled" data-type="bool" checked', html)
    assert re.search(rf'data-member="{olga}".*?name="capacity" value="3".*?name="skills" value="billing"', html, re.S)
    # A string that reads like a boolean stays a string, the number a number (JSONB orders the keys).
    assert "age = 30\nplan = &#34;true&#34;</textarea>" in html
    assert re.search(r'data-bridge="slack".*?value="C0123456".*?data-configured="yes">configured<', html, re.S)
    assert 'data-bridge="telegram"' in html and 'data-configured="no">not set<' in html
    assert secret not in html and webhook_secret not in html
    assert "https://example.com/hook" in html and "conversation.closed" in html

    section = await http.get(f"/app/teams/{team}/sections/bridges", headers=as_lena)
    assert section.status_code == 200 and section.text.lstrip().startswith('<section id="section-bridges"')
    assert secret not in section.text
    missing = await http.get(f"/app/teams/{team}/sections/secrets", headers=as_lena)
    assert (missing.status_code, "<h1>404</h1>" in missing.text) == (404, True)


async def test_the_hours_editor_shows_the_stored_hours_and_the_overflow_choices(
    http: httpx.AsyncClient, settings: Settings, clean_db: AsyncEngine
) -> None:
    team = await make_team(clean_db, "Support", ai_enabled=True)
    night = await make_team(clean_db, "Night <shift>")
    lena = await make_operator(clean_db, "Lena")
    await add_member(clean_db, team, lena, "lead")
    as_lena = bearer(await personal_token(clean_db, lena))
    page = await http.get(f"/app/teams/{team}", headers=as_lena)
    # No hours: every field empty, so saving the form sends businessHours null (24/7).
    assert '<fieldset data-optional="businessHours">' in page.text
    assert 'name="businessHours.timeZone" value=""' in page.text
    assert re.findall(r'name="businessHours\.weekly\.(\w+)" value=""', page.text) == [
        "mon",
        "tue",
        "wed",
        "thu",
        "fri",
        "sat",
        "sun",
    ]
    assert '<option value="" selected>None</option>' in page.text
    assert "<p data-hours-status>Open 24/7</p>" in page.text

    body = {
        "businessHours": {
            "timeZone": "Europe/Paris",
            "weekly": {"mon": ["13:30-17:30", "09:00-12:30"], "sat": ["10:00-14:00"]},
            "holidays": ["2026-12-25", "2026-12-31/2027-01-01"],
        },
        "outsideHours": "overflow",
        "outsideHoursTeamId": str(night),
        "offlineMessage": "Back {opensAt} <promise>",
    }
    response = await http.patch(f"/api/v1/teams/{team}", json=body, headers=as_lena)
    assert response.status_code == 200, response.text

    async def section_at(business_now: datetime) -> str:
        offset = (business_now - datetime.now(UTC)).total_seconds()
        clock.configure(settings.model_copy(update={"clock_offset_seconds": offset}))
        try:
            return (await http.get(f"/app/teams/{team}/sections/settings", headers=as_lena)).text
        finally:
            clock.configure(settings)

    # Saturday noon in Paris is inside its Saturday hours; Sunday noon is not.
    sunday = await section_at(SATURDAY_NOON + timedelta(days=1))
    assert "<p data-hours-status>Closed now; opens Monday 7 December, 09:00 (Europe/Paris)</p>" in sunday
    html = await section_at(SATURDAY_NOON)
    assert "<p data-hours-status>Open now, until Saturday 5 December, 14:00 (Europe/Paris)</p>" in html
    assert 'name="businessHours.timeZone" value="Europe/Paris"' in html
    days = dict(re.findall(r'name="businessHours\.weekly\.(\w+)" value="([^"]*)"', html))
    assert days == {
        "mon": "09:00-12:30, 13:30-17:30",
        "tue": "",
        "wed": "",
        "thu": "",
        "fri": "",
        "sat": "10:00-14:00",
        "sun": "",
    }
    assert 'data-type="list" data-empty="keep">2026-12-25, 2026-12-31/2027-01-01</textarea>' in html
    assert '<option value="overflow" selected>' in html
    assert f'<option value="{night}" selected>Night &lt;shift&gt;</option>' in html
    assert "Back {opensAt} &lt;promise&gt;</textarea>" in html
