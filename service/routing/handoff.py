"""Handoffs people ask for: claim, transfer to an operator or a team (with a note), requeue, reassign, close, reopen.

Each runs in the caller's transaction (``in_transaction``) and locks the conversation first.
"""

from __future__ import annotations

import dataclasses
import uuid
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from service.csat import services as csat
from service.db.tables import conversation_t, note_t
from service.errors import Conflict
from service.events import record_event
from service.routing import placement, sql
from service.routing.placement import RouteOutcome
from service.routing.policies import decide
from service.sla import clocks as sla_clocks


@dataclass(frozen=True)
class AssignOutcome:
    """An explicit assignment (claim, transfer to an operator) that took place."""

    operator_id: uuid.UUID
    team_id: uuid.UUID
    assignment_id: int


async def claim(
    conn: AsyncConnection, conversation_id: str, operator_id: uuid.UUID, *, actor_id: uuid.UUID
) -> AssignOutcome:
    """The operator takes a waiting conversation of their team, within their capacity (409 otherwise)."""
    conv = await sql.locked(conn, conversation_id)
    if conv.status not in ("new", "queued") or conv.team_id is None:
        raise Conflict("This conversation is not waiting in a queue")
    return await _assign_explicit(
        conn, conv, operator_id, placement.target_of(conv), trigger="claim", reason="claimed", actor_id=actor_id
    )


async def _assign_explicit(
    conn: AsyncConnection,
    conv: Any,
    operator_id: uuid.UUID,
    target: placement.Target,
    *,
    trigger: str,
    reason: str,
    actor_id: uuid.UUID,
    note_reason: str | None = None,
    override_capacity: bool = False,
) -> AssignOutcome:
    """A person chose the operator: membership and capacity (unless overridden) are checked, presence is not."""
    policy, candidates = await sql.load_candidates(conn, target.team_id)
    member = next((c for c in candidates if c.operator_id == operator_id), None)
    if member is None:
        raise Conflict("That operator is not a member of the conversation's team")
    # Presence and skills are the person's call; the decision still records them.
    decision = decide("manual", [member], required_skills=target.required_skills)
    assignment_id = await placement.assign(
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
        raise Conflict("That operator is at capacity")
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
    actor_id: uuid.UUID | None,
    note: str | None,
    to_team_id: uuid.UUID,
    to_operator_id: uuid.UUID | None,
) -> None:
    """The handoff's internal note and ``conversation.transferred`` event, seen by both sides."""
    note_id = await _add_note(conn, conv, to_team_id, actor_id, note) if note and actor_id else None
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
            "actorId": str(actor_id) if actor_id else None,
            "noteId": str(note_id) if note_id else None,
        },
    )


def _open(conv: Any) -> None:
    if conv.status == "closed":
        raise Conflict("This conversation is closed; reopen it first")
    if conv.team_id is None:
        raise Conflict("This conversation has not been routed to a team yet")


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
    conv = await sql.locked(conn, conversation_id)
    _open(conv)
    if conv.assignee_id == operator_id and conv.status == "assigned":
        raise Conflict("The conversation is already assigned to that operator")
    freed = await placement.freed_teams(conn, conv)
    await sql.lock_teams(conn, *freed)
    await placement.release(conn, conv, "transferred")
    outcome = await _assign_explicit(
        conn,
        conv,
        operator_id,
        placement.target_of(conv),
        trigger="transfer",
        reason="transferred",
        actor_id=actor_id,
        note_reason=note,
        override_capacity=override_capacity,
    )
    await _transferred(conn, conv, actor_id=actor_id, note=note, to_team_id=conv.team_id, to_operator_id=operator_id)
    await placement.drain_all(conn, freed, "transfer")
    return outcome


async def transfer_to_team(
    conn: AsyncConnection,
    conversation_id: str,
    team_id: uuid.UUID,
    *,
    actor_id: uuid.UUID | None,
    note: str | None = None,
    trigger: str = "transfer",
    reason: str = "transferred",
) -> RouteOutcome:
    """Move the conversation to another team, routed there by that team's policy; drains the old team's queue.

    ``actor_id`` None: the service moved it (an SLA escalation's overflow, audited under ``trigger``)."""
    conv = await sql.locked(conn, conversation_id)
    _open(conv)
    if conv.team_id == team_id:
        raise Conflict("The conversation is already in that team")
    freed = await placement.freed_teams(conn, conv)
    await sql.lock_teams(conn, *freed, team_id)
    await placement.release(conn, conv, "transferred")
    outcome = await placement.place(
        conn,
        conversation_id,
        placement.target_of(conv, team_id),
        trigger=trigger,
        reason=reason,
        actor_id=actor_id,
        note_reason=note,
        team_locked=True,
    )
    await _transferred(conn, conv, actor_id=actor_id, note=note, to_team_id=team_id, to_operator_id=outcome.operator_id)
    await placement.drain_all(conn, [t for t in freed if t != team_id], trigger)
    return outcome


async def _take_from_assignee(conn: AsyncConnection, conversation_id: str, reason: str) -> tuple[Any, list[uuid.UUID]]:
    """Lock the assigned conversation (409 if not assigned) and the queues it frees, then release its assignee."""
    conv = await sql.locked(conn, conversation_id)
    if conv.status != "assigned":
        raise Conflict("The conversation is not assigned")
    freed = await placement.freed_teams(conn, conv)
    await sql.lock_teams(conn, *freed)
    await placement.release(conn, conv, reason)
    return conv, freed


async def requeue(
    conn: AsyncConnection, conversation_id: str, *, reason: str, actor_id: uuid.UUID | None = None
) -> RouteOutcome:
    """Take the conversation from its assignee back to its team's queue, then drain that queue (409 if not assigned)."""
    conv, freed = await _take_from_assignee(conn, conversation_id, reason)
    target = placement.target_of(conv)
    policy, candidates = await sql.load_candidates(conn, target.team_id)
    decision = decide(policy, candidates, required_skills=target.required_skills)
    await placement.queue(
        conn,
        conversation_id,
        target,
        policy=policy,
        trigger=reason,
        candidates=decision.candidates_json(),
        actor_id=actor_id,
        note_reason=reason,
    )
    if policy == placement.POOLED:
        await placement.offer(conn, conversation_id, target.team_id, decision.ranked)
    await placement.drain_all(conn, freed, reason)
    row = await sql.lock_conversation(conn, conversation_id)
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
    conv, freed = await _take_from_assignee(conn, conversation_id, reason)
    excluded = await conn.scalar(
        sa.update(conversation_t)
        .where(conversation_t.c.id == conversation_id)
        .values(excluded_operators=sa.func.array_append(conversation_t.c.excluded_operators, exclude_operator_id))
        .returning(conversation_t.c.excluded_operators)
    )
    outcome = await placement.place(
        conn,
        conversation_id,
        dataclasses.replace(placement.target_of(conv), excluded=tuple(excluded)),
        trigger=reason,
        reason=reason,
        actor_id=actor_id,
        note_reason=reason,
        team_locked=True,
    )
    await placement.drain_all(conn, freed, reason)
    return outcome


async def close_conversation(conn: AsyncConnection, conversation_id: str, *, actor_id: uuid.UUID | None) -> None:
    """Close the conversation, free its assignee's slot and drain the team's queue into it (409 if closed)."""
    conv = await sql.locked(conn, conversation_id)
    if conv.status == "closed":
        raise Conflict("The conversation is already closed")
    freed = await placement.freed_teams(conn, conv)
    await sql.lock_teams(conn, *freed)
    released = await placement.release(conn, conv, "closed")
    await conn.execute(
        sa.update(conversation_t)
        .where(conversation_t.c.id == conversation_id)
        .values(
            status="closed",
            # The clock, not the transaction's start: the moment it left its queue (the queue locks are held).
            closed_at=sa.func.clock_timestamp(),
            waiting_since=None,
            excluded_operators=[],
            routing_revision=conversation_t.c.routing_revision + 1,
        )
    )
    await csat.ask_on_close(conn, conversation_id, released)
    await sla_clocks.closed(conn, conversation_id)
    await record_event(
        conn,
        "conversation.closed",
        team_id=conv.team_id,
        conversation_id=conversation_id,
        operator_ids=[released] if released else [],
        data={"conversationId": conversation_id, "actorId": str(actor_id) if actor_id else None},
    )
    # A queued conversation leaving its queue may also let the members who could take it be given others.
    await placement.drain_all(conn, freed, "closed")


async def reopen_conversation(
    conn: AsyncConnection, conversation_id: str, *, actor_id: uuid.UUID | None
) -> RouteOutcome:
    """Reopen a closed conversation and route it again at once (its team, or the rules when it has none)."""
    conv = await sql.locked(conn, conversation_id)
    if conv.status != "closed":
        raise Conflict("The conversation is not closed")
    await conn.execute(
        sa.update(conversation_t)
        .where(conversation_t.c.id == conversation_id)
        # A new wait: the skill requirement is asked exactly again.
        .values(
            status="new",
            closed_at=None,
            waiting_since=sa.func.now(),
            required_skills=conversation_t.c.skill_requirement,
            skill_step="exact",
        )
    )
    await record_event(
        conn,
        "conversation.reopened",
        team_id=conv.team_id,
        conversation_id=conversation_id,
        data={"conversationId": conversation_id, "actorId": str(actor_id) if actor_id else None},
    )
    target = placement.target_of(conv) if conv.team_id is not None else await placement.select_team(conn, conv)
    return await placement.place_routed(conn, conversation_id, target, trigger="reopened", actor_id=actor_id)
