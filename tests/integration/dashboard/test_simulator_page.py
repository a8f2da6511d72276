"""The policy simulator page over HTTP: the form, a run drawn as real against simulated, and problems inline."""

from __future__ import annotations

import re
from datetime import timedelta

import httpx
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.factories import bearer, personal_token
from tests.support.history_month import END, START, build_month

# The form takes whole days, "to" included: the month's 30 days.
DAYS = {"from": START.date().isoformat(), "to": (END - timedelta(days=1)).date().isoformat()}


def cells(html: str, attribute: str) -> dict[str, tuple[str, str]]:
    """``data-<attribute>`` of each row → its (real, simulated) values."""
    pattern = rf'data-{attribute}="([^"]+)" data-real="([^"]*)" data-simulated="([^"]*)"'
    return {key: (real, simulated) for key, real, simulated in re.findall(pattern, html)}


async def test_the_page_runs_the_simulation_and_draws_both(http: httpx.AsyncClient, clean_db: AsyncEngine) -> None:
    month = await build_month(clean_db)
    assert month.lead_id is not None
    lead = bearer(await personal_token(clean_db, month.lead_id))
    page = f"/app/teams/{month.team_id}/simulator"

    form = await http.get(page, headers=lead)
    assert form.status_code == 200
    assert 'id="simulation"' in form.text and 'id="simulation-result"' not in form.text
    assert f'name="capacity-{month.operators["Ben"]}"' in form.text and 'placeholder="3"' in form.text

    # The same draft through the API and through the page gives the same numbers on the page.
    query = DAYS | {"run": "1", "defaultCapacity": "3", "firstResponseTargetSeconds": "120"}
    shown = await http.get(page, params=query, headers=lead)
    assert shown.status_code == 200, shown.text
    draft = {"defaultCapacity": 3, "firstResponseTargetSeconds": 120}
    period = {"from": START.isoformat(), "to": END.isoformat(), "draft": draft}
    api = (await http.post(f"/api/v1/teams/{month.team_id}/simulations", json=period, headers=lead)).json()
    assert f'data-arrivals="{month.conversations}"' in shown.text
    metrics = cells(shown.text, "metric")
    real, simulated = api["real"], api["simulated"]
    assert metrics["Wait p90"] == (str(real["waits"]["p90Seconds"]), str(simulated["waits"]["p90Seconds"]))
    assert metrics["Abandoned"] == (str(api["real"]["abandoned"]), str(api["simulated"]["abandoned"]))
    sla = (round(100 * api["real"]["slaAttainment"], 1), round(100 * api["simulated"]["slaAttainment"], 1))
    assert metrics["SLA attainment"] == (str(sla[0]), str(sla[1]))
    loads = cells(shown.text, "operator")
    assert loads[str(month.operators["Ben"])] == tuple(
        str(next(o["assignments"] for o in side["operators"] if o["displayName"] == "Ben"))
        for side in (api["real"], api["simulated"])
    )
    # Two bars per row: the larger of the two fills the row.
    assert shown.text.count('data-bar="real"') == shown.text.count('data-bar="simulated"') == len(metrics) + len(loads)
    assert 'width="100.0"' in shown.text

    # A problem is shown on the page, naming the field, with the API's status.
    bad = await http.get(page, params=DAYS | {"run": "1", "defaultCapacity": "-1"}, headers=lead)
    assert bad.status_code == 400
    assert 'data-field="draft.defaultCapacity"' in bad.text
    longer = await http.get(page, params={"from": "2026-10-01", "to": "2026-11-30", "run": "1"}, headers=lead)
    assert longer.status_code == 400
    assert "a simulation may span at most 31 days" in longer.text
    # The calendar's last day is an empty period (never a 500); no day at all is a problem naming the field.
    last = await http.get(page, params={"from": "9999-12-31", "to": "9999-12-31", "run": "1"}, headers=lead)
    assert (last.status_code, 'data-arrivals="0"' in last.text) == (200, True)
    words = await http.get(page, params={"from": "soon", "to": "2026-11-30", "run": "1"}, headers=lead)
    assert (words.status_code, 'data-field="from"' in words.text) == (400, True)
