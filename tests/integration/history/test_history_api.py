"""The audit log (admins) and a team's assignment history (its leads), paged newest first."""

from __future__ import annotations

import httpx
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.factories import make_team
from tests.integration.routing.test_routing_api import person as member
from tests.integration.routing.test_routing_api import queued
from tests.integration.teams.test_teams_api import errors, person


async def test_admins_page_the_audit_log_newest_first_with_filters(
    http: httpx.AsyncClient, clean_db: AsyncEngine
) -> None:
    team_id = await make_team(clean_db, "Billing")
    admin, admin_auth = await person(clean_db, "Ada", is_admin=True)
    bea, bea_auth = await person(clean_db, "Bea", team_id, "lead")
    for capacity in (2, 3, 4):
        response = await http.patch(f"/api/v1/teams/{team_id}", json={"defaultCapacity": capacity}, headers=bea_auth)
        assert response.status_code == 200, response.text
    renamed = await http.patch(f"/api/v1/operators/{bea}", json={"displayName": "Beatrice"}, headers=admin_auth)
    assert renamed.status_code == 200

    first = (await http.get("/api/v1/audit-events", params={"limit": 2}, headers=admin_auth)).json()
    assert [(e["action"], e["actorId"]) for e in first["items"]] == [
        ("operator.updated", str(admin)),
        ("team.updated", str(bea)),
    ]
    assert first["items"][1]["data"] == {"defaultCapacity": 4}
    second = (
        await http.get("/api/v1/audit-events", params={"limit": 2, "cursor": first["nextCursor"]}, headers=admin_auth)
    ).json()
    assert [e["action"] for e in second["items"]] == ["team.updated", "team.updated"]
    assert second["nextCursor"] is None
    ids = [e["id"] for e in first["items"] + second["items"]]
    assert ids == sorted(ids, reverse=True)

    only_team = {"subjectType": "team", "subjectId": str(team_id), "actorId": str(bea)}
    filtered = (await http.get("/api/v1/audit-events", params=only_team, headers=admin_auth)).json()
    assert [e["action"] for e in filtered["items"]] == ["team.updated"] * 3
    later = {"from": "9999-01-01T00:00:00Z"}
    assert (await http.get("/api/v1/audit-events", params=later, headers=admin_auth)).json()["items"] == []
    earlier = {"to": "2000-01-01T00:00:00Z"}
    assert (await http.get("/api/v1/audit-events", params=earlier, headers=admin_auth)).json()["items"] == []

    response = await http.get("/api/v1/audit-events", headers=bea_auth)
    assert (response.status_code, response.json()["detail"]) == (403, "Only administrators may do this")
    response = await http.get("/api/v1/audit-events", params={"cursor": "nope"}, headers=admin_auth)
    assert (response.status_code, errors(response)) == (400, ["cursor"])
    response = await http.get("/api/v1/audit-events", params={"actorId": "x"}, headers=admin_auth)
    assert (response.status_code, errors(response)) == (400, ["actorId"])


async def test_leads_page_their_teams_assignments(http: httpx.AsyncClient, clean_db: AsyncEngine) -> None:
    team_id = await make_team(clean_db, routing_policy="manual")
    ada, ada_auth = await member(clean_db, "Ada", team_id)
    bob, _ = await member(clean_db, "Bob", team_id)
    _, lead_auth = await member(clean_db, "Lea", team_id, "lead")
    other_team = await make_team(clean_db, "Other")
    _, other_lead_auth = await member(clean_db, "Oli", other_team, "lead")
    first, second = await queued(clean_db, team_id), await queued(clean_db, team_id)
    path = "/api/v1/conversations/{}"
    assert (await http.post(path.format(first) + "/claim", headers=ada_auth)).status_code == 200
    transfer = {"operatorId": str(bob)}
    assert (await http.post(path.format(first) + "/transfer", json=transfer, headers=ada_auth)).status_code == 200
    assert (await http.post(path.format(second) + "/claim", headers=ada_auth)).status_code == 200

    history = f"/api/v1/teams/{team_id}/assignments"
    page = (await http.get(history, params={"limit": 2}, headers=lead_auth)).json()
    assert [(a["conversationId"], a["operatorId"], a["reason"]) for a in page["items"]] == [
        (second, str(ada), "claimed"),
        (first, str(bob), "transferred"),
    ]
    assert page["items"][1]["endedAt"] is None
    rest = (await http.get(history, params={"cursor": page["nextCursor"]}, headers=lead_auth)).json()
    assert [(a["operatorId"], a["reason"], a["endReason"]) for a in rest["items"]] == [
        (str(ada), "claimed", "transferred")
    ]
    assert rest["nextCursor"] is None
    by_ada = (await http.get(history, params={"operatorId": str(ada)}, headers=lead_auth)).json()
    assert [a["conversationId"] for a in by_ada["items"]] == [second, first]
    one = (await http.get(history, params={"conversationId": first}, headers=lead_auth)).json()
    assert [a["operatorId"] for a in one["items"]] == [str(bob), str(ada)]

    response = await http.get(history, headers=ada_auth)
    assert (response.status_code, response.json()["detail"]) == (403, "Only the team's leads may do this")
    response = await http.get(history, headers=other_lead_auth)
    assert (response.status_code, response.json()["detail"]) == (404, "Team not found")
