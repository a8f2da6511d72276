"""Push notifications end to end: the real api and arq workers, PostgreSQL and Redis, Switchboard's real APNs,
FCM and Web Push clients; only the push services are loopback stand-ins that check signatures and decrypt."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import httpx
from sqlalchemy.ext.asyncio import AsyncEngine

from service.push.notify import PushRelay
from service.queue import enqueue_delivery
from service.settings import Settings
from service.teams.leads import tell_leads
from tests.conftest import RunningApi
from tests.factories import add_member, bearer, make_operator, make_team, personal_token
from tests.integration.bridges.test_bridges_outbound import say, visitor
from tests.integration.push.conftest import APNS_TEAM_ID, APNS_TOPIC, PushServices
from tests.integration.workers.test_worker import run_burst
from tests.support.push import browser_keys
from tests.support.routing import rows, set_values

RELAYED = "SELECT coalesce((SELECT last_id FROM event_cursor WHERE name = 'push'), 0) AS id"
PUSH_ROWS = (
    "SELECT payload, attempts, delivered_at IS NOT NULL AS delivered, status_code FROM outbox WHERE kind = 'push' "
    "ORDER BY id"
)


async def work(settings: Settings, api: RunningApi) -> None:
    """Route what waits, relay the new events to push rows, and deliver them (as the worker's loops do)."""
    assert (await run_burst(settings, cron_jobs=[])).jobs_failed == 0
    engine = api.app.state.engine
    relay = PushRelay(engine, api.app.state.redis, settings)
    [latest] = await rows(engine, "SELECT coalesce(max(id), 0) AS id FROM event")
    while await relay.step() or (await rows(engine, RELAYED))[0]["id"] < latest["id"]:  # noqa: ASYNC110
        await asyncio.sleep(0.05)
    assert (await run_burst(settings, cron_jobs=[])).jobs_failed == 0


async def member(engine: AsyncEngine, name: str, team_id: uuid.UUID, role: str = "operator", **values: Any) -> Any:
    operator_id = await make_operator(engine, name, **values)
    await add_member(engine, team_id, operator_id, role)
    return operator_id, bearer(await personal_token(engine, operator_id))


async def alpha_with_ada(engine: AsyncEngine, status: str = "online") -> tuple[uuid.UUID, dict[str, str]]:
    """The default team (round robin) and Ada, its operator, with her bearer."""
    team = await make_team(engine, "Alpha", is_default=True, routing_policy="round_robin")
    _, ada_auth = await member(engine, "Ada", team, status=status)
    return team, ada_auth


async def three_devices(http: httpx.AsyncClient, auth: dict[str, str], services: PushServices, n: int = 1) -> Any:
    """An iPhone, an Android phone and a browser of the operator's, registered through the API."""
    apns_token, fcm_token = f"{n:02x}" * 32, f"fcm-token-{n}:APA91b"
    browser = browser_keys()
    subscription = services.web.subscribe(browser)
    for body in (
        {"platform": "apns", "token": apns_token, "appId": APNS_TOPIC, "name": "iPhone"},
        {"platform": "fcm", "token": fcm_token, "name": "Pixel"},
        {"platform": "webpush", "subscription": subscription, "name": "Chromium"},
    ):
        response = await http.post("/api/v1/me/devices", json=body, headers=auth)
        assert response.status_code == 201, response.text
    return apns_token, fcm_token, subscription["endpoint"]


def pushed(services: PushServices) -> tuple[list[Any], list[Any], list[Any]]:
    return services.apns.pushes, services.fcm.sent, [payload for _, _, payload in services.web.received]


async def test_an_assignment_pushes_once_to_each_device_of_the_assignee_and_a_redelivery_pushes_nothing(
    push_api: RunningApi, pushing: Settings, push_services: PushServices, clean_db: AsyncEngine
) -> None:
    team = await make_team(clean_db, "Alpha", is_default=True, routing_policy="round_robin")
    ada, ada_auth = await member(clean_db, "Ada", team, status="online")
    _, bob_auth = await member(clean_db, "Bob", team, status="offline")
    async with push_api.client() as http:
        apns_token, fcm_token, endpoint = await three_devices(http, ada_auth, push_services)
        await three_devices(http, bob_auth, push_services, n=2)  # not the assignee: told nothing
        session_id = await visitor(http, "Vera", "https://shop.example/", "Where is my order?")
        await work(pushing, push_api)

    body = "Visitor: Vera · Page: https://shop.example/ · Last message: Where is my order?"
    data = {"type": "assigned", "conversationId": session_id, "teamId": str(team)}
    [apns] = push_services.apns.pushes
    assert (apns.device_token, apns.topic, apns.push_type, apns.collapse_id) == (
        apns_token,
        APNS_TOPIC,
        "alert",
        session_id,
    )
    assert apns.claims["iss"] == APNS_TEAM_ID
    assert apns.payload == {
        "aps": {
            "alert": {"title": "New conversation assigned to you", "body": body},
            "sound": "default",
            "thread-id": session_id,
        },
        **data,
    }
    [fcm] = push_services.fcm.sent
    assert fcm["message"]["token"] == fcm_token
    assert fcm["message"]["notification"] == {"title": "New conversation assigned to you", "body": body}
    assert fcm["message"]["data"] == data
    assert fcm["message"]["android"]["collapse_key"] == session_id
    [(web_endpoint, web_headers, web_payload)] = push_services.web.received
    assert web_endpoint == endpoint
    assert web_payload == {"title": "New conversation assigned to you", "body": body, "tag": session_id, **data}
    assert (web_headers["urgency"], web_headers["ttl"]) == ("high", "3600")

    outbox = await rows(clean_db, PUSH_ROWS)
    assert sorted((r["payload"]["operatorId"], r["attempts"], r["delivered"], r["status_code"]) for r in outbox) == [
        (str(ada), 1, True, 200),
        (str(ada), 1, True, 200),
        (str(ada), 1, True, 201),
    ]

    # The same rows delivered again (a duplicate job, the sweep), and the same events relayed again: nothing more.
    for outbox_id in [r["id"] for r in await rows(clean_db, "SELECT id FROM outbox WHERE kind = 'push'")]:
        await enqueue_delivery(push_api.app.state.redis, outbox_id, attempt="again")
    await set_values(clean_db, "event_cursor", {"name": "push"}, last_id=0)
    await work(pushing, push_api)
    assert [len(sent) for sent in pushed(push_services)] == [1, 1, 1]
    assert len(await rows(clean_db, PUSH_ROWS)) == 3


async def test_nothing_is_pushed_while_a_foreground_client_of_the_assignee_is_connected(
    push_api: RunningApi, pushing: Settings, push_services: PushServices, clean_db: AsyncEngine
) -> None:
    _, ada_auth = await alpha_with_ada(clean_db, status="offline")
    async with push_api.client() as http:
        await three_devices(http, ada_auth, push_services)
        # The app in the foreground beats: Ada is online, and looking.
        beat = await http.post("/api/v1/me/heartbeat", json={"clientId": "ios-app", "kind": "mobile"}, headers=ada_auth)
        assert (beat.status_code, beat.json()["status"]) == (200, "online")
        session_id = await visitor(http, "Vera", "https://shop.example/", "Where is my order?")
        await work(pushing, push_api)
        await say(http, session_id, "Hello?")
        await work(pushing, push_api)
    assert [len(sent) for sent in pushed(push_services)] == [0, 0, 0]
    outbox = await rows(clean_db, PUSH_ROWS)
    assert (
        sorted((r["payload"]["action"], r["delivered"], r["status_code"]) for r in outbox)
        == [("assigned", True, None)] * 3 + [("message", True, None)] * 3
    )


async def test_a_dead_token_removes_its_device_without_a_retry(
    push_api: RunningApi, pushing: Settings, push_services: PushServices, clean_db: AsyncEngine
) -> None:
    _, ada_auth = await alpha_with_ada(clean_db)
    async with push_api.client() as http:
        apns_token, fcm_token, endpoint = await three_devices(http, ada_auth, push_services)
        push_services.apns.dead(apns_token)
        push_services.fcm.dead(fcm_token)
        push_services.web.dead(endpoint)
        await visitor(http, "Vera", "https://shop.example/", "Where is my order?")
        await work(pushing, push_api)
        assert (await http.get("/api/v1/me/devices", headers=ada_auth)).json() == {"items": []}
    assert [len(sent) for sent in pushed(push_services)] == [0, 0, 0]
    assert push_services.apns.refusals == [(410, "Unregistered")]
    assert [call.status for call in push_services.fcm.calls_to("send")] == [404]
    assert [call.status for call in push_services.web.calls_to("push")] == [410]
    outbox = await rows(clean_db, PUSH_ROWS)
    assert sorted((r["attempts"], r["delivered"], r["status_code"]) for r in outbox) == [
        (1, True, 404),
        (1, True, 410),
        (1, True, 410),
    ]


async def test_an_apns_bad_device_token_is_dead_too(
    push_api: RunningApi, pushing: Settings, push_services: PushServices, clean_db: AsyncEngine
) -> None:
    _, ada_auth = await alpha_with_ada(clean_db)
    async with push_api.client() as http:
        apns_token, _, _ = await three_devices(http, ada_auth, push_services)
        push_services.apns.dead(apns_token, bad_device_token=True)
        await visitor(http, "Vera", "https://shop.example/", "Where is my order?")
        await work(pushing, push_api)
        devices = (await http.get("/api/v1/me/devices", headers=ada_auth)).json()["items"]
    assert [d["platform"] for d in devices] == ["fcm", "webpush"]
    assert push_services.apns.refusals == [(400, "BadDeviceToken")]


async def test_a_visitor_message_in_my_conversation_is_pushed_to_me(
    push_api: RunningApi, pushing: Settings, push_services: PushServices, clean_db: AsyncEngine
) -> None:
    team, ada_auth = await alpha_with_ada(clean_db)
    async with push_api.client() as http:
        await three_devices(http, ada_auth, push_services)
        session_id = await visitor(http, "Vera", "https://shop.example/", "Where is my order?")
        await work(pushing, push_api)
        await say(http, session_id, "It was due on Monday")
        await work(pushing, push_api)
    data = {"type": "message", "conversationId": session_id, "teamId": str(team)}
    apns, fcm, web = pushed(push_services)
    assert [p.payload["type"] for p in apns] == ["assigned", "message"]
    assert apns[1].payload["aps"]["alert"] == {"title": "Vera", "body": "It was due on Monday"}
    assert apns[1].collapse_id == session_id
    assert fcm[1]["message"]["notification"] == {"title": "Vera", "body": "It was due on Monday"}
    assert fcm[1]["message"]["data"] == data
    assert web[1] == {"title": "Vera", "body": "It was due on Monday", "tag": session_id, **data}


async def test_a_mention_in_a_note_is_pushed_to_the_mentioned(
    push_api: RunningApi, pushing: Settings, push_services: PushServices, clean_db: AsyncEngine
) -> None:
    team, ada_auth = await alpha_with_ada(clean_db)
    _, bob_auth = await member(clean_db, "Bob", team, status="away", email="bob@example.test")
    async with push_api.client() as http:
        await three_devices(http, bob_auth, push_services)
        session_id = await visitor(http, "Vera", "https://shop.example/", "Where is my order?")
        await work(pushing, push_api)
        note = {"body": "@bob could you check the warehouse?"}
        response = await http.post(f"/api/v1/conversations/{session_id}/notes", json=note, headers=ada_auth)
        assert response.status_code == 201, response.text
        await work(pushing, push_api)
    data = {"type": "mention", "conversationId": session_id, "teamId": str(team)}
    title, body = "Ada mentioned you in a note", "@bob could you check the warehouse?"
    apns, fcm, web = pushed(push_services)
    assert [(p.payload["aps"]["alert"], {k: p.payload[k] for k in data}) for p in apns] == [
        ({"title": title, "body": body}, data)
    ]
    assert [(m["message"]["notification"], m["message"]["data"]) for m in fcm] == [
        ({"title": title, "body": body}, data)
    ]
    assert web == [{"title": title, "body": body, "tag": session_id, **data}]


async def test_a_long_queue_alerts_the_teams_leads_once(
    push_api: RunningApi, pushing: Settings, push_services: PushServices, clean_db: AsyncEngine
) -> None:
    team = await make_team(clean_db, "Alpha", is_default=True, routing_policy="manual", queue_alert_threshold=1)
    _, lena_auth = await member(clean_db, "Lena", team, "lead", status="offline")
    _, ada_auth = await member(clean_db, "Ada", team, status="online")
    async with push_api.client() as http:
        await three_devices(http, lena_auth, push_services)
        await three_devices(http, ada_auth, push_services, n=2)  # not a lead: no queue alerts
        for name in ("Vera", "Walt", "Xena"):
            await visitor(http, name, "https://shop.example/", "Hello")
        await work(pushing, push_api)
    title, body = "Queue alert", "3 conversations waiting in Alpha (alert above 1)"
    data = {"type": "queue", "teamId": str(team)}
    apns, fcm, web = pushed(push_services)
    assert [(p.device_token, p.payload["aps"]["alert"], p.payload["teamId"]) for p in apns] == [
        ("01" * 32, {"title": title, "body": body}, str(team))
    ]
    assert [(m["message"]["token"], m["message"]["notification"], m["message"]["data"]) for m in fcm] == [
        ("fcm-token-1:APA91b", {"title": title, "body": body}, data)
    ]
    assert web == [{"title": title, "body": body, "tag": f"queue-{team}", **data}]


async def test_leads_told_of_a_conversation_are_pushed_on_each_device(
    push_api: RunningApi, pushing: Settings, push_services: PushServices, clean_db: AsyncEngine
) -> None:
    team, _ = await alpha_with_ada(clean_db)
    _, lena_auth = await member(clean_db, "Lena", team, "lead", status="offline")
    async with push_api.client() as http:
        await three_devices(http, lena_auth, push_services)
        session_id = await visitor(http, "Vera", "https://shop.example/", "Anyone there?")
        await work(pushing, push_api)
        before = [len(p) for p in pushed(push_services)]
        async with clean_db.begin() as conn:
            await tell_leads(conn, team, session_id, reason="ai_handed_back")
        await work(pushing, push_api)
    apns, fcm, web = (p[n:] for p, n in zip(pushed(push_services), before, strict=True))
    title = "The AI could not answer: a conversation is back with the team"
    body = "Visitor: Vera · Page: https://shop.example/ · Last message: Anyone there?"
    data = {"type": "leads", "conversationId": session_id, "teamId": str(team)}
    assert [(p.payload["aps"]["alert"], {k: p.payload[k] for k in data}) for p in apns] == [
        ({"title": title, "body": body}, data)
    ]
    assert [(m["message"]["notification"], m["message"]["data"]) for m in fcm] == [
        ({"title": title, "body": body}, data)
    ]
    assert web == [{"title": title, "body": body, "tag": session_id, **data}]
