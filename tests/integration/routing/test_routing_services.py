"""The routing engine's service functions against real PostgreSQL: assignment, queue, drain, claim, handoff."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from service.db.transactions import in_transaction
from service.errors import Conflict, NotFound
from service.routing import handoff, placement
from tests.factories import add_member, make_operator, make_team
from tests.support.routing import make_conversation, rows, set_values, state


async def route(engine: AsyncEngine, conversation_id: str, revision: int = 1) -> placement.RouteOutcome:
    return await in_transaction(
        engine, lambda conn: placement.route_conversation(conn, conversation_id, revision, "test")
    )


async def team_of(engine: AsyncEngine, policy: str, *members: tuple[str, dict[str, Any]], **team: Any) -> Any:
    """A team with the policy and online members by name; returns (team id, {name: operator id})."""
    team_id = await make_team(engine, routing_policy=policy, **team)
    ids = {}
    for name, values in members:
        operator_values = {"status": values.pop("status", "online")}
        ids[name] = await make_operator(engine, name, **operator_values)
        await add_member(engine, team_id, ids[name], **values)
    return team_id, ids


async def test_round_robin_assigns_never_assigned_then_longest_ago(clean_db: AsyncEngine) -> None:
    team_id, ops = await team_of(clean_db, "round_robin", ("Ada", {}), ("Bob", {}), ("Cy", {}))
    long_ago = datetime(2026, 1, 1, tzinfo=UTC)
    await set_values(clean_db, "team_member", {"operator_id": ops["Ada"]}, last_assigned_at=long_ago + timedelta(1))
    await set_values(clean_db, "team_member", {"operator_id": ops["Bob"]}, last_assigned_at=long_ago)
    chosen = []
    for _ in range(4):
        conversation_id, _ = await make_conversation(clean_db, team_id)
        chosen.append((await route(clean_db, conversation_id)).operator_id)
    assert chosen == [ops["Cy"], ops["Bob"], ops["Ada"], ops["Cy"]]
    history = await rows(clean_db, "SELECT reason, capacity, open_after FROM assignment ORDER BY id")
    assert history == [{"reason": "routed", "capacity": 5, "open_after": n} for n in (1, 1, 1, 2)]


async def test_least_busy_uses_load_ratio_with_member_capacity(clean_db: AsyncEngine) -> None:
    team_id, ops = await team_of(clean_db, "least_busy", ("Ada", {"capacity": 10}), ("Bob", {"capacity": 2}))
    await set_values(clean_db, "operator", {"id": ops["Ada"]}, open_conversations=4)  # 0.4
    await set_values(clean_db, "operator", {"id": ops["Bob"]}, open_conversations=1)  # 0.5
    conversation_id, _ = await make_conversation(clean_db, team_id)
    assert await route(clean_db, conversation_id) == placement.RouteOutcome("assigned", team_id, ops["Ada"])
    [decision] = await rows(clean_db, "SELECT policy, outcome, candidates, chosen_operator_id FROM routing_decision")
    assert decision["chosen_operator_id"] == ops["Ada"]
    by_id = {c["operatorId"]: c for c in decision["candidates"]}
    assert (by_id[str(ops["Ada"])]["rank"], by_id[str(ops["Ada"])]["load"]) == (0, 0.4)
    assert (by_id[str(ops["Bob"])]["rank"], by_id[str(ops["Bob"])]["load"]) == (1, 0.5)


async def test_no_eligible_operator_queues_with_every_reason_recorded(clean_db: AsyncEngine) -> None:
    team_id, ops = await team_of(
        clean_db,
        "least_busy",
        ("Off", {"status": "offline", "skills": ["billing"]}),
        ("Full", {"capacity": 0, "skills": ["billing"]}),
        ("NoSkill", {}),
    )
    conversation_id, _ = await make_conversation(clean_db, team_id, required_skills=["billing"])
    assert await route(clean_db, conversation_id) == placement.RouteOutcome("queued", team_id)
    [decision] = await rows(clean_db, "SELECT outcome, candidates FROM routing_decision")
    reasons = {c["operatorId"]: c["excluded"] for c in decision["candidates"]}
    assert reasons == {
        str(ops["Off"]): "offline",
        str(ops["Full"]): "at_capacity",
        str(ops["NoSkill"]): "missing_skill",
    }
    assert [c.get("missingSkills") for c in decision["candidates"] if c["excluded"] == "missing_skill"] == [["billing"]]
    assert await state(clean_db, conversation_id) == {"status": "queued", "team_id": team_id, "assignee_id": None}
    assert await rows(clean_db, "SELECT kind FROM event") == [{"kind": "conversation.queued"}]


async def waiting_for_a_lock(engine: AsyncEngine) -> None:
    """Return once some other session of this database waits for a lock."""
    for _ in range(1000):
        waiting = await rows(
            engine,
            "SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'",
        )
        if waiting:
            return
        await asyncio.sleep(0.01)
    raise AssertionError("nobody waited for the lock")


async def test_fast_path_that_loses_every_race_starts_over_and_queues(clean_db: AsyncEngine) -> None:
    """The members read with the conversation's lock predate the wait for it: Ada filled up meanwhile, so the
    capacity check fails, the transaction starts over with the team lock first, and queues with the reason."""
    team_id, ops = await team_of(clean_db, "least_busy", ("Ada", {"capacity": 1}))
    conversation_id, _ = await make_conversation(clean_db, team_id)
    async with clean_db.connect() as holder:
        await holder.execute(sa.text("SELECT 1 FROM conversation WHERE id = :id FOR UPDATE"), {"id": conversation_id})
        routed = asyncio.create_task(route(clean_db, conversation_id))
        await waiting_for_a_lock(clean_db)
        await set_values(clean_db, "operator", {"id": ops["Ada"]}, open_conversations=1)
        await holder.rollback()
    assert await routed == placement.RouteOutcome("queued", team_id)
    [decision] = await rows(clean_db, "SELECT outcome, candidates FROM routing_decision")
    assert decision["outcome"] == "queued"
    assert [(c["operatorId"], c["open"], c["excluded"]) for c in decision["candidates"]] == [
        (str(ops["Ada"]), 1, "at_capacity")
    ]
    assert await rows(clean_db, "SELECT count(*) AS n FROM assignment") == [{"n": 0}]


async def test_rules_choose_team_priority_and_skills_first_match_wins(clean_db: AsyncEngine) -> None:
    sales, _ = await team_of(clean_db, "manual")
    billing, _ = await team_of(clean_db, "manual")
    async with clean_db.begin() as conn:
        await conn.execute(
            sa.text(
                "INSERT INTO routing_rule (id, team_id, position, name, conditions, set_priority, required_skills) "
                "VALUES (gen_random_uuid(), :billing, 1, 'billing fr', :c1, 5, '{french}'), "
                "(gen_random_uuid(), :sales, 2, 'pricing', :c2, NULL, '{}')"
            ).bindparams(sa.bindparam("c1", type_=sa.JSON), sa.bindparam("c2", type_=sa.JSON)),
            {
                "billing": billing,
                "sales": sales,
                "c1": {"url": "https://shop.test/billing/*", "language": "fr"},
                "c2": {"url": "*/pricing*"},
            },
        )
    french, _ = await make_conversation(
        clean_db, session_metadata={"url": "https://shop.test/billing/x", "language": "fr-FR"}
    )
    english, _ = await make_conversation(
        clean_db, session_metadata={"url": "https://shop.test/billing/x", "language": "en"}
    )
    pricing, _ = await make_conversation(clean_db, session_metadata={"url": "https://shop.test/pricing"})
    for conversation_id in (french, english, pricing):
        await route(clean_db, conversation_id)
    found = await rows(clean_db, "SELECT id, team_id, priority, required_skills FROM conversation ORDER BY id")
    by_id = {r.pop("id"): r for r in found}
    default_team = (await rows(clean_db, "SELECT id FROM team WHERE is_default"))[0]["id"]
    assert by_id[french] == {"team_id": billing, "priority": 5, "required_skills": ["french"]}
    assert by_id[english] == {"team_id": default_team, "priority": 0, "required_skills": []}
    assert by_id[pricing] == {"team_id": sales, "priority": 0, "required_skills": []}


async def test_close_frees_the_slot_and_drains_the_queue_in_priority_order(clean_db: AsyncEngine) -> None:
    team_id, ops = await team_of(clean_db, "round_robin", ("Ada", {"capacity": 1}))
    first, _ = await make_conversation(clean_db, team_id)
    assert (await route(clean_db, first)).outcome == "assigned"
    low, _ = await make_conversation(clean_db, team_id)
    high, _ = await make_conversation(clean_db, team_id, priority=3)
    assert (await route(clean_db, low)).outcome == "queued"
    assert (await route(clean_db, high)).outcome == "queued"
    await in_transaction(clean_db, lambda c: handoff.close_conversation(c, first, actor_id=ops["Ada"]))
    assert await state(clean_db, high) == {"status": "assigned", "team_id": team_id, "assignee_id": ops["Ada"]}
    assert (await state(clean_db, low))["status"] == "queued"
    assert await rows(clean_db, "SELECT open_conversations FROM operator") == [{"open_conversations": 1}]
    ended = await rows(clean_db, "SELECT end_reason FROM assignment WHERE conversation_id = :id", id=first)
    assert ended == [{"end_reason": "closed"}]
    with pytest.raises(Conflict):
        await in_transaction(clean_db, lambda c: handoff.close_conversation(c, first, actor_id=None))


async def test_drain_after_operator_comes_online(clean_db: AsyncEngine) -> None:
    team_id, ops = await team_of(clean_db, "least_busy", ("Ada", {"status": "offline"}))
    conversation_id, _ = await make_conversation(clean_db, team_id)
    assert (await route(clean_db, conversation_id)).outcome == "queued"
    await set_values(clean_db, "operator", {"id": ops["Ada"]}, status="online")
    assert await in_transaction(clean_db, lambda c: placement.drain_team_queue(c, team_id, "presence")) == 1
    assert (await state(clean_db, conversation_id))["assignee_id"] == ops["Ada"]
    assert await in_transaction(clean_db, lambda c: placement.drain_team_queue(c, team_id, "presence")) == 0


async def test_manual_team_queues_and_claim_is_capacity_checked(clean_db: AsyncEngine) -> None:
    team_id, ops = await team_of(clean_db, "manual", ("Ada", {"capacity": 1}), ("Bob", {}))
    one, _ = await make_conversation(clean_db, team_id)
    two, _ = await make_conversation(clean_db, team_id)
    assert (await route(clean_db, one)).outcome == "queued"
    assert (await route(clean_db, two)).outcome == "queued"
    ada = ops["Ada"]
    outcome = await in_transaction(clean_db, lambda c: handoff.claim(c, one, ada, actor_id=ada))
    assert (outcome.operator_id, outcome.team_id) == (ada, team_id)
    with pytest.raises(Conflict, match="not waiting"):
        await in_transaction(clean_db, lambda c: handoff.claim(c, one, ops["Bob"], actor_id=ops["Bob"]))
    with pytest.raises(Conflict, match="at capacity"):
        await in_transaction(clean_db, lambda c: handoff.claim(c, two, ada, actor_id=ada))
    outsider = await make_operator(clean_db, "Out", status="online")
    with pytest.raises(Conflict, match="not a member"):
        await in_transaction(clean_db, lambda c: handoff.claim(c, two, outsider, actor_id=outsider))
    with pytest.raises(NotFound):
        await in_transaction(clean_db, lambda c: handoff.claim(c, "missing", ada, actor_id=ada))


async def test_transfer_to_operator_checks_capacity_unless_overridden(clean_db: AsyncEngine) -> None:
    team_id, ops = await team_of(clean_db, "round_robin", ("Ada", {}), ("Bob", {"capacity": 0}))
    conversation_id, _ = await make_conversation(clean_db, team_id)
    assert (await route(clean_db, conversation_id)).operator_id == ops["Ada"]
    bob = ops["Bob"]
    with pytest.raises(Conflict, match="at capacity"):
        await in_transaction(
            clean_db, lambda c: handoff.transfer_to_operator(c, conversation_id, bob, actor_id=ops["Ada"])
        )
    await in_transaction(
        clean_db,
        lambda c: handoff.transfer_to_operator(
            c, conversation_id, bob, actor_id=ops["Ada"], note="VIP, please take it", override_capacity=True
        ),
    )
    assert (await state(clean_db, conversation_id))["assignee_id"] == bob
    history = await rows(
        clean_db, "SELECT operator_id, reason, end_reason, capacity, actor_id FROM assignment ORDER BY id"
    )
    assert history == [
        {"operator_id": ops["Ada"], "reason": "routed", "end_reason": "transferred", "capacity": 5, "actor_id": None},
        {"operator_id": bob, "reason": "transferred", "end_reason": None, "capacity": None, "actor_id": ops["Ada"]},
    ]
    assert await rows(clean_db, "SELECT body, author_id FROM internal_note") == [
        {"body": "VIP, please take it", "author_id": ops["Ada"]}
    ]
    kinds = [r["kind"] for r in await rows(clean_db, "SELECT kind FROM event ORDER BY id")]
    assert kinds == ["conversation.assigned", "conversation.assigned", "note.created", "conversation.transferred"]
    loads = await rows(clean_db, "SELECT display_name, open_conversations FROM operator ORDER BY display_name")
    assert loads == [{"display_name": "Ada", "open_conversations": 0}, {"display_name": "Bob", "open_conversations": 1}]


async def test_transfer_to_team_reroutes_there_and_drains_the_old_queue(clean_db: AsyncEngine) -> None:
    first_team, ops = await team_of(clean_db, "round_robin", ("Ada", {"capacity": 1}))
    second_team, others = await team_of(clean_db, "round_robin", ("Zed", {}))
    moving, _ = await make_conversation(clean_db, first_team)
    waiting, _ = await make_conversation(clean_db, first_team)
    await route(clean_db, moving)
    assert (await route(clean_db, waiting)).outcome == "queued"
    outcome = await in_transaction(
        clean_db,
        lambda c: handoff.transfer_to_team(c, moving, second_team, actor_id=ops["Ada"], note="billing question"),
    )
    assert outcome == placement.RouteOutcome("assigned", second_team, others["Zed"])
    assert await state(clean_db, waiting) == {"status": "assigned", "team_id": first_team, "assignee_id": ops["Ada"]}
    [transferred] = await rows(clean_db, "SELECT data, operator_ids FROM event WHERE kind = 'conversation.transferred'")
    assert transferred["data"]["fromTeamId"] == str(first_team)
    assert transferred["data"]["toOperatorId"] == str(others["Zed"])
    assert set(transferred["operator_ids"]) == {ops["Ada"], others["Zed"]}
    with pytest.raises(Conflict, match="already in that team"):
        await in_transaction(clean_db, lambda c: handoff.transfer_to_team(c, moving, second_team, actor_id=ops["Ada"]))


async def test_reassign_never_goes_back_to_the_excluded_operator(clean_db: AsyncEngine) -> None:
    team_id, ops = await team_of(clean_db, "least_busy", ("Ada", {}))
    conversation_id, _ = await make_conversation(clean_db, team_id)
    await route(clean_db, conversation_id)
    outcome = await in_transaction(
        clean_db,
        lambda c: handoff.reassign(c, conversation_id, reason="timeout_reassigned", exclude_operator_id=ops["Ada"]),
    )
    assert outcome == placement.RouteOutcome("queued", team_id)
    [last] = await rows(clean_db, "SELECT trigger, candidates FROM routing_decision ORDER BY id DESC LIMIT 1")
    assert last["trigger"] == "timeout_reassigned"
    assert [c["excluded"] for c in last["candidates"]] == ["previous_assignee"]
    bob = await make_operator(clean_db, "Bob", status="online")
    await add_member(clean_db, team_id, bob)
    assert await in_transaction(clean_db, lambda c: placement.drain_team_queue(c, team_id, "membership")) == 1
    assert (await state(clean_db, conversation_id))["assignee_id"] == bob


async def test_requeue_then_reopen(clean_db: AsyncEngine) -> None:
    team_id, ops = await team_of(clean_db, "round_robin", ("Ada", {}))
    conversation_id, _ = await make_conversation(clean_db, team_id)
    await route(clean_db, conversation_id)
    await set_values(clean_db, "operator", {"id": ops["Ada"]}, status="offline")
    outcome = await in_transaction(clean_db, lambda c: handoff.requeue(c, conversation_id, reason="offline_requeued"))
    assert outcome == placement.RouteOutcome("queued", team_id)
    with pytest.raises(Conflict, match="not assigned"):
        await in_transaction(clean_db, lambda c: handoff.requeue(c, conversation_id, reason="again"))
    await in_transaction(clean_db, lambda c: handoff.close_conversation(c, conversation_id, actor_id=None))
    await set_values(clean_db, "operator", {"id": ops["Ada"]}, status="online")
    reopened = await in_transaction(
        clean_db, lambda c: handoff.reopen_conversation(c, conversation_id, actor_id=ops["Ada"])
    )
    assert reopened == placement.RouteOutcome("assigned", team_id, ops["Ada"])
    kinds = [r["kind"] for r in await rows(clean_db, "SELECT kind FROM event ORDER BY id")]
    assert kinds == [
        "conversation.assigned",
        "conversation.queued",
        "conversation.closed",
        "conversation.reopened",
        "conversation.assigned",
    ]


async def test_stale_route_does_nothing(clean_db: AsyncEngine) -> None:
    team_id, _ = await team_of(clean_db, "round_robin", ("Ada", {}))
    conversation_id, _ = await make_conversation(clean_db, team_id)
    assert (await route(clean_db, conversation_id)).outcome == "assigned"
    assert await route(clean_db, conversation_id) == placement.RouteOutcome("stale")
    assert await route(clean_db, "missing") == placement.RouteOutcome("stale")
    assert len(await rows(clean_db, "SELECT id FROM assignment")) == 1
