"""Routing endpoints over HTTP (claim, transfer, close, reopen, decisions) and a handoff through real workers."""

from __future__ import annotations

import asyncio
import uuid

import httpx
from arq import create_pool
from sqlalchemy.ext.asyncio import AsyncEngine

from service.db.transactions import in_transaction
from service.queue import enqueue_drain
from service.resources import redis_settings
from service.routing import placement
from service.settings import Settings
from tests.factories import add_member, bearer, make_operator, make_team, personal_token
from tests.integration.workers.test_worker import run_burst, start_conversation
from tests.support.routing import make_conversation, rows, set_values, state

API = "/api/v1/conversations"


async def person(
    engine: AsyncEngine, name: str, team_id: uuid.UUID, role: str = "operator", **member: object
) -> tuple[uuid.UUID, dict[str, str]]:
    operator_id = await make_operator(engine, name, status="online")
    await add_member(engine, team_id, operator_id, role=role, **member)
    return operator_id, bearer(await personal_token(engine, operator_id))


async def queued(engine: AsyncEngine, team_id: uuid.UUID) -> str:
    conversation_id, revision = await make_conversation(engine, team_id)
    await in_transaction(engine, lambda c: placement.route_conversation(c, conversation_id, revision, "test"))
    return conversation_id


async def test_claim_by_a_member_once(http: httpx.AsyncClient, clean_db: AsyncEngine) -> None:
    team_id = await make_team(clean_db, routing_policy="manual")
    ada, ada_auth = await person(clean_db, "Ada", team_id)
    other_team = await make_team(clean_db)
    _, outsider_auth = await person(clean_db, "Out", other_team)
    conversation_id = await queued(clean_db, team_id)

    response = await http.post(f"{API}/{conversation_id}/claim", headers=outsider_auth)
    assert (response.status_code, response.json()["detail"]) == (404, "Conversation not found")
    response = await http.post(f"{API}/{conversation_id}/claim", headers=ada_auth)
    assert response.status_code == 200, response.text
    assert response.json() == {
        "conversationId": conversation_id,
        "status": "assigned",
        "teamId": str(team_id),
        "assigneeId": str(ada),
        "routingRevision": 3,
    }
    response = await http.post(f"{API}/{conversation_id}/claim", headers=ada_auth)
    assert (response.status_code, response.json()["detail"]) == (409, "This conversation is not waiting in a queue")
    assert (await http.post(f"{API}/missing/claim", headers=ada_auth)).status_code == 404
    assert (await http.post(f"{API}/{conversation_id}/claim")).status_code == 401


async def test_transfer_override_is_for_leads_and_records_the_note(
    http: httpx.AsyncClient, clean_db: AsyncEngine
) -> None:
    team_id = await make_team(clean_db, routing_policy="round_robin")
    ada, ada_auth = await person(clean_db, "Ada", team_id)
    bob, _ = await person(clean_db, "Bob", team_id, capacity=0)
    _, lead_auth = await person(clean_db, "Lea", team_id, role="lead", capacity=0)
    await set_values(clean_db, "operator", {"display_name": "Lea"}, status="offline")
    conversation_id = await queued(clean_db, team_id)
    assert (await state(clean_db, conversation_id))["assignee_id"] == ada

    body = {"operatorId": str(bob), "note": "needs billing access", "overrideCapacity": True}
    response = await http.post(f"{API}/{conversation_id}/transfer", json=body, headers=ada_auth)
    assert (response.status_code, response.json()["detail"]) == (403, "Only the team's leads may do this")
    response = await http.post(f"{API}/{conversation_id}/transfer", json={"operatorId": str(bob)}, headers=ada_auth)
    assert (response.status_code, response.json()["detail"]) == (409, "That operator is at capacity")
    response = await http.post(f"{API}/{conversation_id}/transfer", json=body, headers=lead_auth)
    assert response.status_code == 200
    assert (response.json()["assigneeId"], response.json()["status"]) == (str(bob), "assigned")
    assert await rows(clean_db, "SELECT body FROM internal_note") == [{"body": "needs billing access"}]
    [decision] = await rows(
        clean_db, "SELECT trigger, reason, actor_id FROM routing_decision WHERE trigger = 'transfer'"
    )
    assert decision["reason"] == "needs billing access"


async def test_transfer_body_must_name_one_target(http: httpx.AsyncClient, clean_db: AsyncEngine) -> None:
    team_id = await make_team(clean_db, routing_policy="manual")
    _, auth = await person(clean_db, "Ada", team_id)
    conversation_id = await queued(clean_db, team_id)
    both = {"operatorId": str(uuid.uuid4()), "teamId": str(uuid.uuid4())}
    response = await http.post(f"{API}/{conversation_id}/transfer", json=both, headers=auth)
    assert response.status_code == 400
    assert "give exactly one of operatorId and teamId" in response.json()["errors"][0]["message"]
    response = await http.post(f"{API}/{conversation_id}/transfer", json={"teamId": str(uuid.uuid4())}, headers=auth)
    assert (response.status_code, response.json()["detail"]) == (404, "Team not found")


async def test_close_reopen_and_decisions_pages(http: httpx.AsyncClient, clean_db: AsyncEngine) -> None:
    team_id = await make_team(clean_db, routing_policy="least_busy")
    ada, auth = await person(clean_db, "Ada", team_id)
    conversation_id = await queued(clean_db, team_id)
    response = await http.post(f"{API}/{conversation_id}/close", headers=auth)
    assert (response.status_code, response.json()["status"]) == (200, "closed")
    assert (await http.post(f"{API}/{conversation_id}/close", headers=auth)).status_code == 409
    response = await http.post(f"{API}/{conversation_id}/reopen", headers=auth)
    assert (response.status_code, response.json()["status"], response.json()["assigneeId"]) == (
        200,
        "assigned",
        str(ada),
    )

    first = (await http.get(f"{API}/{conversation_id}/routing-decisions", params={"limit": 1}, headers=auth)).json()
    assert [d["trigger"] for d in first["items"]] == ["test"]
    assert first["items"][0]["candidates"] == [
        {
            "operatorId": str(ada),
            "status": "online",
            "open": 0,
            "capacity": 5,
            "lastAssignedAt": None,
            "excluded": None,
            "rank": 0,
            "load": 0.0,
            "busy": False,
            "missingSkills": [],
        }
    ]
    second = (
        await http.get(
            f"{API}/{conversation_id}/routing-decisions", params={"cursor": first["nextCursor"]}, headers=auth
        )
    ).json()
    assert ([d["trigger"] for d in second["items"]], second["nextCursor"]) == (["reopened"], None)
    response = await http.get(f"{API}/{conversation_id}/routing-decisions", params={"cursor": "x"}, headers=auth)
    assert (response.status_code, response.json()["errors"]) == (
        400,
        [{"field": "cursor", "message": "use nextCursor from a previous page"}],
    )


async def test_handoff_end_to_end_through_workers(
    http: httpx.AsyncClient, settings: Settings, clean_db: AsyncEngine
) -> None:
    """Widget message → worker assigns in the default team → transfer to a team with nobody online (queued) →
    its operator comes online → a drain job assigns it; the freed slot in the first team takes its queue."""
    support = await make_team(clean_db, "Support", is_default=True, routing_policy="round_robin")
    ada, ada_auth = await person(clean_db, "Ada", support, capacity=1)
    billing = await make_team(clean_db, "Billing", routing_policy="least_busy")
    zed, _ = await person(clean_db, "Zed", billing)
    await set_values(clean_db, "operator", {"id": zed}, status="offline")

    started = [await start_conversation(http, f"visitor-{n}") for n in range(2)]
    assert (await run_burst(settings)).jobs_failed == 0
    # The two routing jobs ran concurrently: one got Ada's only slot, the other waits.
    [first] = [c for c in started if (await state(clean_db, c))["assignee_id"] == ada]
    [second] = [c for c in started if (await state(clean_db, c))["status"] == "queued"]

    body = {"teamId": str(billing), "note": "invoice dispute"}
    response = await http.post(f"{API}/{first}/transfer", json=body, headers=ada_auth)
    assert (response.status_code, response.json()["status"], response.json()["teamId"]) == (200, "queued", str(billing))
    # Ada's slot went to the conversation waiting in Support, in the same transaction.
    assert await state(clean_db, second) == {"status": "assigned", "team_id": support, "assignee_id": ada}

    await set_values(clean_db, "operator", {"id": zed}, status="online")
    arq = await create_pool(redis_settings(settings), default_queue_name=settings.queue_name)
    await enqueue_drain(arq, billing, "presence")
    await arq.aclose()
    # Without the sweep, so the drain job asked for is the one that assigns (the team tells no queue positions).
    worker = await run_burst(settings, cron_jobs=[])
    assert (worker.jobs_complete, worker.jobs_failed) == (1, 0)
    assert await state(clean_db, first) == {"status": "assigned", "team_id": billing, "assignee_id": zed}
    kinds = [
        r["kind"]
        for r in await rows(clean_db, "SELECT kind FROM event WHERE conversation_id = :id ORDER BY id", id=first)
    ]
    assert kinds == [
        "message.created",
        "conversation.assigned",
        "conversation.queued",
        "note.created",
        "conversation.transferred",
        "conversation.assigned",
    ]


async def test_claim_transfer_and_close_with_an_idempotency_key_act_once(
    http: httpx.AsyncClient, clean_db: AsyncEngine
) -> None:
    team_id = await make_team(clean_db, routing_policy="manual")
    ada, ada_auth = await person(clean_db, "Ada", team_id)
    bob, bob_auth = await person(clean_db, "Bob", team_id)
    conversation_id = await queued(clean_db, team_id)
    path = f"{API}/{conversation_id}"

    claims = await asyncio.gather(
        *(http.post(f"{path}/claim", headers=ada_auth | {"Idempotency-Key": "claim-1"}) for _ in range(5))
    )
    assert [r.status_code for r in claims] == [200] * 5
    assert {r.json()["assigneeId"] for r in claims} == {str(ada)}
    assert sorted(r.headers.get("Idempotent-Replayed", "no") for r in claims) == ["no"] + ["true"] * 4
    # Without a key the repeat is what it is: the conversation no longer waits.
    response = await http.post(f"{path}/claim", headers=ada_auth)
    assert (response.status_code, response.json()["detail"]) == (409, "This conversation is not waiting in a queue")

    transfer = {"operatorId": str(bob)}
    first = await http.post(f"{path}/transfer", json=transfer, headers=ada_auth | {"Idempotency-Key": "move-1"})
    again = await http.post(f"{path}/transfer", json=transfer, headers=ada_auth | {"Idempotency-Key": "move-1"})
    assert (first.status_code, again.status_code) == (200, 200)
    assert first.json() == again.json()
    assert ("Idempotent-Replayed" in first.headers, again.headers["Idempotent-Replayed"]) == (False, "true")
    assert again.json()["assigneeId"] == str(bob)
    other = await http.post(
        f"{path}/transfer", json={"operatorId": str(ada)}, headers=ada_auth | {"Idempotency-Key": "move-1"}
    )
    assert (other.status_code, other.json()["detail"]) == (409, "This Idempotency-Key was used for a different request")

    closes = [await http.post(f"{path}/close", headers=bob_auth | {"Idempotency-Key": "close-1"}) for _ in range(2)]
    assert [r.status_code for r in closes] == [200, 200]
    assert closes[0].json() == closes[1].json()
    assert [r.headers.get("Idempotent-Replayed", "no") for r in closes] == ["no", "true"]
    assert closes[1].json()["status"] == "closed"
    history = await rows(
        clean_db,
        "SELECT operator_id, reason FROM assignment WHERE conversation_id = :id ORDER BY started_at",
        id=conversation_id,
    )
    assert [h["operator_id"] for h in history] == [ada, bob]
    assert await rows(clean_db, "SELECT count(*) AS n FROM idempotent_action") == [{"n": 3}]
    response = await http.post(f"{path}/close", headers=bob_auth | {"Idempotency-Key": "bad key"})
    assert (response.status_code, response.json()["errors"][0]["field"]) == (400, "Idempotency-Key")
