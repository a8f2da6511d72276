"""Routing's hand-written SQL: the locking statements, and the helpers that take the locks and read the team.

Lock order, everywhere: the conversation row, then team queue locks (several in key order), then
operator rows. See docs/routing.md ("Locking") for why this keeps capacity exact and the queue free
of lost wake-ups.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.ext.asyncio import AsyncConnection

from service.errors import NotFound
from service.routing.policies import Candidate, skill_ladder
from service.timers.services import FIRST_RESPONSE_COLUMNS, FIRST_RESPONSE_CTES

# A queued conversation of team ``{team}`` that an operator with ``{skills}`` (``{operator}``) could take and
# that comes before a conversation ``{conv}`` of priority ``{priority}`` in the queue's order (priority, then
# waiting time, then id). While one exists, automatic routing gives that operator nothing behind it.
_AHEAD = """EXISTS (
    SELECT 1 FROM conversation q
    WHERE q.team_id = {team} AND q.status = 'queued' AND q.id <> {conv}
      AND (q.priority > {priority} OR (q.priority = {priority} AND (q.waiting_since, q.id) < (
          (SELECT coalesce(w.waiting_since, 'infinity') FROM conversation w WHERE w.id = {conv}), {conv})))
      AND {skills} @> q.required_skills AND NOT ({operator} = ANY(q.excluded_operators))
)"""

# A team's policy and members (with their load) as one JSON document, so that the conversation's
# lock can read them in its own round trip; ``{team}`` is the team id's expression, ``{ahead}`` whether a
# member (``m``) has a queued conversation ahead of the one being routed (``false`` when none is).
_TEAM_JSON = """(
    SELECT jsonb_build_object('id', t.id, 'policy', t.routing_policy, 'members', coalesce(jsonb_agg(jsonb_build_object(
               'operatorId', m.operator_id, 'status', o.status, 'open', o.open_conversations,
               'capacity', coalesce(m.capacity, t.default_capacity), 'skills', m.skills,
               'lastAssignedAt', m.last_assigned_at, 'ahead', {ahead}) ORDER BY m.operator_id)
               FILTER (WHERE o.id IS NOT NULL), '[]'))
    FROM team t
    LEFT JOIN (team_member m JOIN operator o ON o.id = m.operator_id AND o.deactivated_at IS NULL) ON m.team_id = t.id
    WHERE t.id = {team} GROUP BY t.id
)"""


def _team_json(team: str, conv: str | None = None, priority: str | None = None) -> str:
    """``_TEAM_JSON`` for ``team``, with each member's ``ahead`` relative to conversation ``conv`` if given."""
    ahead = (
        _AHEAD.format(
            team="t.id", conv=conv, priority=priority, skills="skill_ladder(m.skills)", operator="m.operator_id"
        )
        if conv
        else "false"
    )
    return _TEAM_JSON.format(team=team, ahead=ahead)


# The visitor's first message (what keyword rules read), for a conversation ``{c}`` the rules have yet to place.
_FIRST_MESSAGE = """(
    SELECT m.content FROM message m WHERE m.conversation_id = {c}.id AND m.sender = 'visitor' AND m.deleted_at IS NULL
    ORDER BY m.seq LIMIT 1
)"""

# Every enabled routing rule, in the order they are tried, as one JSON array.
_RULES_JSON = """(
    SELECT coalesce(jsonb_agg(jsonb_build_object(
        'teamId', r.team_id, 'conditions', r.conditions, 'setPriority', r.set_priority,
        'requiredSkills', r.required_skills, 'id', r.id, 'name', r.name, 'setTags', r.set_tags)
        ORDER BY r.position, r.created_at, r.id), '[]')
    FROM routing_rule r WHERE r.enabled
)"""

# The conversation row, for one without a team yet the enabled rules in order and the default team,
# and the members of its team (or of the team chosen at connect, or of the default team), all in the
# same round trip. The members are read in the snapshot taken before any wait for the row lock: only
# the fast path ranks with them, where the assignment statement's checks decide, and queueing
# re-reads them.
_CONVERSATION_COLUMNS = (
    """
    c.id, c.status, c.team_id, c.selected_team_id, c.assignee_id, c.routing_revision, c.priority,
    c.required_skills, c.skill_requirement, c.skill_step, c.excluded_operators, c.session_metadata, c.identity,
    c.user_phone_country,
    CASE WHEN c.team_id IS NULL THEN """
    + _RULES_JSON
    + """ END AS rules,
    CASE WHEN c.team_id IS NULL THEN (SELECT t.id FROM team t WHERE t.is_default) END AS default_team_id,
    CASE WHEN c.team_id IS NULL THEN """
    + _FIRST_MESSAGE.format(c="c")
    + """ END AS first_message,
    """
)
_KNOWN_TEAM = "coalesce(c.team_id, c.selected_team_id)"
_USUAL_TEAM = f"coalesce({_KNOWN_TEAM}, (SELECT d.id FROM team d WHERE d.is_default))"
_LOCK_CONVERSATION = sa.text(
    "SELECT " + _CONVERSATION_COLUMNS + _team_json(_USUAL_TEAM) + " AS team "
    "FROM conversation c WHERE c.id = :id FOR UPDATE OF c"
).columns(rules=JSONB, team=JSONB)

# The same for a routing job, which then also holds its team's queue lock, shared (taken after the row
# lock: the CTE's rows are locked before the outer query runs), and reads whether each member has a
# queued conversation ahead of this one. Only when the team is known (placed, or chosen at connect):
# a conversation the rules have yet to place takes its target's lock once they have, never two locks
# out of key order.
_LOCK_FOR_ROUTING = sa.text(
    "WITH c AS MATERIALIZED (SELECT * FROM conversation WHERE id = :id FOR UPDATE) SELECT "
    + _CONVERSATION_COLUMNS
    + _team_json(_USUAL_TEAM, conv="c.id", priority="c.priority")
    + " AS team, "
    + _KNOWN_TEAM
    + " AS locked_team_id, pg_advisory_xact_lock_shared(hashtextextended(("
    + _KNOWN_TEAM
    + ")::text, 0)) AS team_lock FROM c"
).columns(rules=JSONB, team=JSONB)

# What choosing a team at connect reads: the conversation's team (if placed), its visit and the rules.
_SELECTION = sa.text(
    "SELECT c.team_id, c.selected_team_id, c.session_metadata, c.identity, c.user_phone_country, "
    + _RULES_JSON
    + " AS rules, (SELECT t.id FROM team t WHERE t.is_default) AS default_team_id, "
    + _FIRST_MESSAGE.format(c="c")
    + " AS first_message FROM conversation c WHERE c.id = :id"
).columns(rules=JSONB)

_CANDIDATES = sa.text("SELECT " + _team_json(":team_id") + " AS team").columns(team=JSONB)
_CANDIDATES_FOR = sa.text(
    "SELECT " + _team_json(":team_id", conv=":conversation_id", priority=":priority") + " AS team"
).columns(team=JSONB)

# The capacity check is this conditional UPDATE: the operator's row lock serializes every
# change to ``open_conversations``, and the capacity is re-read (membership included) in the
# same statement. With ``:in_order`` (automatic routing) it also requires that no queued conversation
# the operator could take comes before this one (``ahead``, read in this statement's snapshot, after the
# team's queue lock was taken: see docs/routing.md, "Queue order"). Assignment, conversation,
# round-robin clock, decision, ``conversation.assigned`` event and first-response timer follow only
# if it matched, all in this one round trip. Times come
# from clock_timestamp() taken after the operator row is locked, so the assignment history is
# ordered exactly as the operator's counter changed.
_ASSIGN_SQL = (
    """
    WITH cap AS (
        SELECT coalesce(m.capacity, t.default_capacity) AS capacity, :in_order AND """
    + _AHEAD.format(
        team=":team_id",
        conv=":conversation_id",
        priority=":priority",
        skills="skill_ladder(m.skills)",
        operator=":operator_id",
    )
    + """ AS ahead
        FROM team_member m JOIN team t ON t.id = m.team_id
        WHERE m.team_id = :team_id AND m.operator_id = :operator_id
    ), op AS (
        UPDATE operator o SET open_conversations = o.open_conversations + 1
        FROM cap
        WHERE o.id = :operator_id AND o.deactivated_at IS NULL AND NOT cap.ahead {skip_locked}
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
            priority = :priority, required_skills = :required_skills, skill_requirement = :skill_requirement,
            skill_step = :skill_step, assigned_at = asg.started_at, routing_revision = c.routing_revision + 1
        FROM asg WHERE c.id = :conversation_id
        RETURNING c.routing_revision
    ), member AS (
        UPDATE team_member m SET last_assigned_at = asg.started_at
        FROM asg WHERE m.team_id = :team_id AND m.operator_id = :operator_id
    ), decision AS (
        INSERT INTO routing_decision (conversation_id, team_id, policy, trigger, candidates, chosen_operator_id,
                                      outcome, actor_id, reason, skill_step, rule_id, rule_name)
        SELECT :conversation_id, :team_id, :policy, :trigger, :candidates, :operator_id, 'assigned', :actor_id,
               :note_reason, :skill_step, :rule_id, :rule_name
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
    SELECT asg.id AS assignment_id, coalesce((SELECT ahead FROM cap), false) AS ahead, {FIRST_RESPONSE_COLUMNS}
    FROM (SELECT) AS one LEFT JOIN asg ON true LEFT JOIN first_response ON true
    """
)
_ASSIGN_BINDS = (
    sa.bindparam("candidates", type_=JSONB),
    sa.bindparam("required_skills", type_=sa.ARRAY(sa.Text)),
    sa.bindparam("skill_requirement", type_=sa.ARRAY(sa.Text)),
)
ASSIGN = sa.text(_ASSIGN_SQL.format(skip_locked="")).bindparams(*_ASSIGN_BINDS)
# The same, except that an operator whose row another transaction holds (it is assigning to them
# right now) is passed over at once instead of waited for: concurrent routers spread out.
ASSIGN_UNLESS_BUSY = sa.text(
    _ASSIGN_SQL.format(
        skip_locked="AND o.id IN (SELECT b.id FROM operator b WHERE b.id = :operator_id FOR NO KEY UPDATE SKIP LOCKED)"
    )
).bindparams(*_ASSIGN_BINDS)

# Queued, with its decision row and the ``conversation.queued`` event, in one round trip. The decision's
# time is the statement's clock, not the transaction's start: the moment it joined the queue.
QUEUE = sa.text(
    """
    WITH conv AS (
        UPDATE conversation c SET status = 'queued', assignee_id = NULL, team_id = :team_id, priority = :priority,
            required_skills = :required_skills, skill_requirement = :skill_requirement, skill_step = :skill_step,
            waiting_since = coalesce(c.waiting_since, now()),
            routing_revision = c.routing_revision + 1
        WHERE c.id = :conversation_id
        RETURNING c.id, c.team_id, c.priority
    ), decision AS (
        INSERT INTO routing_decision
            (conversation_id, team_id, policy, trigger, candidates, outcome, actor_id, reason, created_at,
             skill_step, rule_id, rule_name)
        SELECT conv.id, :team_id, :policy, :trigger, :candidates, 'queued', :actor_id, :note_reason, clock_timestamp(),
               :skill_step, :rule_id, :rule_name
        FROM conv
    )
    INSERT INTO event (kind, team_id, conversation_id, data)
    SELECT 'conversation.queued', conv.team_id, conv.id,
           jsonb_build_object('conversationId', conv.id, 'teamId', conv.team_id::text, 'priority', conv.priority)
    FROM conv
    """
).bindparams(*_ASSIGN_BINDS)

# The operator's row first (its lock orders the history), then the assignment ends.
RELEASE = sa.text(
    """
    WITH op AS (
        UPDATE operator SET open_conversations = open_conversations - 1 WHERE id = :operator_id RETURNING id
    )
    UPDATE assignment a SET ended_at = clock_timestamp(), end_reason = :end_reason
    FROM op WHERE a.conversation_id = :conversation_id AND a.ended_at IS NULL AND a.operator_id = op.id
    RETURNING a.id
    """
)

# The first queued conversation of the team, in queue order, that one of the members with room
# (``:roomy``, a JSON list of {id, skills}) could take, leaving out ``:passed`` ones; ``locked`` when
# this transaction now holds its row, false when another one does (or it just left the queue). Only a
# filter: decide() still ranks and the assignment statement still decides.
NEXT_IN_ORDER = sa.text(
    """
    WITH head AS (
        SELECT c.id, c.priority, c.required_skills, c.skill_requirement, c.skill_step, c.excluded_operators, c.team_id
        FROM conversation c
        WHERE c.team_id = :team_id AND c.status = 'queued' AND c.id <> ALL(CAST(:passed AS text[])) AND EXISTS (
            SELECT 1 FROM jsonb_to_recordset(CAST(:roomy AS jsonb)) AS r(id uuid, skills text[])
            WHERE r.skills @> c.required_skills AND r.id <> ALL(c.excluded_operators)
        )
        ORDER BY c.priority DESC, c.waiting_since, c.id LIMIT 1
    ), got AS MATERIALIZED (
        SELECT c.id FROM conversation c JOIN head ON head.id = c.id
        WHERE c.status = 'queued' AND c.team_id = :team_id FOR UPDATE OF c SKIP LOCKED
    )
    SELECT head.*, got.id IS NOT NULL AS locked FROM head LEFT JOIN got ON true
    """
)
# Whether the conversation is still queued in the team (its latest committed state, without a lock).
STILL_QUEUED = sa.text(
    "SELECT EXISTS (SELECT 1 FROM conversation WHERE id = :id AND team_id = :team_id AND status = 'queued')"
)

_TEAM_KEYS = "(SELECT DISTINCT hashtextextended(t, 0) AS k FROM unnest(CAST(:ids AS text[])) AS t ORDER BY k) AS keys"
_LOCK_TEAMS = sa.text("SELECT pg_advisory_xact_lock(k) FROM " + _TEAM_KEYS)
_LOCK_TEAMS_SHARED = sa.text("SELECT pg_advisory_xact_lock_shared(k) FROM " + _TEAM_KEYS)


async def lock_conversation(conn: AsyncConnection, conversation_id: str) -> Any:
    """Lock the conversation row and read it with its routing context (``_LOCK_CONVERSATION``); None if missing."""
    return (await conn.execute(_LOCK_CONVERSATION, {"id": conversation_id})).first()


async def lock_for_routing(conn: AsyncConnection, conversation_id: str) -> Any:
    """``lock_conversation``, then the shared queue lock of its usual team (``locked_team_id``), in one round trip;
    the members come with ``ahead`` relative to this conversation (``_LOCK_FOR_ROUTING``)."""
    return (await conn.execute(_LOCK_FOR_ROUTING, {"id": conversation_id})).first()


async def selection(conn: AsyncConnection, conversation_id: str) -> Any:
    """The conversation's routing inputs without a lock (``_SELECTION``); None if missing."""
    return (await conn.execute(_SELECTION, {"id": conversation_id})).first()


async def locked(conn: AsyncConnection, conversation_id: str) -> Any:
    """``lock_conversation``, or ``NotFound``."""
    row = await lock_conversation(conn, conversation_id)
    if row is None:
        raise NotFound("Conversation not found")
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


async def load_candidates(
    conn: AsyncConnection, team_id: uuid.UUID, conversation_id: str | None = None, priority: int = 0
) -> tuple[str, list[Candidate]]:
    """The team's policy and its members as candidates; ``NotFound`` if the team does not exist.

    With ``conversation_id`` (and the priority it has there), each says whether a queued conversation it
    could take comes before that one (``queued_ahead``).
    """
    if conversation_id is None:
        team = await conn.scalar(_CANDIDATES, {"team_id": team_id})
    else:
        params = {"team_id": team_id, "conversation_id": conversation_id, "priority": priority}
        team = await conn.scalar(_CANDIDATES_FOR, params)
    if team is None:
        raise NotFound("Team not found")
    return team_of(team)


def team_of(team: dict[str, Any]) -> tuple[str, list[Candidate]]:
    """The policy and candidates from a ``_TEAM_JSON`` document."""
    candidates = [
        Candidate(
            operator_id=uuid.UUID(m["operatorId"]),
            status=m["status"],
            open_conversations=m["open"],
            capacity=m["capacity"],
            skills=skill_ladder(m["skills"]),
            last_assigned_at=datetime.fromisoformat(m["lastAssignedAt"]) if m["lastAssignedAt"] else None,
            queued_ahead=bool(m.get("ahead")),
        )
        for m in team["members"]
    ]
    return team["policy"], candidates
