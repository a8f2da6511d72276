"""Team endpoints over HTTP: settings, members, rules and bridges, with validation, authorization and audit."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import httpx
from sqlalchemy.ext.asyncio import AsyncEngine

from service.db.transactions import in_transaction
from service.routing import placement
from service.settings import Settings
from service.teams.services import bridge_secret
from tests.factories import add_member, bearer, make_operator, make_team, personal_token
from tests.integration.workers.test_worker import run_burst
from tests.support.routing import make_conversation, rows, set_values, state

API = "/api/v1/teams"


async def person(
    engine: AsyncEngine, name: str, team_id: uuid.UUID | None = None, role: str = "operator", **values: object
) -> tuple[uuid.UUID, dict[str, str]]:
    operator_id = await make_operator(engine, name, **values)
    if team_id is not None:
        await add_member(engine, team_id, operator_id, role=role)
    return operator_id, bearer(await personal_token(engine, operator_id))


def errors(response: httpx.Response) -> list[str]:
    """The fields a problem-details response names."""
    return [e["field"] for e in response.json()["errors"]]


async def test_admin_creates_a_team_with_defaults_and_names_are_unique(
    http: httpx.AsyncClient, clean_db: AsyncEngine
) -> None:
    admin, admin_auth = await person(clean_db, "Ada", is_admin=True)
    response = await http.post(API, json={"name": " Billing "}, headers=admin_auth)
    assert response.status_code == 201, response.text
    team = response.json()
    assert team == {
        "id": team["id"],
        "name": "Billing",
        "isDefault": False,
        "routingPolicy": "manual",
        "defaultCapacity": 5,
        "welcomeMessage": None,
        "aiEnabled": False,
        "aiSystemPrompt": None,
        "aiTakeoverDelaySeconds": 120,
        "firstResponseTimeoutSeconds": None,
        "offlinePolicy": "keep",
        "offlineGraceSeconds": 300,
        "queueAlertThreshold": None,
        "messageEditWindowSeconds": 900,
        "csatEnabled": False,
        "attachmentMaxBytes": 10 * 1024 * 1024,
        "attachmentTypes": ["image/jpeg", "image/png", "image/gif", "image/webp", "application/pdf", "text/plain"],
        "autoAwayMinutes": None,
        "businessHours": None,
        "outsideHours": "wait",
        "outsideHoursTeamId": None,
        "offlineMessage": None,
        "createdAt": team["createdAt"],
        "memberCount": 0,
        "bridges": {"telegram": None, "discord": None, "slack": None},
    }
    response = await http.post(API, json={"name": "Billing"}, headers=admin_auth)
    assert response.status_code == 409
    assert (response.json()["detail"], errors(response)) == ("A team with this name already exists", ["name"])
    audit = await rows(clean_db, "SELECT actor_id, action, subject_id, data->>'name' AS name FROM audit_event")
    assert audit == [{"actor_id": admin, "action": "team.created", "subject_id": team["id"], "name": "Billing"}]


async def test_invalid_settings_name_the_field_and_change_nothing(
    http: httpx.AsyncClient, clean_db: AsyncEngine
) -> None:
    team_id = await make_team(clean_db, "Sales")
    _, lead_auth = await person(clean_db, "Lena", team_id, "lead")
    cases = [
        ({"routingPolicy": "random"}, "routingPolicy"),
        ({"offlinePolicy": "drop"}, "offlinePolicy"),
        ({"defaultCapacity": -1}, "defaultCapacity"),
        ({"defaultCapacity": 1001}, "defaultCapacity"),
        ({"aiTakeoverDelaySeconds": 0}, "aiTakeoverDelaySeconds"),
        ({"firstResponseTimeoutSeconds": 86_401}, "firstResponseTimeoutSeconds"),
        ({"offlineGraceSeconds": None}, "offlineGraceSeconds"),
        ({"name": ""}, "name"),
        ({"attachmentMaxBytes": 0}, "attachmentMaxBytes"),
        ({"attachmentMaxBytes": 100 * 1024 * 1024 + 1}, "attachmentMaxBytes"),
        ({"attachmentTypes": ["images"]}, "attachmentTypes.0"),
        ({"attachmentTypes": None}, "attachmentTypes"),
    ]
    for body, field in cases:
        response = await http.patch(f"{API}/{team_id}", json={"welcomeMessage": "Hi", **body}, headers=lead_auth)
        assert (response.status_code, errors(response)) == (400, [field]), (body, response.text)
    [team] = await rows(clean_db, "SELECT welcome_message, routing_policy FROM team")
    assert team == {"welcome_message": None, "routing_policy": "manual"}
    assert await rows(clean_db, "SELECT * FROM audit_event") == []


async def test_leads_change_settings_members_read_them_outsiders_do_not_see_them(
    http: httpx.AsyncClient, clean_db: AsyncEngine
) -> None:
    team_id = await make_team(clean_db, "Sales")
    lead, lead_auth = await person(clean_db, "Lena", team_id, "lead")
    _, member_auth = await person(clean_db, "Olga", team_id)
    _, outsider_auth = await person(clean_db, "Otto", await make_team(clean_db, "Other"))
    change = {"routingPolicy": "least_busy", "firstResponseTimeoutSeconds": 90, "welcomeMessage": "Hello!"}

    response = await http.patch(f"{API}/{team_id}", json=change, headers=member_auth)
    assert (response.status_code, response.json()["detail"]) == (403, "Only the team's leads may do this")
    response = await http.patch(f"{API}/{team_id}", json=change, headers=outsider_auth)
    assert (response.status_code, response.json()["detail"]) == (404, "Team not found")
    response = await http.patch(f"{API}/{team_id}", json={"isDefault": True}, headers=lead_auth)
    assert (response.status_code, response.json()["detail"]) == (403, "Only administrators may do this")

    response = await http.patch(f"{API}/{team_id}", json=change, headers=lead_auth)
    assert response.status_code == 200, response.text
    assert {k: response.json()[k] for k in change} == change
    response = await http.patch(f"{API}/{team_id}", json={"firstResponseTimeoutSeconds": None}, headers=lead_auth)
    assert response.json()["firstResponseTimeoutSeconds"] is None

    seen = (await http.get(f"{API}/{team_id}", headers=member_auth)).json()
    assert (seen["routingPolicy"], seen["memberCount"], seen["bridges"]) == ("least_busy", 2, None)
    assert (await http.get(f"{API}/{team_id}", headers=outsider_auth)).status_code == 404
    assert (await http.get(f"{API}/{uuid.uuid4()}", headers=lead_auth)).status_code == 404
    listed = (await http.get(API, headers=member_auth)).json()
    assert ([t["name"] for t in listed["items"]], listed["nextCursor"]) == (["Sales"], None)

    audit = await rows(clean_db, "SELECT actor_id, action, data FROM audit_event ORDER BY id")
    assert audit == [
        {"actor_id": lead, "action": "team.updated", "data": change},
        {"actor_id": lead, "action": "team.updated", "data": {"firstResponseTimeoutSeconds": None}},
    ]


async def test_team_list_pages_by_name_for_admins(http: httpx.AsyncClient, clean_db: AsyncEngine) -> None:
    for name in ("c", "a", "d", "b"):
        await make_team(clean_db, name)
    _, admin_auth = await person(clean_db, "Ada", is_admin=True)
    page = (await http.get(API, params={"limit": 3}, headers=admin_auth)).json()
    assert [t["name"] for t in page["items"]] == ["a", "b", "c"]
    page = (await http.get(API, params={"limit": 3, "cursor": page["nextCursor"]}, headers=admin_auth)).json()
    assert ([t["name"] for t in page["items"]], page["nextCursor"]) == (["d"], None)
    response = await http.get(API, params={"cursor": "nope"}, headers=admin_auth)
    assert (response.status_code, errors(response)) == (400, ["cursor"])


async def test_default_team_moves_and_cannot_be_deleted(http: httpx.AsyncClient, clean_db: AsyncEngine) -> None:
    first = await make_team(clean_db, "First", is_default=True)
    second = await make_team(clean_db, "Second")
    _, admin_auth = await person(clean_db, "Ada", is_admin=True)
    response = await http.patch(f"{API}/{first}", json={"isDefault": False}, headers=admin_auth)
    assert (response.status_code, errors(response)) == (422, ["isDefault"])
    assert (await http.patch(f"{API}/{second}", json={"isDefault": True}, headers=admin_auth)).status_code == 200
    assert await rows(clean_db, "SELECT name FROM team WHERE is_default") == [{"name": "Second"}]
    response = await http.delete(f"{API}/{second}", headers=admin_auth)
    assert response.status_code == 409
    await make_conversation(clean_db, first, status="queued")
    response = await http.delete(f"{API}/{first}", headers=admin_auth)
    assert (response.status_code, response.json()["detail"]) == (
        409,
        "The team still has 1 open conversations; transfer or close them first",
    )
    await set_values(clean_db, "conversation", {"team_id": first}, status="closed")
    assert (await http.delete(f"{API}/{first}", headers=admin_auth)).status_code == 204
    assert await rows(clean_db, "SELECT name FROM team") == [{"name": "Second"}]


async def test_members_added_changed_removed_by_leads(http: httpx.AsyncClient, clean_db: AsyncEngine) -> None:
    team_id = await make_team(clean_db, "Sales", default_capacity=3)
    _, lead_auth = await person(clean_db, "Lena", team_id, "lead")
    _, member_auth = await person(clean_db, "Olga", team_id)
    newcomer = await make_operator(clean_db, "Nina")
    gone = await make_operator(clean_db, "Gone", deactivated_at=datetime.now(UTC))
    path = f"{API}/{team_id}/members"

    body = {"operatorId": str(newcomer), "skills": ["Billing", "billing", "de"]}
    assert (await http.post(path, json=body, headers=member_auth)).status_code == 403
    response = await http.post(path, json=body, headers=lead_auth)
    assert response.status_code == 201, response.text
    added = response.json()
    assert {k: added[k] for k in ("role", "capacity", "effectiveCapacity", "skills", "displayName")} == {
        "role": "operator",
        "capacity": None,
        "effectiveCapacity": 3,
        "skills": ["billing", "de"],
        "displayName": "Nina",
    }
    response = await http.post(path, json=body, headers=lead_auth)
    assert (response.status_code, errors(response)) == (409, ["operatorId"])
    response = await http.post(path, json={"operatorId": str(gone)}, headers=lead_auth)
    assert (response.status_code, errors(response)) == (422, ["operatorId"])
    response = await http.post(path, json={"operatorId": str(uuid.uuid4()), "skills": ["no spaces"]}, headers=lead_auth)
    assert (response.status_code, errors(response)) == (400, ["skills.0"])

    response = await http.patch(f"{path}/{newcomer}", json={"capacity": 0, "role": "lead"}, headers=lead_auth)
    assert (response.json()["effectiveCapacity"], response.json()["role"]) == (0, "lead")
    response = await http.patch(f"{path}/{newcomer}", json={"capacity": None}, headers=lead_auth)
    assert response.json()["effectiveCapacity"] == 3
    response = await http.patch(f"{path}/{newcomer}", json={"role": None}, headers=lead_auth)
    assert (response.status_code, errors(response)) == (400, ["role"])
    assert (await http.patch(f"{path}/{uuid.uuid4()}", json={}, headers=lead_auth)).status_code == 404

    listed = (await http.get(path, headers=member_auth)).json()["items"]
    assert [m["displayName"] for m in listed] == ["Lena", "Nina", "Olga"]
    assert (await http.delete(f"{path}/{newcomer}", headers=lead_auth)).status_code == 204
    assert (await http.delete(f"{path}/{newcomer}", headers=lead_auth)).status_code == 404
    actions = await rows(clean_db, "SELECT action FROM audit_event ORDER BY id")
    assert [a["action"] for a in actions] == [
        "team.member_added",
        "team.member_updated",
        "team.member_updated",
        "team.member_removed",
    ]


async def test_capacity_change_drains_the_queue_through_a_worker(
    http: httpx.AsyncClient, clean_db: AsyncEngine, settings: Settings
) -> None:
    team_id = await make_team(clean_db, "Sales", routing_policy="round_robin", default_capacity=0)
    _, lead_auth = await person(clean_db, "Lena", team_id, "lead")
    olga = await make_operator(clean_db, "Olga", status="online")
    conversation_id, _ = await make_conversation(clean_db, team_id, status="queued")

    response = await http.post(f"{API}/{team_id}/members", json={"operatorId": str(olga)}, headers=lead_auth)
    assert response.status_code == 201
    await run_burst(settings)
    assert (await state(clean_db, conversation_id))["status"] == "queued"

    response = await http.patch(f"{API}/{team_id}", json={"defaultCapacity": 1}, headers=lead_auth)
    assert response.status_code == 200
    await run_burst(settings)
    assert await state(clean_db, conversation_id) == {"status": "assigned", "team_id": team_id, "assignee_id": olga}


async def test_rules_are_validated_strictly_and_replaced_in_order(
    http: httpx.AsyncClient, clean_db: AsyncEngine
) -> None:
    team_id = await make_team(clean_db, "Sales")
    _, lead_auth = await person(clean_db, "Lena", team_id, "lead")
    _, member_auth = await person(clean_db, "Olga", team_id)
    path = f"{API}/{team_id}/rules"
    vip = {
        "name": "VIP",
        "conditions": {"identity": {"email": "*@bigcorp.com", "plan": "gold"}, "country": ["fr", "BE"]},
        "setPriority": 10,
        "requiredSkills": ["VIP"],
    }
    german = {"name": "German", "conditions": {"language": "de", "url": "https://shop.example/*"}}

    response = await http.put(path, json={"rules": [vip, german]}, headers=member_auth)
    assert response.status_code == 403
    response = await http.put(path, json={"rules": [vip, german]}, headers=lead_auth)
    assert response.status_code == 200, response.text
    items = response.json()["items"]
    assert [(r["position"], r["name"]) for r in items] == [(0, "VIP"), (1, "German")]
    assert items[0]["conditions"] == {
        "url": None,
        "language": None,
        "country": ["FR", "BE"],
        "identity": {"email": "*@bigcorp.com", "plan": "gold"},
        "metadata": None,
    }
    stored = await rows(clean_db, "SELECT conditions, required_skills FROM routing_rule ORDER BY position")
    assert stored == [
        {
            "conditions": {"country": ["FR", "BE"], "identity": {"email": "*@bigcorp.com", "plan": "gold"}},
            "required_skills": ["vip"],
        },
        {"conditions": {"language": ["de"], "url": "https://shop.example/*"}, "required_skills": []},
    ]

    bad = [
        ({"name": "x", "conditions": {"URL": "*"}}, "rules.0.conditions.URL"),
        ({"name": "x", "conditions": {"country": "France"}}, "rules.0.conditions.country.0"),
        ({"name": "x", "conditions": {"language": "english!"}}, "rules.0.conditions.language.0"),
        ({"name": "x", "conditions": {"identity": {"email": None}}}, "rules.0.conditions.identity.email"),
        ({"name": "x", "setPriority": 5000}, "rules.0.setPriority"),
        ({"name": ""}, "rules.0.name"),
    ]
    for rule, field in bad:
        response = await http.put(path, json={"rules": [german, rule]}, headers=lead_auth)
        assert response.status_code == 400, rule
        assert field.replace("rules.0", "rules.1") in errors(response), (rule, errors(response))
    assert len(await rows(clean_db, "SELECT id FROM routing_rule")) == 2

    response = await http.put(path, json={"rules": [german, vip]}, headers=lead_auth)
    assert [r["name"] for r in response.json()["items"]] == ["German", "VIP"]
    listed = (await http.get(path, headers=member_auth)).json()["items"]
    assert [(r["position"], r["name"]) for r in listed] == [(0, "German"), (1, "VIP")]
    assert (await http.put(path, json={"rules": []}, headers=lead_auth)).json() == {"items": []}


async def test_saved_rules_route_new_conversations_older_team_first_on_equal_positions(
    http: httpx.AsyncClient, clean_db: AsyncEngine
) -> None:
    older = await make_team(clean_db, "Older", created_at=datetime(2025, 1, 1, tzinfo=UTC))
    newer = await make_team(clean_db, "Newer", created_at=datetime(2026, 1, 1, tzinfo=UTC))
    _, admin_auth = await person(clean_db, "Ada", is_admin=True)
    german = {"name": "German", "conditions": {"language": "de"}}
    anyone = {"name": "Anyone", "conditions": {}}
    # The older team saves last, and its German rule is at position 0 like the newer team's catch-all.
    assert (await http.put(f"{API}/{newer}/rules", json={"rules": [anyone]}, headers=admin_auth)).status_code == 200
    assert (await http.put(f"{API}/{older}/rules", json={"rules": [german]}, headers=admin_auth)).status_code == 200

    async def routed(language: str) -> uuid.UUID:
        conversation_id, revision = await make_conversation(clean_db, session_metadata={"language": language})
        await in_transaction(clean_db, lambda c: placement.route_conversation(c, conversation_id, revision, "test"))
        return (await state(clean_db, conversation_id))["team_id"]

    assert (await routed("de-AT"), await routed("fr")) == (older, newer)


async def test_bridge_secrets_are_encrypted_and_never_returned(
    http: httpx.AsyncClient, clean_db: AsyncEngine, settings: Settings
) -> None:
    team_id = await make_team(clean_db, "Sales")
    _, lead_auth = await person(clean_db, "Lena", team_id, "lead")
    _, member_auth = await person(clean_db, "Olga", team_id)
    path = f"{API}/{team_id}/bridges"
    token = "123456:AAH-secret-telegram-token"

    response = await http.patch(path, json={"telegram": {"enabled": True, "chatId": "-1001"}}, headers=lead_auth)
    assert (response.status_code, errors(response)) == (422, ["telegram.botToken"])
    body = {
        "telegram": {"enabled": True, "chatId": "-1001", "botToken": token, "webhookSecret": "tg_webhook_secret_42"},
        "slack": {"channelId": "C0123456", "signingSecret": "s3cr3t-signing"},
    }
    assert (await http.patch(path, json=body, headers=member_auth)).status_code == 403
    response = await http.patch(path, json=body, headers=lead_auth)
    assert response.status_code == 200, response.text
    assert response.json() == {
        "telegram": {
            "enabled": True,
            "chatId": "-1001",
            "botTokenConfigured": True,
            "webhookSecretConfigured": True,
        },
        "discord": None,
        "slack": {
            "enabled": False,
            "channelId": "C0123456",
            "botTokenConfigured": False,
            "signingSecretConfigured": True,
        },
    }
    [raw] = await rows(clean_db, "SELECT bridge_settings::text AS text, bridge_settings AS json FROM team")
    assert token not in raw["text"] and "s3cr3t-signing" not in raw["text"] and "tg_webhook" not in raw["text"]
    assert bridge_secret(settings.secret_key, raw["json"], "telegram", "botToken") == token
    assert bridge_secret(settings.secret_key, raw["json"], "telegram", "webhookSecret") == "tg_webhook_secret_42"

    # Non-secret settings replaced, the stored token kept; then the token cleared and the bridge removed.
    response = await http.patch(path, json={"telegram": {"enabled": True, "chatId": "-1002"}}, headers=lead_auth)
    assert response.json()["telegram"] == {
        "enabled": True,
        "chatId": "-1002",
        "botTokenConfigured": True,
        "webhookSecretConfigured": True,
    }
    response = await http.patch(path, json={"telegram": {"botToken": None, "webhookSecret": None}}, headers=lead_auth)
    assert response.json()["telegram"] == {
        "enabled": False,
        "chatId": None,
        "botTokenConfigured": False,
        "webhookSecretConfigured": False,
    }
    response = await http.patch(path, json={"slack": None}, headers=lead_auth)
    assert response.json()["slack"] is None
    assert (await http.get(path, headers=lead_auth)).json() == response.json()
    assert (await http.get(path, headers=member_auth)).status_code == 403
    audits = await rows(clean_db, "SELECT data::text AS text FROM audit_event")
    assert all(token not in a["text"] and "s3cr3t" not in a["text"] and "tg_webhook" not in a["text"] for a in audits)
