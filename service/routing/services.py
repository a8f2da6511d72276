"""Routing engine: team selection, assignment under capacity, the team queue, claims, transfers, close and reopen.

Every function runs in the caller's transaction, opened by ``in_transaction`` (which also runs it
again when routing's fast path asks for a restart). Lock order, everywhere: the conversation row,
then team rows (the "team queue lock", several in id order), then operator rows. See
docs/routing.md ("Locking") for why this keeps capacity exact and the queue free of lost wake-ups.
"""

from __future__ import annotations

import asyncio
import contextvars
import dataclasses
import json
import math
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TypeVar

import sqlalchemy as sa
import structlog
from arq.connections import ArqRedis
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from service.csat import services as csat
from service.db.tables import conversation_t, decision_t, member_t, note_t, team_t
from service.errors import Conflict as ConflictException
from service.errors import NotFound as NotFoundException
from service.events import record_event
from service.routing.policies import Candidate, Decision, Rule, Visit, decide, select_rule
from service.timers.services import FIRST_RESPONSE_COLUMNS, FIRST_RESPONSE_CTES, remember_first_response

log = structlog.get_logger(__name__)


DEFAULT_TEAM_NAME = "Support"
# Deadlock and serialization failure: the transaction did nothing and may simply run again.
RETRYABLE_SQLSTATES = frozenset({"40P01", "40001"})
T = TypeVar("T")
# A drain passes over the queue again when a conversation it could assign was locked by a
# short-lived holder (a stale routing job, a visitor message being stored).
DRAIN_PASSES = 3
# Drain requests for a team within one window share a job that starts when the window ends.
DRAIN_WINDOW_SECONDS = 0.05
DRAIN_PASS_PAUSE_SECONDS = 0.01


@dataclass(frozen=True)
class RouteOutcome:
    """What routing did: ``assigned`` (to ``operator_id``), ``queued``, or ``stale`` when the job was outdated."""

    outcome: str
    team_id: uuid.UUID | None = None
    operator_id: uuid.UUID | None = None


@dataclass(frozen=True)
class AssignOutcome:
    """An explicit assignment (claim, transfer to an operator) that took place."""

    operator_id: uuid.UUID
    team_id: uuid.UUID
    assignment_id: int


# --- Jobs and transactions ------------------------------------------------------------------------------------


def route_job_id(conversation_id: str, revision: int) -> str:
    """Versioned job id: one routing job per conversation revision, however often it is enqueued."""
    return f"route:{conversation_id}:{revision}"


async def enqueue_route(arq: ArqRedis, conversation_id: str, revision: int, trigger: str) -> None:
    """Ask a worker to route the conversation at this revision."""
    await arq.enqueue_job(
        "route_conversation",
        conversation_id=conversation_id,
        revision=revision,
        trigger=trigger,
        _job_id=route_job_id(conversation_id, revision),
    )


async def enqueue_drain(arq: ArqRedis, team_id: uuid.UUID, trigger: str) -> None:
    """Ask a worker to drain the team's queue; call it after the change that freed room has committed.

    Requests are batched in short windows: all requests of one window share one job, which starts
    only when the window has ended, so it runs after every change that asked for it (a job that
    had already started could not be trusted with a later request). At most one drain per team
    per window, instead of one per presence flap.
    """
    window = math.floor(time.time() / DRAIN_WINDOW_SECONDS) + 1
    await arq.enqueue_job(
        "drain_team_queue",
        team_id=str(team_id),
        trigger=trigger,
        _job_id=f"drain:{team_id}:{window}",
        _defer_until=datetime.fromtimestamp(window * DRAIN_WINDOW_SECONDS, UTC),
    )


class RestartTransaction(Exception):
    """Routing's fast path lost every race and may hold operator rows: run the transaction again, carefully."""


# True while ``in_transaction`` runs work again after a ``RestartTransaction``: routing then takes the
# team lock before it ranks, instead of trying the fast path first.
_careful: contextvars.ContextVar[bool] = contextvars.ContextVar("routing_careful", default=False)


def is_retryable(exc: BaseException) -> bool:
    """A deadlock or serialization failure, which PostgreSQL resolved by rolling this transaction back."""
    return isinstance(exc, DBAPIError) and getattr(exc.orig, "sqlstate", None) in RETRYABLE_SQLSTATES


async def in_transaction(engine: AsyncEngine, work: Callable[[AsyncConnection], Awaitable[T]], attempts: int = 5) -> T:
    """Run ``work`` in one transaction, again from the start when PostgreSQL broke a deadlock by aborting it.

    Routing that assigns or queues (``route_conversation``, ``reopen_conversation``) must run in here:
    on its rare ``RestartTransaction`` the work runs once more, on the careful path.
    """
    for attempt in range(1, attempts + 1):
        try:
            try:
                return await _run(engine, work)
            except RestartTransaction:
                log.info("transaction restarted on the careful path")
                token = _careful.set(True)
                try:
                    return await _run(engine, work)
                finally:
                    _careful.reset(token)
        except DBAPIError as exc:
            if not is_retryable(exc) or attempt == attempts:
                raise
            log.info("transaction retried", attempt=attempt, sqlstate=getattr(exc.orig, "sqlstate", None))
            await asyncio.sleep(0.005 * attempt)
    raise AssertionError("unreachable")


async def _run(engine: AsyncEngine, work: Callable[[AsyncConnection], Awaitable[T]]) -> T:
    async with engine.begin() as conn:
        return await work(conn)


# --- Reading and locking --------------------------------------------------------------------------------------

# A team's policy and members (with their load) as one JSON document, so that the conversation's
# lock can read them in its own round trip; ``{team}`` is the team id's expression.
_TEAM_JSON = """(
    SELECT jsonb_build_object('id', t.id, 'policy', t.routing_policy, 'members', coalesce(jsonb_agg(jsonb_build_object(
               'operatorId', m.operator_id, 'status', o.status, 'open', o.open_conversations,
               'capacity', coalesce(m.capacity, t.default_capacity), 'skills', m.skills,
               'lastAssignedAt', m.last_assigned_at) ORDER BY m.operator_id) FILTER (WHERE o.id IS NOT NULL), '[]'))
    FROM team t
    LEFT JOIN (team_member m JOIN operator o ON o.id = m.operator_id AND o.deactivated_at IS NULL) ON m.team_id = t.id
    WHERE t.id = {team} GROUP BY t.id
)"""

# The conversation row, for one without a team yet the enabled rules in order and the default team,
# and the members of its team (or of the default team), all in the same round trip. The members are
# read in the snapshot taken before any wait for the row lock: only the fast path ranks with them,
# where the assignment statement's capacity check decides, and queueing re-reads under the team lock.
_LOCK_CONVERSATION = sa.text(
    """
    SELECT c.id, c.status, c.team_id, c.assignee_id, c.routing_revision, c.priority, c.required_skills,
           c.excluded_operators, c.session_metadata, c.identity, c.user_phone_country,
           CASE WHEN c.team_id IS NULL THEN (
               SELECT coalesce(jsonb_agg(jsonb_build_object(
                   'teamId', r.team_id, 'conditions', r.conditions, 'setPriority', r.set_priority,
                   'requiredSkills', r.required_skills) ORDER BY r.position, r.created_at, r.id), '[]')
               FROM routing_rule r WHERE r.enabled
           ) END AS rules,
           CASE WHEN c.team_id IS NULL THEN (SELECT t.id FROM team t WHERE t.is_default) END AS default_team_id,
    """
    + _TEAM_JSON.format(team="coalesce(c.team_id, (SELECT d.id FROM team d WHERE d.is_default))")
    + """ AS team
    FROM conversation c WHERE c.id = :id FOR UPDATE OF c
    """
).columns(rules=JSONB, team=JSONB)

_CANDIDATES = sa.text("SELECT " + _TEAM_JSON.format(team=":team_id") + " AS team").columns(team=JSONB)

# The capacity check is this conditional UPDATE: the operator's row lock serializes every
# change to ``open_conversations``, and the capacity is re-read (membership included) in the
# same statement. Assignment, conversation, round-robin clock, decision, ``conversation.assigned``
# event and first-response timer follow only if it matched, all in this one round trip. Times come
# from clock_timestamp() taken after the operator row is locked, so the assignment history is
# ordered exactly as the operator's counter changed.
_ASSIGN_SQL = (
    """
    WITH cap AS (
        SELECT coalesce(m.capacity, t.default_capacity) AS capacity
        FROM team_member m JOIN team t ON t.id = m.team_id
        WHERE m.team_id = :team_id AND m.operator_id = :operator_id
    ), op AS (
        UPDATE operator o SET open_conversations = o.open_conversations + 1
        FROM cap
        WHERE o.id = :operator_id AND o.deactivated_at IS NULL {skip_locked}
          AND (NOT :check_online OR o.status = 'online')
          AND (NOT :check_capacity OR o.open_conversations < cap.capacity)
        RETURNING o.open_conversations, cap.capacity
    ), asg AS (
        INSERT INTO assignment
            (conversation_id, operator_id, team_id, reason, actor_id, started_at, capacity, open_after)
        SELECT :conversation_id, :operator_id, :team_id, :reason, :actor_id, clock_timestamp(),
               CASE WHEN :check_capacity THEN op.capacity END, op.open_conversations
        FROM op
        RETURNING id, started_at, conversation_id, operator_id, team_id, reason
    ), conv AS (
        UPDATE conversation c SET status = 'assigned', assignee_id = :operator_id, team_id = :team_id,
            priority = :priority, required_skills = :required_skills, assigned_at = asg.started_at,
            routing_revision = c.routing_revision + 1
        FROM asg WHERE c.id = :conversation_id
        RETURNING c.routing_revision
    ), member AS (
        UPDATE team_member m SET last_assigned_at = asg.started_at
        FROM asg WHERE m.team_id = :team_id AND m.operator_id = :operator_id
    ), decision AS (
        INSERT INTO routing_decision (conversation_id, team_id, policy, trigger, candidates, chosen_operator_id,
                                      outcome, actor_id, reason)
        SELECT :conversation_id, :team_id, :policy, :trigger, :candidates, :operator_id, 'assigned', :actor_id,
               :note_reason
        FROM asg
    ), event AS (
        INSERT INTO event (kind, team_id, conversation_id, operator_ids, data)
        SELECT 'conversation.assigned', asg.team_id, asg.conversation_id, ARRAY[asg.operator_id],
               jsonb_build_object('conversationId', asg.conversation_id, 'operatorId', asg.operator_id::text,
                                  'teamId', asg.team_id::text, 'reason', asg.reason)
        FROM asg
    ), """
    + FIRST_RESPONSE_CTES
    + f"""
    SELECT asg.id AS assignment_id, {FIRST_RESPONSE_COLUMNS}
    FROM asg LEFT JOIN first_response ON true
    """
)
_ASSIGN_BINDS = (sa.bindparam("candidates", type_=JSONB), sa.bindparam("required_skills", type_=sa.ARRAY(sa.Text)))
_ASSIGN = sa.text(_ASSIGN_SQL.format(skip_locked="")).bindparams(*_ASSIGN_BINDS)
# The same, except that an operator whose row another transaction holds (it is assigning to them
# right now) is passed over at once instead of waited for: concurrent routers spread out.
_ASSIGN_UNLESS_BUSY = sa.text(
    _ASSIGN_SQL.format(
        skip_locked="AND o.id IN (SELECT b.id FROM operator b WHERE b.id = :operator_id FOR NO KEY UPDATE SKIP LOCKED)"
    )
).bindparams(*_ASSIGN_BINDS)

# Queued, with its decision row and the ``conversation.queued`` event, in one round trip.
_QUEUE = sa.text(
    """
    WITH conv AS (
        UPDATE conversation c SET status = 'queued', assignee_id = NULL, team_id = :team_id, priority = :priority,
            required_skills = :required_skills, waiting_since = coalesce(c.waiting_since, now()),
            routing_revision = c.routing_revision + 1
        WHERE c.id = :conversation_id
        RETURNING c.id, c.team_id, c.priority
    ), decision AS (
        INSERT INTO routing_decision (conversation_id, team_id, policy, trigger, candidates, outcome, actor_id, reason)
        SELECT conv.id, :team_id, :policy, :trigger, :candidates, 'queued', :actor_id, :note_reason FROM conv
    )
    INSERT INTO event (kind, team_id, conversation_id, data)
    SELECT 'conversation.queued', conv.team_id, conv.id,
           jsonb_build_object('conversationId', conv.id, 'teamId', conv.team_id::text, 'priority', conv.priority)
    FROM conv
    """
).bindparams(sa.bindparam("candidates", type_=JSONB), sa.bindparam("required_skills", type_=sa.ARRAY(sa.Text)))

# The operator's row first (its lock orders the history), then the assignment ends.
_RELEASE = sa.text(
    """
    WITH op AS (
        UPDATE operator SET open_conversations = open_conversations - 1 WHERE id = :operator_id RETURNING id
    )
    UPDATE assignment a SET ended_at = clock_timestamp(), end_reason = :end_reason
    FROM op WHERE a.conversation_id = :conversation_id AND a.ended_at IS NULL AND a.operator_id = op.id
    RETURNING a.id
    """
)

# Queued conversations of the team that one of the members with room (``:roomy``, a JSON list of
# {id, skills}) could take. Only a filter: decide() still ranks and the row check still decides.
_ASSIGNABLE = """
    FROM conversation c
    WHERE c.team_id = :team_id AND c.status = 'queued' AND EXISTS (
        SELECT 1 FROM jsonb_to_recordset(CAST(:roomy AS jsonb)) AS r(id uuid, skills text[])
        WHERE r.skills @> c.required_skills AND r.id <> ALL(c.excluded_operators)
    )
"""
_NEXT_ASSIGNABLE = sa.text(
    "SELECT c.id, c.priority, c.required_skills, c.excluded_operators, c.team_id"
    + _ASSIGNABLE
    + "ORDER BY c.priority DESC, c.waiting_since, c.id LIMIT 1 FOR UPDATE OF c SKIP LOCKED"
)
_ANY_ASSIGNABLE = sa.text("SELECT EXISTS (SELECT 1" + _ASSIGNABLE + ")")

_TEAM_KEYS = "(SELECT DISTINCT hashtextextended(t, 0) AS k FROM unnest(CAST(:ids AS text[])) AS t ORDER BY k) AS keys"
_LOCK_TEAMS = sa.text("SELECT pg_advisory_xact_lock(k) FROM " + _TEAM_KEYS)
_LOCK_TEAMS_SHARED = sa.text("SELECT pg_advisory_xact_lock_shared(k) FROM " + _TEAM_KEYS)


async def _lock_conversation(conn: AsyncConnection, conversation_id: str) -> Any:
    return (await conn.execute(_LOCK_CONVERSATION, {"id": conversation_id})).first()


async def _locked(conn: AsyncConnection, conversation_id: str) -> Any:
    row = await _lock_conversation(conn, conversation_id)
    if row is None:
        raise NotFoundException("Conversation not found")
    return row


async def lock_teams(conn: AsyncConnection, *team_ids: uuid.UUID | None, shared: bool = False) -> None:
    """Take the teams' queue locks, in key order, until commit: shared to queue, exclusive to free room or drain.

    Routers about to queue only need to exclude drains and slot-freeing changes, not each other.
    Transaction-scoped advisory locks, not the team rows: every assignment and event checks its
    foreign key with a share lock on the team row, and mixing those with a row lock would make
    PostgreSQL build a multixact on the team row for each of them.
    """
    ids = sorted({str(t) for t in team_ids if t is not None})
    if ids:
        await conn.execute(_LOCK_TEAMS_SHARED if shared else _LOCK_TEAMS, {"ids": ids})


async def load_candidates(conn: AsyncConnection, team_id: uuid.UUID) -> tuple[str, list[Candidate]]:
    """The team's policy and its members as candidates; ``NotFoundException`` if the team does not exist."""
    team = await conn.scalar(_CANDIDATES, {"team_id": team_id})
    if team is None:
        raise NotFoundException("Team not found")
    return _team_of(team)


def _team_of(team: dict[str, Any]) -> tuple[str, list[Candidate]]:
    """The policy and candidates from a ``_TEAM_JSON`` document."""
    candidates = [
        Candidate(
            operator_id=uuid.UUID(m["operatorId"]),
            status=m["status"],
            open_conversations=m["open"],
            capacity=m["capacity"],
            skills=frozenset(m["skills"]),
            last_assigned_at=datetime.fromisoformat(m["lastAssignedAt"]) if m["lastAssignedAt"] else None,
        )
        for m in team["members"]
    ]
    return team["policy"], candidates


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
class _Target:
    """Where a conversation goes, what it asks for, and who automatic routing must skip."""

    team_id: uuid.UUID
    priority: int
    required_skills: tuple[str, ...]
    excluded: tuple[uuid.UUID, ...] = ()


async def _select_team(conn: AsyncConnection, conv: Any) -> _Target:
    """First matching routing rule (which may raise priority and add skills), else the default team."""
    rules = [
        Rule(uuid.UUID(r["teamId"]), r["conditions"] or {}, r["setPriority"], tuple(r["requiredSkills"]))
        for r in conv.rules or []
    ]
    visit = Visit.from_session(conv.session_metadata, conv.identity, conv.user_phone_country)
    rule = select_rule(rules, visit)
    if rule is None:
        return _target_of(conv, conv.default_team_id or await default_team_id(conn))
    priority = conv.priority if rule.set_priority is None else rule.set_priority
    skills = tuple(dict.fromkeys((*conv.required_skills, *rule.required_skills)))
    return _Target(rule.team_id, priority, skills, tuple(conv.excluded_operators))


# --- Writing --------------------------------------------------------------------------------------------------


async def _assign(
    conn: AsyncConnection,
    conversation_id: str,
    operator_id: uuid.UUID,
    target: _Target,
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
) -> int | None:
    """The capacity-checked assignment in one statement; the assignment id, or None if the operator had no room
    (or, ``unless_busy``, their row was held by another transaction)."""
    row = (
        await conn.execute(
            _ASSIGN_UNLESS_BUSY if unless_busy else _ASSIGN,
            {
                "conversation_id": conversation_id,
                "operator_id": operator_id,
                "team_id": target.team_id,
                "priority": target.priority,
                "required_skills": list(target.required_skills),
                "reason": reason,
                "actor_id": actor_id,
                "policy": policy,
                "trigger": trigger,
                "candidates": candidates,
                "note_reason": note_reason,
                "check_online": check_online,
                "check_capacity": check_capacity,
            },
        )
    ).first()
    if row is None:
        return None
    remember_first_response(row)
    return int(row.assignment_id)


async def _queue(
    conn: AsyncConnection,
    conversation_id: str,
    target: _Target,
    *,
    policy: str,
    trigger: str,
    candidates: list[dict[str, Any]],
    actor_id: uuid.UUID | None = None,
    note_reason: str | None = None,
) -> RouteOutcome:
    await conn.execute(
        _QUEUE,
        {
            "conversation_id": conversation_id,
            "team_id": target.team_id,
            "priority": target.priority,
            "required_skills": list(target.required_skills),
            "policy": policy,
            "trigger": trigger,
            "candidates": candidates,
            "actor_id": actor_id,
            "note_reason": note_reason,
        },
    )
    return RouteOutcome("queued", target.team_id)


async def _try_ranked(
    conn: AsyncConnection,
    conversation_id: str,
    target: _Target,
    decision: Decision,
    lost: dict[uuid.UUID, str],
    trigger: str,
    reason: str,
    actor_id: uuid.UUID | None = None,
    note_reason: str | None = None,
) -> RouteOutcome | None:
    """Try the ranked candidates in order; one whose row check fails lost a race and is recorded as such.

    First pass: candidates whose row another transaction holds are passed over (``busy``), so
    concurrent routers do not queue up behind the same operator; second pass: wait for them.
    """
    busy: set[uuid.UUID] = set()
    for unless_busy in (True, False):
        for operator_id in decision.ranked:
            if operator_id in lost or (not unless_busy and operator_id not in busy):
                continue
            assigned = await _assign(
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
                unless_busy=unless_busy,
            )
            if assigned is not None:
                return RouteOutcome("assigned", target.team_id, operator_id)
            if unless_busy:
                busy.add(operator_id)
            else:
                lost[operator_id] = "at_capacity"
    return None


async def _place(
    conn: AsyncConnection,
    conversation_id: str,
    target: _Target,
    *,
    trigger: str,
    reason: str = "routed",
    actor_id: uuid.UUID | None = None,
    note_reason: str | None = None,
    team_locked: bool = False,
    team: tuple[str, list[Candidate]] | None = None,
) -> RouteOutcome:
    """Assign to the best eligible member of the target team, else queue there (the conversation is locked).

    Fast path without the team lock, ranking ``team`` (policy and candidates already read) if given.
    Before queueing, the team lock is taken and the members re-read, so a change that freed room
    and committed meanwhile is seen, and any later one finds this conversation in the queue when
    it drains (no lost wake-up). ``team_locked``: the caller already holds it, so there is no fast path.
    """
    why = (trigger, reason, actor_id, note_reason)
    if not team_locked and not _careful.get():
        policy, candidates = team or await load_candidates(conn, target.team_id)
        decision = decide(policy, candidates, required_skills=target.required_skills, exclude=target.excluded)
        if policy != "manual" and decision.ranked:
            if done := await _try_ranked(conn, conversation_id, target, decision, {}, *why):
                return done
            # Every ranked candidate lost a race. A failed capacity check can leave the operator's row
            # locked (PostgreSQL locks the newest row version before re-checking it), and the team lock
            # must never be taken after an operator lock, the order every other path keeps: start over,
            # team lock first. Rare, so this costs less than a savepoint around every fast path.
            raise RestartTransaction
    if not team_locked:
        await lock_teams(conn, target.team_id, shared=True)
    policy, candidates = await load_candidates(conn, target.team_id)
    lost: dict[uuid.UUID, str] = {}
    decision = decide(policy, candidates, required_skills=target.required_skills, exclude=target.excluded)
    if decision.ranked and (done := await _try_ranked(conn, conversation_id, target, decision, lost, *why)):
        return done
    return await _queue(
        conn,
        conversation_id,
        target,
        policy=policy,
        trigger=trigger,
        candidates=decision.candidates_json(lost),
        actor_id=actor_id,
        note_reason=note_reason,
    )


async def _release(conn: AsyncConnection, conv: Any, end_reason: str) -> uuid.UUID | None:
    """End the current assignment and give the operator's slot back; returns who held it."""
    if conv.status != "assigned" or conv.assignee_id is None:
        return None
    ended = (
        await conn.execute(
            _RELEASE,
            {"operator_id": conv.assignee_id, "conversation_id": conv.id, "end_reason": end_reason},
        )
    ).first()
    if ended is None:
        raise RuntimeError(f"conversation {conv.id} is assigned without an open assignment")
    return conv.assignee_id  # type: ignore[no-any-return]


def _target_of(conv: Any, team_id: uuid.UUID | None = None) -> _Target:
    return _Target(team_id or conv.team_id, conv.priority, tuple(conv.required_skills), tuple(conv.excluded_operators))


# --- Public service functions ---------------------------------------------------------------------------------


async def route_conversation(conn: AsyncConnection, conversation_id: str, revision: int, trigger: str) -> RouteOutcome:
    """Route one conversation in the caller's transaction; a no-op (``stale``) unless ``revision`` is current.

    The row is locked first, so concurrent jobs for the same conversation serialize and all
    but the first find a newer revision and stop.
    """
    conv = await _lock_conversation(conn, conversation_id)
    if conv is None or conv.routing_revision != revision or conv.status != "new":
        return RouteOutcome("stale")
    target = _target_of(conv) if conv.team_id is not None else await _select_team(conn, conv)
    # The lock read the members of the conversation's team, or of the default one: usually the target.
    team = _team_of(conv.team) if conv.team and uuid.UUID(conv.team["id"]) == target.team_id else None
    return await _place(conn, conversation_id, target, trigger=trigger, team=team)


async def drain_team_queue(conn: AsyncConnection, team_id: uuid.UUID, trigger: str) -> int:
    """Assign queued conversations of the team, in queue order, while members have room; returns how many.

    Holds the team lock, so it sees every conversation queued before it and none is queued
    behind its back. Each step locks the first queued conversation some member with room could
    take (``SKIP LOCKED``: a claim, transfer or close holding one acts on it itself); short
    holders (a stale routing job, a visitor message) are waited out by another pass.
    """
    await lock_teams(conn, team_id)
    policy, candidates = await load_candidates(conn, team_id)
    if policy == "manual":
        return 0
    assigned = 0
    for _ in range(DRAIN_PASSES):
        while roomy := [c for c in candidates if c.status == "online" and c.open_conversations < c.capacity]:
            params = {"team_id": team_id, "roomy": _roomy_json(roomy)}
            conv = (await conn.execute(_NEXT_ASSIGNABLE, params)).first()
            if conv is None:
                break
            decision = decide(policy, candidates, required_skills=conv.required_skills, exclude=conv.excluded_operators)
            if await _try_ranked(conn, conv.id, _target_of(conv), decision, {}, trigger, "routed"):
                assigned += 1
            # Loads changed (ours, or a concurrent fast-path assignment that beat us to an operator).
            _, candidates = await load_candidates(conn, team_id)
        if not roomy or not await conn.scalar(_ANY_ASSIGNABLE, params):
            break
        await asyncio.sleep(DRAIN_PASS_PAUSE_SECONDS)
    return assigned


def _roomy_json(roomy: list[Candidate]) -> str:
    return json.dumps([{"id": str(c.operator_id), "skills": sorted(c.skills)} for c in roomy])


async def _freed_teams(conn: AsyncConnection, conv: Any) -> list[uuid.UUID]:
    """Teams whose queues may use the slot this conversation's assignee is about to free (and its own team)."""
    teams = {conv.team_id} if conv.team_id is not None else set()
    if conv.status == "assigned" and conv.assignee_id is not None:
        teams |= set(
            (
                await conn.execute(sa.select(member_t.c.team_id).where(member_t.c.operator_id == conv.assignee_id))
            ).scalars()
        )
    return sorted(teams)


async def _drain_all(conn: AsyncConnection, team_ids: list[uuid.UUID], trigger: str) -> None:
    for team_id in team_ids:
        await drain_team_queue(conn, team_id, trigger)


async def claim(
    conn: AsyncConnection, conversation_id: str, operator_id: uuid.UUID, *, actor_id: uuid.UUID
) -> AssignOutcome:
    """The operator takes a waiting conversation of their team, within their capacity (409 otherwise)."""
    conv = await _locked(conn, conversation_id)
    if conv.status not in ("new", "queued") or conv.team_id is None:
        raise ConflictException("This conversation is not waiting in a queue")
    return await _assign_explicit(
        conn, conv, operator_id, _target_of(conv), trigger="claim", reason="claimed", actor_id=actor_id
    )


async def _assign_explicit(
    conn: AsyncConnection,
    conv: Any,
    operator_id: uuid.UUID,
    target: _Target,
    *,
    trigger: str,
    reason: str,
    actor_id: uuid.UUID,
    note_reason: str | None = None,
    override_capacity: bool = False,
) -> AssignOutcome:
    """A person chose the operator: membership and capacity (unless overridden) are checked, presence is not."""
    policy, candidates = await load_candidates(conn, target.team_id)
    member = next((c for c in candidates if c.operator_id == operator_id), None)
    if member is None:
        raise ConflictException("That operator is not a member of the conversation's team")
    # Presence and skills are the person's call; the decision still records them.
    decision = decide("manual", [member], required_skills=target.required_skills)
    assignment_id = await _assign(
        conn,
        conv.id,
        operator_id,
        target,
        policy=policy,
        trigger=trigger,
        candidates=decision.candidates_json(),
        reason=reason,
        actor_id=actor_id,
        note_reason=note_reason,
        check_online=False,
        check_capacity=not override_capacity,
    )
    if assignment_id is None:
        raise ConflictException("That operator is at capacity")
    return AssignOutcome(operator_id, target.team_id, assignment_id)


async def _add_note(conn: AsyncConnection, conv: Any, team_id: uuid.UUID, author_id: uuid.UUID, body: str) -> uuid.UUID:
    note_id = uuid.uuid4()
    await conn.execute(sa.insert(note_t).values(id=note_id, conversation_id=conv.id, author_id=author_id, body=body))
    await record_event(
        conn,
        "note.created",
        team_id=team_id,
        conversation_id=conv.id,
        data={"conversationId": conv.id, "noteId": str(note_id), "authorId": str(author_id)},
    )
    return note_id


async def _transferred(
    conn: AsyncConnection,
    conv: Any,
    *,
    actor_id: uuid.UUID,
    note: str | None,
    to_team_id: uuid.UUID,
    to_operator_id: uuid.UUID | None,
) -> None:
    """The handoff's internal note and ``conversation.transferred`` event, seen by both sides."""
    note_id = await _add_note(conn, conv, to_team_id, actor_id, note) if note else None
    people = [p for p in (conv.assignee_id, to_operator_id) if p is not None]
    await record_event(
        conn,
        "conversation.transferred",
        team_id=to_team_id,
        conversation_id=conv.id,
        operator_ids=people,
        data={
            "conversationId": conv.id,
            "fromTeamId": str(conv.team_id) if conv.team_id else None,
            "toTeamId": str(to_team_id),
            "fromOperatorId": str(conv.assignee_id) if conv.assignee_id else None,
            "toOperatorId": str(to_operator_id) if to_operator_id else None,
            "actorId": str(actor_id),
            "noteId": str(note_id) if note_id else None,
        },
    )


def _open(conv: Any) -> None:
    if conv.status == "closed":
        raise ConflictException("This conversation is closed; reopen it first")
    if conv.team_id is None:
        raise ConflictException("This conversation has not been routed to a team yet")


async def transfer_to_operator(
    conn: AsyncConnection,
    conversation_id: str,
    operator_id: uuid.UUID,
    *,
    actor_id: uuid.UUID,
    note: str | None = None,
    override_capacity: bool = False,
) -> AssignOutcome:
    """Hand the conversation to a member of its team, capacity-checked unless a lead overrides; drains the queue."""
    conv = await _locked(conn, conversation_id)
    _open(conv)
    if conv.assignee_id == operator_id and conv.status == "assigned":
        raise ConflictException("The conversation is already assigned to that operator")
    freed = await _freed_teams(conn, conv)
    await lock_teams(conn, *freed)
    await _release(conn, conv, "transferred")
    outcome = await _assign_explicit(
        conn,
        conv,
        operator_id,
        _target_of(conv),
        trigger="transfer",
        reason="transferred",
        actor_id=actor_id,
        note_reason=note,
        override_capacity=override_capacity,
    )
    await _transferred(conn, conv, actor_id=actor_id, note=note, to_team_id=conv.team_id, to_operator_id=operator_id)
    await _drain_all(conn, freed, "transfer")
    return outcome


async def transfer_to_team(
    conn: AsyncConnection, conversation_id: str, team_id: uuid.UUID, *, actor_id: uuid.UUID, note: str | None = None
) -> RouteOutcome:
    """Move the conversation to another team, routed there by that team's policy; drains the old team's queue."""
    conv = await _locked(conn, conversation_id)
    _open(conv)
    if conv.team_id == team_id:
        raise ConflictException("The conversation is already in that team")
    freed = await _freed_teams(conn, conv)
    await lock_teams(conn, *freed, team_id)
    await _release(conn, conv, "transferred")
    outcome = await _place(
        conn,
        conversation_id,
        _target_of(conv, team_id),
        trigger="transfer",
        reason="transferred",
        actor_id=actor_id,
        note_reason=note,
        team_locked=True,
    )
    await _transferred(conn, conv, actor_id=actor_id, note=note, to_team_id=team_id, to_operator_id=outcome.operator_id)
    await _drain_all(conn, [t for t in freed if t != team_id], "transfer")
    return outcome


async def requeue(
    conn: AsyncConnection, conversation_id: str, *, reason: str, actor_id: uuid.UUID | None = None
) -> RouteOutcome:
    """Take the conversation from its assignee back to its team's queue, then drain that queue (409 if not assigned)."""
    conv = await _locked(conn, conversation_id)
    if conv.status != "assigned":
        raise ConflictException("The conversation is not assigned")
    freed = await _freed_teams(conn, conv)
    await lock_teams(conn, *freed)
    await _release(conn, conv, reason)
    target = _target_of(conv)
    policy, candidates = await load_candidates(conn, target.team_id)
    decision = decide(policy, candidates, required_skills=target.required_skills)
    await _queue(
        conn,
        conversation_id,
        target,
        policy=policy,
        trigger=reason,
        candidates=decision.candidates_json(),
        actor_id=actor_id,
        note_reason=reason,
    )
    await _drain_all(conn, freed, reason)
    row = await _lock_conversation(conn, conversation_id)
    return RouteOutcome(row.status, target.team_id, row.assignee_id)


async def reassign(
    conn: AsyncConnection,
    conversation_id: str,
    *,
    reason: str,
    exclude_operator_id: uuid.UUID,
    actor_id: uuid.UUID | None = None,
) -> RouteOutcome:
    """Give the conversation to the next eligible member other than ``exclude_operator_id``, else queue it."""
    conv = await _locked(conn, conversation_id)
    if conv.status != "assigned":
        raise ConflictException("The conversation is not assigned")
    freed = await _freed_teams(conn, conv)
    await lock_teams(conn, *freed)
    await _release(conn, conv, reason)
    excluded = await conn.scalar(
        sa.update(conversation_t)
        .where(conversation_t.c.id == conversation_id)
        .values(excluded_operators=sa.func.array_append(conversation_t.c.excluded_operators, exclude_operator_id))
        .returning(conversation_t.c.excluded_operators)
    )
    outcome = await _place(
        conn,
        conversation_id,
        dataclasses.replace(_target_of(conv), excluded=tuple(excluded)),
        trigger=reason,
        reason=reason,
        actor_id=actor_id,
        note_reason=reason,
        team_locked=True,
    )
    await _drain_all(conn, freed, reason)
    return outcome


async def close_conversation(conn: AsyncConnection, conversation_id: str, *, actor_id: uuid.UUID | None) -> None:
    """Close the conversation, free its assignee's slot and drain the team's queue into it (409 if closed)."""
    conv = await _locked(conn, conversation_id)
    if conv.status == "closed":
        raise ConflictException("The conversation is already closed")
    freed = await _freed_teams(conn, conv)
    await lock_teams(conn, *freed)
    released = await _release(conn, conv, "closed")
    await conn.execute(
        sa.update(conversation_t)
        .where(conversation_t.c.id == conversation_id)
        .values(
            status="closed",
            closed_at=sa.func.now(),
            waiting_since=None,
            excluded_operators=[],
            routing_revision=conversation_t.c.routing_revision + 1,
        )
    )
    await csat.ask_on_close(conn, conversation_id, released)
    await record_event(
        conn,
        "conversation.closed",
        team_id=conv.team_id,
        conversation_id=conversation_id,
        operator_ids=[released] if released else [],
        data={"conversationId": conversation_id, "actorId": str(actor_id) if actor_id else None},
    )
    if released is not None:
        await _drain_all(conn, freed, "closed")


async def reopen_conversation(
    conn: AsyncConnection, conversation_id: str, *, actor_id: uuid.UUID | None
) -> RouteOutcome:
    """Reopen a closed conversation and route it again at once (its team, or the rules when it has none)."""
    conv = await _locked(conn, conversation_id)
    if conv.status != "closed":
        raise ConflictException("The conversation is not closed")
    await conn.execute(
        sa.update(conversation_t)
        .where(conversation_t.c.id == conversation_id)
        .values(status="new", closed_at=None, waiting_since=sa.func.now())
    )
    await record_event(
        conn,
        "conversation.reopened",
        team_id=conv.team_id,
        conversation_id=conversation_id,
        data={"conversationId": conversation_id, "actorId": str(actor_id) if actor_id else None},
    )
    target = _target_of(conv) if conv.team_id is not None else await _select_team(conn, conv)
    return await _place(conn, conversation_id, target, trigger="reopened", actor_id=actor_id)


# --- Reading for the API, the sweep and tests -----------------------------------------------------------------


async def team_queue(conn: AsyncConnection, team_id: uuid.UUID, limit: int = 100) -> list[dict[str, Any]]:
    """The team's waiting conversations in service order: priority, then longest waiting."""
    result = await conn.execute(
        sa.select(conversation_t.c.id, conversation_t.c.priority, conversation_t.c.waiting_since)
        .where(conversation_t.c.team_id == team_id, conversation_t.c.status == "queued")
        .order_by(conversation_t.c.priority.desc(), conversation_t.c.waiting_since, conversation_t.c.id)
        .limit(limit)
    )
    return [dict(row._mapping) for row in result]


async def teams_with_queue(conn: AsyncConnection) -> list[uuid.UUID]:
    """Teams with an automatic policy and someone waiting (for the periodic sweep)."""
    result = await conn.execute(
        sa.select(team_t.c.id)
        .where(
            team_t.c.routing_policy != "manual",
            sa.exists().where(conversation_t.c.team_id == team_t.c.id, conversation_t.c.status == "queued"),
        )
        .order_by(team_t.c.id)
    )
    return list(result.scalars())


async def unrouted_conversations(conn: AsyncConnection, older_than_seconds: float) -> list[tuple[str, int]]:
    """Conversations waiting for a routing job that may have been lost (for the sweep)."""
    result = await conn.execute(
        sa.select(conversation_t.c.id, conversation_t.c.routing_revision).where(
            conversation_t.c.status == "new",
            conversation_t.c.waiting_since.is_not(None),
            conversation_t.c.waiting_since
            < sa.func.now() - sa.func.make_interval(0, 0, 0, 0, 0, 0, older_than_seconds),
        )
    )
    return [(row.id, row.routing_revision) for row in result]


async def decisions_for(
    conn: AsyncConnection, conversation_id: str, *, after_id: int = 0, limit: int = 50, newest_first: bool = False
) -> list[dict[str, Any]]:
    """Routing decisions about the conversation after the decision ``after_id``, oldest first (or newest first)."""
    result = await conn.execute(
        sa.select(decision_t)
        .where(decision_t.c.conversation_id == conversation_id, decision_t.c.id > after_id)
        .order_by(decision_t.c.id.desc() if newest_first else decision_t.c.id)
        .limit(limit)
    )
    return [dict(row) for row in result.mappings()]
