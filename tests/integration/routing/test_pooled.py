"""The pooled policy end to end: a worker process offers a queued conversation to every eligible member (their
stream, their inbox), and of concurrent claims and replies through the API exactly one gets it."""

from __future__ import annotations

import asyncio
import re
import uuid

import httpx
from arq import create_pool
from redis.asyncio import Redis
from sqlalchemy.ext.asyncio import AsyncEngine

from service.db.transactions import in_transaction
from service.queue import enqueue_route
from service.resources import redis_settings
from service.routing import handoff
from service.settings import Settings
from tests.conftest import RunningApi
from tests.factories import add_member, bearer, make_operator, make_team, personal_token
from tests.support.routing import make_conversation, rows, state
from tests.support.routing_worker import wait_until_idle, worker_processes
from tests.support.sse import open_stream

API = "/api/v1/conversations"


async def member(
    engine: AsyncEngine, team_id: uuid.UUID, name: str, skills: list[str], status: str = "online"
) -> tuple[uuid.UUID, dict[str, str], str]:
    operator_id = await make_operator(engine, name, status=status)
    await add_member(engine, team_id, operator_id, skills=skills)
    token = await personal_token(engine, operator_id)
    return operator_id, bearer(token), token


async def routed_by_a_worker(settings: Settings, engine: AsyncEngine, conversation_ids: list[str]) -> None:
    """Routing jobs run by a real worker process, each leaving its conversation queued."""
    arq = await create_pool(redis_settings(settings), default_queue_name=settings.queue_name)
    for conversation_id in conversation_ids:
        await enqueue_route(arq, conversation_id, 1, trigger="visitor_message")
    await arq.aclose()
    redis = Redis.from_url(settings.redis_url)
    async with worker_processes(settings, 1):
        await wait_until_idle(redis, settings.queue_name)
    await redis.aclose()
    assert [(await state(engine, cid))["status"] for cid in conversation_ids] == ["queued"] * len(conversation_ids)


async def offered(http: httpx.AsyncClient, auth: dict[str, str]) -> list[str]:
    response = await http.get(API, params={"assignee": "offered"}, headers=auth)
    assert response.status_code == 200, response.text
    return [item["id"] for item in response.json()["items"]]


async def test_pooled_offers_to_every_eligible_member_and_the_first_claim_wins(
    settings: Settings, clean_db: AsyncEngine, http: httpx.AsyncClient, api: RunningApi
) -> None:
    team_id = await make_team(clean_db, routing_policy="pooled")
    eligible = [await member(clean_db, team_id, name, ["fr:2"]) for name in ("Ada", "Bob", "Cy", "Dee")]
    novice = await member(clean_db, team_id, "Eve", ["fr"])
    away = await member(clean_db, team_id, "Fay", ["fr:3"], status="offline")
    conversation_id, _ = await make_conversation(clean_db, team_id, required_skills=["fr:2"])
    await routed_by_a_worker(settings, clean_db, [conversation_id])

    assert (await state(clean_db, conversation_id))["status"] == "queued"
    [decision] = await rows(clean_db, "SELECT policy, outcome, candidates FROM routing_decision")
    assert (decision["policy"], decision["outcome"]) == ("pooled", "queued")
    verdicts = {c["operatorId"]: c.get("excluded", c.get("rank")) for c in decision["candidates"]}
    assert verdicts[str(novice[0])] == "missing_skill" and verdicts[str(away[0])] == "offline"
    assert sorted(verdicts[str(op)] for op, _, _ in eligible) == [0, 1, 2, 3]
    [stored] = await rows(clean_db, "SELECT team_id, operator_ids, data FROM event WHERE kind = 'conversation.offered'")
    assert stored["team_id"] is None  # on the stream of the members it is offered to, and theirs only
    assert sorted(stored["operator_ids"]) == sorted(op for op, _, _ in eligible)
    assert stored["data"]["operatorIds"] == [str(op) for op in stored["operator_ids"]]
    for _, auth, _ in eligible:
        assert await offered(http, auth) == [conversation_id]
    assert await offered(http, novice[1]) == []
    inbox = await http.get("/app/inbox", params={"tab": "offers"}, headers=eligible[0][1])
    assert re.findall(r'data-conversation="([^"]+)"', inbox.text) == [conversation_id]
    # The tab is there for members of a pooled team (and only for them: tests/browser/test_dashboard.py).
    page = await http.get("/app", headers=eligible[0][1])
    assert ">Offered to me</a>" in page.text
    # On the stream of a member it is offered to (replayed from the start).
    async with open_stream(api.url, eligible[0][2], last_event_id=0) as stream:
        while (event := await stream.next()).event != "conversation.offered":
            pass
    assert (event.data["teamId"], event.data["data"]) == (
        None,
        {"conversationId": conversation_id, "teamId": str(team_id), "operatorIds": stored["data"]["operatorIds"]},
    )

    # Everyone claims at once: one assignment, the others are told it is no longer waiting.
    answers = await asyncio.gather(*(http.post(f"{API}/{conversation_id}/claim", headers=a) for _, a, _ in eligible))
    assert sorted(r.status_code for r in answers) == [200, 409, 409, 409]
    [winner] = [op for (op, _, _), r in zip(eligible, answers, strict=True) if r.status_code == 200]
    assert await rows(clean_db, "SELECT operator_id, reason FROM assignment") == [
        {"operator_id": winner, "reason": "claimed"}
    ]
    assert (await state(clean_db, conversation_id))["assignee_id"] == winner
    for _, auth, _ in eligible:
        assert await offered(http, auth) == []

    # Back in the queue (the offline policy, a deactivation): offered to everyone eligible again.
    await in_transaction(clean_db, lambda c: handoff.requeue(c, conversation_id, reason="operator_offline"))
    offers = await rows(clean_db, "SELECT operator_ids FROM event WHERE kind = 'conversation.offered' ORDER BY id")
    assert [sorted(o["operator_ids"]) for o in offers] == [sorted(op for op, _, _ in eligible)] * 2


async def test_pooled_a_reply_takes_it_and_racing_claims_lose(
    settings: Settings, clean_db: AsyncEngine, http: httpx.AsyncClient
) -> None:
    team_id = await make_team(clean_db, routing_policy="pooled")
    ada, ada_auth, _ = await member(clean_db, team_id, "Ada", [])
    others = [await member(clean_db, team_id, name, []) for name in ("Bob", "Cy")]
    conversation_id, _ = await make_conversation(clean_db, team_id)
    await routed_by_a_worker(settings, clean_db, [conversation_id])
    answers = await asyncio.gather(
        http.post(f"{API}/{conversation_id}/messages", json={"content": "Hello!"}, headers=ada_auth),
        *(http.post(f"{API}/{conversation_id}/claim", headers=auth) for _, auth, _ in others),
    )
    won = [r.status_code for r in answers if r.status_code in (200, 201)]
    assert len(won) == 1
    [assignment] = await rows(clean_db, "SELECT operator_id FROM assignment")
    holder = assignment["operator_id"]
    assert (await state(clean_db, conversation_id))["assignee_id"] == holder
    if holder == ada:
        assert answers[0].status_code == 201
        assert sorted(r.status_code for r in answers[1:]) == [409, 409]
    else:
        assert answers[0].status_code == 403  # another operator holds it: the reply is refused, not sent
        messages = await rows(clean_db, "SELECT count(*) AS n FROM message WHERE sender = 'operator'")
        assert messages == [{"n": 0}]
