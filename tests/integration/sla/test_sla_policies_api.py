"""SLA policies over HTTP: create, read, change, delete, with validation naming the field, conflicts and audit."""

from __future__ import annotations

import httpx
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.factories import make_team
from tests.integration.teams.test_teams_api import errors, person
from tests.support.routing import rows

API = "/api/v1/teams"


async def test_a_lead_manages_the_teams_policies(http: httpx.AsyncClient, clean_db: AsyncEngine) -> None:
    team_id = await make_team(clean_db, "Support")
    overflow_id = await make_team(clean_db, "Overflow")
    lena, lead_auth = await person(clean_db, "Lena", team_id, "lead")
    body = {
        "priority": 1,
        "firstResponseSeconds": 300,
        "resolutionSeconds": 86_400,
        "atRiskShare": 0.75,
        "escalation": [
            {"on": "at_risk", "action": "tell_leads"},
            {"on": "breached", "action": "reassign"},
            {"on": "breached", "action": "overflow", "teamId": str(overflow_id)},
        ],
    }
    created = await http.post(f"{API}/{team_id}/sla-policies", json=body, headers=lead_auth)
    assert created.status_code == 201, created.text
    policy = created.json()
    assert {k: policy[k] for k in (*body, "nextResponseSeconds", "teamId")} == {
        **body,
        "escalation": [
            {"on": "at_risk", "action": "tell_leads", "teamId": None},
            {"on": "breached", "action": "reassign", "teamId": None},
            {"on": "breached", "action": "overflow", "teamId": str(overflow_id)},
        ],
        "nextResponseSeconds": None,
        "teamId": str(team_id),
    }
    catch_all = await http.post(f"{API}/{team_id}/sla-policies", json={"firstResponseSeconds": 900}, headers=lead_auth)
    assert catch_all.status_code == 201, catch_all.text

    again = await http.post(f"{API}/{team_id}/sla-policies", json={"priority": 1}, headers=lead_auth)
    assert (again.status_code, errors(again)) == (409, ["priority"])

    listed = await http.get(f"{API}/{team_id}/sla-policies", headers=lead_auth)
    assert [(p["priority"], p["firstResponseSeconds"]) for p in listed.json()["items"]] == [(1, 300), (None, 900)]

    changed = await http.patch(
        f"{API}/{team_id}/sla-policies/{policy['id']}",
        json={"nextResponseSeconds": 600, "atRiskShare": None},
        headers=lead_auth,
    )
    assert changed.status_code == 200, changed.text
    assert (changed.json()["nextResponseSeconds"], changed.json()["atRiskShare"]) == (600, None)
    assert changed.json()["firstResponseSeconds"] == 300  # absent: kept
    assert len(changed.json()["escalation"]) == 3

    gone = await http.delete(f"{API}/{team_id}/sla-policies/{policy['id']}", headers=lead_auth)
    assert gone.status_code == 204
    missing = await http.get(f"{API}/{team_id}/sla-policies/{policy['id']}", headers=lead_auth)
    assert missing.status_code == 404
    audit = await rows(clean_db, "SELECT actor_id, action, subject_id FROM audit_event ORDER BY id")
    assert [(a["actor_id"], a["action"]) for a in audit] == [
        (lena, "sla_policy.created"),
        (lena, "sla_policy.created"),
        (lena, "sla_policy.updated"),
        (lena, "sla_policy.deleted"),
    ]


async def test_invalid_policies_name_the_field(http: httpx.AsyncClient, clean_db: AsyncEngine) -> None:
    team_id = await make_team(clean_db, "Support")
    _, lead_auth = await person(clean_db, "Lena", team_id, "lead")
    cases = [
        ({"firstResponseSeconds": 0}, 400, "firstResponseSeconds"),
        ({"resolutionSeconds": 366 * 86_400 + 1}, 400, "resolutionSeconds"),
        ({"atRiskShare": 1}, 400, "atRiskShare"),
        ({"priority": "high"}, 400, "priority"),
        ({"escalation": [{"on": "late", "action": "reassign"}]}, 400, "escalation.0.on"),
        ({"escalation": [{"on": "breached", "action": "overflow"}]}, 400, "escalation.0"),
        (
            {"escalation": [{"on": "breached", "action": "overflow", "teamId": str(team_id)}]},
            422,
            "escalation.0.teamId",
        ),
        (
            {
                "escalation": [
                    {"on": "breached", "action": "overflow", "teamId": "00000000-0000-0000-0000-000000000001"}
                ]
            },
            422,
            "escalation.0.teamId",
        ),
    ]
    for body, status, field in cases:
        response = await http.post(f"{API}/{team_id}/sla-policies", json=body, headers=lead_auth)
        assert (response.status_code, errors(response)) == (status, [field]), (body, response.text)
    assert await rows(clean_db, "SELECT id FROM sla_policy") == []
