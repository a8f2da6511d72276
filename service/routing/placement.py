"""Placement: team selection, then assignment under capacity or the team queue; draining a queue; releasing a slot.

Every function runs in the caller's transaction, opened by ``in_transaction`` (which also runs it
again when the fast path asks for a restart), with the locks taken in ``service.routing.sql``'s order.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from service.db.tables import conversation_t, member_t, team_t
from service.events import record_event
from service.hours.services import OUTSIDE_HOURS_REASON, TeamHours, team_hours
from service.routing import sql
from service.routing.policies import (
    ANY,
    AT_CAPACITY,
    EXACT,
    QUEUED_AHEAD,
    Candidate,
    Decision,
    Rule,
    Visit,
    decide,
    merge_skills,
    next_skill_step,
    select_rule,
)
from service.sla import clocks as sla_clocks
from service.tags import services as tags
from service.timers.services import SKILL_RELAX, remember_first_response, schedule_timer

DEFAULT_TEAM_NAME = "Support"
POOLED = "pooled"
# A drain passes over the queue again when a conversation it could assign was locked by a
# short-lived holder (a stale routing job, a visitor message being stored).
DRAIN_PASSES = 3
DRAIN_PASS_PAUSE_SECONDS = 0.01


@dataclass(frozen=True)
class RouteOutcome:
    """What routing did: ``assigned`` (to ``operator_id``), ``queued``, or ``stale`` when the job was outdated.

    ``drain``: queued although a member had room, because conversations they could take were ahead of it; a
    drain after the commit serves the queue in order (one is normally on its way already).
    """

    outcome: str
    team_id: uuid.UUID | None = None
    operator_id: uuid.UUID | None = None
    drain: bool = False


async def default_team_id(conn: AsyncConnection) -> uuid.UUID:
    """The default team, created on first use so a fresh install routes somewhere."""
    found = await conn.scalar(sa.select(team_t.c.id).where(team_t.c.is_default))
    if found is not None:
        return found
    await conn.execute(
        sa.dialects.postgresql.insert(team_t)
        .values(id=uuid.uuid4(), name=DEFAULT_TEAM_NAME, is_default=True)
        .on_conflict_do_nothing()
    )
    return (await conn.execute(sa.select(team_t.c.id).where(team_t.c.is_default))).scalar_one()


@dataclass(frozen=True)
class Target:
    """Where a conversation goes, what it asks for, and who automatic routing must skip."""

    team_id: uuid.UUID
    priority: int
    # What is matched now: ``requirement`` (as asked) at ``skill_step`` (see ``policies.relaxed_skills``).
    required_skills: tuple[str, ...]
    excluded: tuple[uuid.UUID, ...] = ()
    requirement: tuple[str, ...] = ()
    skill_step: str = EXACT
    # The rule that chose the team, recorded by the decision that placed it there.
    rule: Rule | None = None
    # The matching rule's tags, put on the conversation once it is placed in that rule's team.
    tags: tuple[uuid.UUID, ...] = ()

    def decision_params(self) -> dict[str, Any]:
        """The statement parameters that record the requirement and the rule with the decision."""
        return {
            "required_skills": list(self.required_skills),
            "skill_requirement": list(self.requirement),
            "skill_step": self.skill_step,
            "rule_id": self.rule.rule_id if self.rule else None,
            "rule_name": self.rule.name if self.rule else None,
        }


def _matching_rule(conv: Any) -> Rule | None:
    """The first enabled rule that matches the conversation's visit (``conv`` read with the rules)."""
    rules = [
        Rule(
            uuid.UUID(r["teamId"]),
            r["conditions"] or {},
            r["setPriority"],
            tuple(r["requiredSkills"]),
            uuid.UUID(r["id"]),
            r["name"],
            tuple(uuid.UUID(t) for t in r.get("setTags") or ()),
        )
        for r in conv.rules or []
    ]
    visit = Visit.from_session(conv.session_metadata, conv.identity, conv.user_phone_country, conv.first_message)
    return select_rule(rules, visit)


async def choose_team(conn: AsyncConnection, conversation_id: str) -> None:
    """Choose by the rules the team of a conversation routing has not placed yet (the widget connected, or identified).

    Its welcome, availability and AI are then the visitor's, and routing places it in that team. A keyword
    rule matches nothing before the visitor's first message: it is decided when routing reads that message.
    """
    conv = await sql.selection(conn, conversation_id)
    if conv is None or conv.team_id is not None:
        return
    rule = _matching_rule(conv)
    chosen = rule.team_id if rule is not None else conv.default_team_id
    if chosen != conv.selected_team_id:
        await conn.execute(
            sa.update(conversation_t)
            .where(conversation_t.c.id == conversation_id, conversation_t.c.team_id.is_(None))
            .values(selected_team_id=chosen)
        )


async def select_team(conn: AsyncConnection, conv: Any) -> Target:
    """The team chosen at connect, else the first matching rule's, else the default team.

    The matching rule may raise the priority, add skills and set tags. A team chosen at connect stands
    (the visitor was greeted by it), even when the rules changed since; its rule's priority, skills and
    tags apply if the rules still lead there. A rule on the first message's keywords is the exception:
    it could not be decided at connect, so when it matches now it chooses the team.
    """
    rule = _matching_rule(conv)
    chosen = conv.selected_team_id
    if rule is None or (chosen is not None and rule.team_id != chosen and not rule.reads_message):
        return target_of(conv, chosen or conv.default_team_id or await default_team_id(conn))
    priority = conv.priority if rule.set_priority is None else rule.set_priority
    # The rule's skills join what was asked before (at the higher level of the two), and are asked exactly.
    skills = merge_skills(asked(conv), rule.required_skills)
    return Target(rule.team_id, priority, skills, tuple(conv.excluded_operators), skills, EXACT, rule, rule.set_tags)


async def place_routed(conn: AsyncConnection, conversation_id: str, target: Target, **how: Any) -> RouteOutcome:
    """``place``, then the matching rule's tags put on the conversation, in the same transaction."""
    outcome = await place(conn, conversation_id, target, **how)
    await _tag_by_rule(conn, conversation_id, target)
    return outcome


async def _tag_by_rule(conn: AsyncConnection, conversation_id: str, target: Target) -> None:
    await tags.add_tags(conn, conversation_id, target.team_id, target.tags, source="rule", actor_id=None)


# --- Assigning, queueing, releasing ------------------------------------------------------------------------------


async def assign(
    conn: AsyncConnection,
    conversation_id: str,
    operator_id: uuid.UUID,
    target: Target,
    *,
    policy: str,
    trigger: str,
    candidates: list[dict[str, Any]],
    reason: str,
    actor_id: uuid.UUID | None = None,
    note_reason: str | None = None,
    check_online: bool = True,
    check_capacity: bool = True,
    unless_busy: bool = False,
    in_order: bool = False,
) -> int | None:
    """The capacity-checked assignment in one statement; the assignment id, or None if the operator had no room
    (or, ``unless_busy``, their row was held by another transaction; or, ``in_order``, a queued conversation
    they could take comes first)."""
    row = await _assign(
        conn,
        conversation_id,
        operator_id,
        target,
        policy=policy,
        trigger=trigger,
        candidates=candidates,
        reason=reason,
        actor_id=actor_id,
        note_reason=note_reason,
        check_online=check_online,
        check_capacity=check_capacity,
        unless_busy=unless_busy,
        in_order=in_order,
    )
    return None if row.assignment_id is None else int(row.assignment_id)


async def _assign(
    conn: AsyncConnection,
    conversation_id: str,
    operator_id: uuid.UUID,
    target: Target,
    *,
    policy: str,
    trigger: str,
    candidates: list[dict[str, Any]],
    reason: str,
    actor_id: uuid.UUID | None,
    note_reason: str | None,
    check_online: bool,
    check_capacity: bool,
    unless_busy: bool,
    in_order: bool,
) -> Any:
    """The assignment statement's row: ``assignment_id`` (None when it did not happen) and ``ahead``."""
    row = (
        await conn.execute(
            sql.ASSIGN_UNLESS_BUSY if unless_busy else sql.ASSIGN,
            {
                "conversation_id": conversation_id,
                "operator_id": operator_id,
                "team_id": target.team_id,
                "priority": target.priority,
                **target.decision_params(),
                "reason": reason,
                "actor_id": actor_id,
                "policy": policy,
                "trigger": trigger,
                "candidates": candidates,
                "note_reason": note_reason,
                "check_online": check_online,
                "check_capacity": check_capacity,
                "in_order": in_order,
            },
        )
    ).one()
    if row.assignment_id is not None:
        remember_first_response(row)
    return row


async def queue(
    conn: AsyncConnection,
    conversation_id: str,
    target: Target,
    *,
    policy: str,
    trigger: str,
    candidates: list[dict[str, Any]],
    actor_id: uuid.UUID | None = None,
    note_reason: str | None = None,
) -> RouteOutcome:
    """Queue the conversation in the target team, with its decision and ``conversation.queued`` event."""
    await conn.execute(
        sql.QUEUE,
        {
            "conversation_id": conversation_id,
            "team_id": target.team_id,
            "priority": target.priority,
            **target.decision_params(),
            "policy": policy,
            "trigger": trigger,
            "candidates": candidates,
            "actor_id": actor_id,
            "note_reason": note_reason,
        },
    )
    if target.requirement and target.skill_step != ANY:
        await arm_skill_relax(conn, conversation_id)
    return RouteOutcome("queued", target.team_id)


_RELAX_INPUTS = sa.text(
    """
    SELECT c.status, c.team_id, c.waiting_since, c.skill_step, c.required_skills, c.skill_requirement,
           t.routing_policy, t.skill_relax_after_seconds, t.skill_any_member_after_seconds, now() AS now
    FROM conversation c JOIN team t ON t.id = c.team_id WHERE c.id = :id
    """
)


async def relax_inputs(conn: AsyncConnection, conversation_id: str) -> Any:
    """The queued conversation's wait and skill step with its team's relaxing delays (None without a team)."""
    return (await conn.execute(_RELAX_INPUTS, {"id": conversation_id})).first()


async def arm_skill_relax(conn: AsyncConnection, conversation_id: str) -> None:
    """Start (or move) the conversation's ``skill_relax`` timer to its next step's moment: the team's delay after
    it started waiting. Nothing when its team never relaxes or nothing is left to relax."""
    row = await relax_inputs(conn, conversation_id)
    if row is None or row.status != "queued" or row.waiting_since is None or not asked(row):
        return
    step = next_skill_step(row.skill_step, row.skill_relax_after_seconds, row.skill_any_member_after_seconds)
    if step is not None:
        await schedule_timer(conn, SKILL_RELAX, conversation_id, row.waiting_since + timedelta(seconds=step[1]))


async def _try_ranked(
    conn: AsyncConnection,
    conversation_id: str,
    target: Target,
    decision: Decision,
    lost: dict[uuid.UUID, str],
    trigger: str,
    reason: str,
    actor_id: uuid.UUID | None = None,
    note_reason: str | None = None,
) -> RouteOutcome | None:
    """Try the ranked candidates in order (queue order checked); one whose row check fails is recorded in ``lost``
    as ``at_capacity`` (someone filled the last slot first) or ``queued_ahead``.

    First pass: candidates whose row another transaction holds are passed over (``busy``), so
    concurrent routers do not queue up behind the same operator; second pass: wait for them.
    """
    busy: set[uuid.UUID] = set()
    for unless_busy in (True, False):
        for operator_id in decision.ranked:
            if operator_id in lost or (not unless_busy and operator_id not in busy):
                continue
            row = await _assign(
                conn,
                conversation_id,
                operator_id,
                target,
                policy=decision.policy,
                trigger=trigger,
                candidates=decision.candidates_json(lost, busy),
                reason=reason,
                actor_id=actor_id,
                note_reason=note_reason,
                check_online=True,
                check_capacity=True,
                unless_busy=unless_busy,
                in_order=True,
            )
            if row.assignment_id is not None:
                return RouteOutcome("assigned", target.team_id, operator_id)
            if row.ahead:
                lost[operator_id] = QUEUED_AHEAD
            elif unless_busy:
                busy.add(operator_id)
            else:
                lost[operator_id] = AT_CAPACITY
    return None


async def place(
    conn: AsyncConnection,
    conversation_id: str,
    target: Target,
    *,
    trigger: str,
    reason: str = "routed",
    actor_id: uuid.UUID | None = None,
    note_reason: str | None = None,
    team_locked: bool = False,
    team: tuple[str, list[Candidate]] | None = None,
) -> RouteOutcome:
    """Assign to the best eligible member of the target team, else queue there (the conversation is locked);
    then its SLA clocks follow that team's policy."""
    outcome = await _place(
        conn,
        conversation_id,
        target,
        trigger=trigger,
        reason=reason,
        actor_id=actor_id,
        note_reason=note_reason,
        team_locked=team_locked,
        team=team,
    )
    await sla_clocks.start(conn, conversation_id)
    return outcome


async def _place(
    conn: AsyncConnection,
    conversation_id: str,
    target: Target,
    *,
    trigger: str,
    reason: str,
    actor_id: uuid.UUID | None,
    note_reason: str | None,
    team_locked: bool,
    team: tuple[str, list[Candidate]] | None,
) -> RouteOutcome:
    """``place`` without the SLA clocks.

    Holds the team's queue lock (shared, unless ``team_locked``: the caller holds it) before any operator
    row, so a change that makes room (it takes the lock exclusively) commits before this or after it, and
    nobody is given this conversation while one they could take waits ahead of it. ``team``: the policy
    and candidates read with the conversation's lock, ranked first; they may predate the team lock, so
    they are read again before queueing: a change that freed room and committed meanwhile is seen, and any
    later one finds this conversation in the queue when it drains (no lost wake-up).
    """
    why = (trigger, reason, actor_id, note_reason)
    if not team_locked:
        await sql.lock_teams(conn, target.team_id, shared=True)
    lost: dict[uuid.UUID, str] = {}
    for fresh in (False, True) if team is not None else (True,):
        if fresh:
            team = await sql.load_candidates(conn, target.team_id, conversation_id, target.priority)
        assert team is not None
        policy, candidates = team
        decision = decide(policy, candidates, required_skills=target.required_skills, exclude=target.excluded)
        if policy == POOLED:
            continue  # offered below (as read under the team lock) to every eligible member, assigned to none
        if decision.ranked and (done := await _try_ranked(conn, conversation_id, target, decision, lost, *why)):
            return done
    ahead = QUEUED_AHEAD in lost.values() or any(e.excluded == QUEUED_AHEAD for e in decision.evaluations)
    await queue(
        conn,
        conversation_id,
        target,
        policy=policy,
        trigger=trigger,
        candidates=decision.candidates_json(lost),
        actor_id=actor_id,
        note_reason=note_reason,
    )
    if policy == POOLED:
        await offer(conn, conversation_id, target.team_id, decision.ranked)
        return RouteOutcome("queued", target.team_id)
    return RouteOutcome("queued", target.team_id, drain=ahead)


async def offer(
    conn: AsyncConnection, conversation_id: str, team_id: uuid.UUID, operator_ids: Sequence[uuid.UUID]
) -> None:
    """A pooled team's queued conversation, offered to each eligible member on their own stream
    (``conversation.offered``); the first to claim it or reply gets it (the claim locks the conversation)."""
    if operator_ids:
        await record_event(
            conn,
            "conversation.offered",
            team_id=None,
            conversation_id=conversation_id,
            operator_ids=operator_ids,
            data={
                "conversationId": conversation_id,
                "teamId": str(team_id),
                "operatorIds": [str(operator_id) for operator_id in operator_ids],
            },
        )


async def release(conn: AsyncConnection, conv: Any, end_reason: str) -> uuid.UUID | None:
    """End the current assignment and give the operator's slot back; returns who held it."""
    if conv.status != "assigned" or conv.assignee_id is None:
        return None
    ended = (
        await conn.execute(
            sql.RELEASE,
            {"operator_id": conv.assignee_id, "conversation_id": conv.id, "end_reason": end_reason},
        )
    ).first()
    if ended is None:
        raise RuntimeError(f"conversation {conv.id} is assigned without an open assignment")
    return conv.assignee_id  # type: ignore[no-any-return]


def target_of(conv: Any, team_id: uuid.UUID | None = None) -> Target:
    """The locked conversation's target as it stands, or in ``team_id``."""
    return Target(
        team_id or conv.team_id,
        conv.priority,
        tuple(conv.required_skills),
        tuple(conv.excluded_operators),
        asked(conv),
        conv.skill_step,
    )


def asked(conv: Any) -> tuple[str, ...]:
    """The skills the conversation asks for before any relaxing (at the exact step, what it matches now)."""
    return tuple(conv.required_skills if conv.skill_step == EXACT else conv.skill_requirement)


# --- Routing and draining ----------------------------------------------------------------------------------------


async def route_conversation(conn: AsyncConnection, conversation_id: str, revision: int, trigger: str) -> RouteOutcome:
    """Route one conversation in the caller's transaction; a no-op (``stale``) unless ``revision`` is current.

    The row is locked first, so concurrent jobs for the same conversation serialize and all
    but the first find a newer revision and stop.
    """
    conv = await sql.lock_for_routing(conn, conversation_id)
    if conv is None or conv.routing_revision != revision or conv.status != "new":
        return RouteOutcome("stale")
    target = target_of(conv) if conv.team_id is not None else await select_team(conn, conv)
    # It took the queue lock of the team the conversation was placed in or chosen at connect: the target.
    locked = conv.locked_team_id == target.team_id
    hours = await team_hours(conn, target.team_id)
    if hours is not None and not hours.is_open():
        outcome = await _outside_hours(conn, conversation_id, target, hours, trigger=trigger, team_locked=locked)
    else:
        # The lock read the members of the conversation's team, or of the default one: usually the target.
        team = sql.team_of(conv.team) if conv.team and uuid.UUID(conv.team["id"]) == target.team_id else None
        outcome = await place(conn, conversation_id, target, trigger=trigger, team=team, team_locked=locked)
    await _tag_by_rule(conn, conversation_id, target)
    return outcome


async def _outside_hours(
    conn: AsyncConnection, conversation_id: str, target: Target, hours: TeamHours, *, trigger: str, team_locked: bool
) -> RouteOutcome:
    """A new conversation of a closed team: placed in the overflow team if that one is open, else queued to wait
    for the opening (the ``ai`` choice queues too: the AI answers meanwhile). The decision's reason says why."""
    overflow = hours.overflow_team_id if hours.outside_hours == "overflow" else None
    overflow_hours = None if overflow is None else await team_hours(conn, overflow)
    if overflow is not None and overflow_hours is not None and overflow_hours.is_open():
        elsewhere = Target(overflow, target.priority, target.required_skills, target.excluded)
        return await place(conn, conversation_id, elsewhere, trigger=trigger, note_reason=OUTSIDE_HOURS_REASON)
    if not team_locked:
        await sql.lock_teams(conn, target.team_id, shared=True)
    policy, candidates = await sql.load_candidates(conn, target.team_id, conversation_id, target.priority)
    decision = decide(policy, candidates, required_skills=target.required_skills, exclude=target.excluded)
    return await queue(
        conn,
        conversation_id,
        target,
        policy=policy,
        trigger=trigger,
        candidates=decision.candidates_json({}),
        note_reason=OUTSIDE_HOURS_REASON,
    )


async def drain_team_queue(conn: AsyncConnection, team_id: uuid.UUID, trigger: str) -> int:
    """Assign queued conversations of the team, in queue order, while members have room; returns how many.

    Holds the team lock, so it sees every conversation queued before it and none is queued behind its
    back. Each step takes the first queued conversation some member with room could take and locks it
    (``SKIP LOCKED``). One another transaction holds (a claim, a close, a visitor message being stored)
    is passed over, and so are, for this pass, the members who could take it: nobody is given a
    conversation behind one they could take. Short holders are waited out by another pass.
    """
    await sql.lock_teams(conn, team_id)
    hours = await team_hours(conn, team_id)
    if hours is not None and not hours.is_open():
        return 0  # closed: the queue waits for the team's hours_open timer
    policy, candidates = await sql.load_candidates(conn, team_id)
    if policy in ("manual", POOLED):
        return 0
    assigned = 0
    for _ in range(DRAIN_PASSES):
        held = False
        # Members who take nothing more in this pass, and conversations it leaves where they are.
        blocked: dict[uuid.UUID, str] = {}
        passed: list[str] = []
        while roomy := [c for c in candidates if _has_room(c) and c.operator_id not in blocked]:
            params = {"team_id": team_id, "roomy": _roomy_json(roomy), "passed": passed}
            head = (await conn.execute(sql.NEXT_IN_ORDER, params)).first()
            if head is None:
                break
            passed.append(head.id)
            if not head.locked:
                if await conn.scalar(sql.STILL_QUEUED, {"id": head.id, "team_id": team_id}):
                    held = True
                    blocked |= {c.operator_id: QUEUED_AHEAD for c in roomy if _could_take(c, head)}
                continue
            decision = decide(policy, candidates, required_skills=head.required_skills, exclude=head.excluded_operators)
            lost = dict(blocked)
            if await _try_ranked(conn, head.id, target_of(head), decision, lost, trigger, "routed"):
                assigned += 1
            blocked |= {operator_id: why for operator_id, why in lost.items() if why == QUEUED_AHEAD}
            # Loads changed (ours, or an explicit assignment that beat us to an operator).
            _, candidates = await sql.load_candidates(conn, team_id)
        if not held:
            break
        await asyncio.sleep(DRAIN_PASS_PAUSE_SECONDS)
        _, candidates = await sql.load_candidates(conn, team_id)
    return assigned


def _has_room(candidate: Candidate) -> bool:
    return candidate.status == "online" and candidate.open_conversations < candidate.capacity


def _could_take(candidate: Candidate, conv: Any) -> bool:
    """Skills and exclusions only: whether this member may be given ``conv`` once they have room."""
    return set(conv.required_skills) <= candidate.skills and candidate.operator_id not in conv.excluded_operators


def _roomy_json(roomy: list[Candidate]) -> str:
    return json.dumps([{"id": str(c.operator_id), "skills": sorted(c.skills)} for c in roomy])


async def freed_teams(conn: AsyncConnection, conv: Any) -> list[uuid.UUID]:
    """Teams whose queues may use the slot this conversation's assignee is about to free (and its own team)."""
    teams = {conv.team_id} if conv.team_id is not None else set()
    if conv.status == "assigned" and conv.assignee_id is not None:
        teams |= set(
            (
                await conn.execute(sa.select(member_t.c.team_id).where(member_t.c.operator_id == conv.assignee_id))
            ).scalars()
        )
    return sorted(teams)


async def drain_all(conn: AsyncConnection, team_ids: list[uuid.UUID], trigger: str) -> None:
    """Drain each team's queue, in the order given (the team lock order)."""
    for team_id in team_ids:
        await drain_team_queue(conn, team_id, trigger)
