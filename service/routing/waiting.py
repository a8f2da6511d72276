"""What waiting changes: a queued conversation's skill requirement relaxes, an operator's exclusion expires.

Both run when their durable timer fires (``service/flows/timeouts.py``), in the transaction that marks it
fired and with the conversation locked, so each step happens once, whatever the retries.
"""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from service.db.tables import conversation_t, team_t
from service.routing import placement, sql
from service.routing.policies import decide, next_skill_step, relaxed_skills
from service.timers.services import REOFFER, SKILL_RELAX, schedule_timer

RELAX_TRIGGER = "skill_relax"
REOFFER_TRIGGER = "reoffer"


async def relax_skills(conn: AsyncConnection, conversation_id: str) -> str:
    """Take the queued conversation's requirement one step down (a level lower, then any member), offer it to the
    team again (a drain, or the pooled offer), and arm the next step if it still waits."""
    row = await placement.relax_inputs(conn, conversation_id)
    if row is None or row.status != "queued" or row.waiting_since is None:
        return "skill_relax_not_waiting"
    asked = placement.asked(row)
    step = next_skill_step(row.skill_step, row.skill_relax_after_seconds, row.skill_any_member_after_seconds)
    if not asked or step is None:
        return "skill_relax_nothing_left"
    due = row.waiting_since + timedelta(seconds=step[1])
    if due > row.now:  # the team lengthened its delay since the timer was armed
        await schedule_timer(conn, SKILL_RELAX, conversation_id, due)
        return "skill_relax_later"
    await conn.execute(
        sa.update(conversation_t)
        .where(conversation_t.c.id == conversation_id)
        .values(required_skills=list(relaxed_skills(asked, step[0])), skill_requirement=list(asked), skill_step=step[0])
    )
    await _offer_again(conn, conversation_id, row.team_id, row.routing_policy, RELAX_TRIGGER)
    await placement.arm_skill_relax(conn, conversation_id)
    return f"skill_relax_{step[0]}"


async def schedule_reoffer(
    conn: AsyncConnection, conversation_id: str, operator_id: uuid.UUID, since: datetime
) -> int | None:
    """After a first-response timeout took the conversation from ``operator_id`` at ``since``: their exclusion
    ends the team's ``reofferAfterSeconds`` later (a ``reoffer`` timer); None when the team never ends it."""
    seconds = await conn.scalar(
        sa.select(team_t.c.reoffer_after_seconds)
        .select_from(conversation_t.join(team_t, team_t.c.id == conversation_t.c.team_id))
        .where(conversation_t.c.id == conversation_id)
    )
    if seconds is None:
        return None
    return await schedule_timer(
        conn, REOFFER, reoffer_subject(conversation_id, operator_id), since + timedelta(seconds=seconds)
    )


def reoffer_subject(conversation_id: str, operator_id: uuid.UUID) -> str:
    return f"{conversation_id}:{operator_id}"


def reoffer_parts(subject: str) -> tuple[str, uuid.UUID]:
    """``reoffer_subject`` read back (a session id may hold ``:``; an operator id never does)."""
    conversation_id, _, operator_id = subject.rpartition(":")
    return conversation_id, uuid.UUID(operator_id)


async def reoffer(conn: AsyncConnection, conversation_id: str, operator_id: uuid.UUID) -> str:
    """The operator's exclusion from the conversation ends; if it still waits, the team's queue is offered to them
    again (a drain, or the pooled offer), in queue order like any other conversation."""
    row = (
        await conn.execute(
            sa.update(conversation_t)
            .where(
                conversation_t.c.id == conversation_id,
                sa.literal(operator_id, sa.Uuid) == sa.any_(conversation_t.c.excluded_operators),
            )
            .values(excluded_operators=sa.func.array_remove(conversation_t.c.excluded_operators, operator_id))
            .returning(conversation_t.c.status, conversation_t.c.team_id)
        )
    ).first()
    if row is None:
        return "reoffer_not_excluded"
    if row.status != "queued" or row.team_id is None:
        return "reoffer_not_waiting"
    policy = str(await conn.scalar(sa.select(team_t.c.routing_policy).where(team_t.c.id == row.team_id)))
    await _offer_again(conn, conversation_id, row.team_id, policy, REOFFER_TRIGGER)
    return "reoffer_offered"


async def _offer_again(
    conn: AsyncConnection, conversation_id: str, team_id: uuid.UUID, policy: str, trigger: str
) -> None:
    """Who may take the conversation changed: an automatic team drains its queue (served in order), a pooled one
    offers it to everyone now eligible; a manual one waits for a claim."""
    if policy == placement.POOLED:
        _, candidates = await sql.load_candidates(conn, team_id)
        conv = await sql.lock_conversation(conn, conversation_id)
        decision = decide(policy, candidates, required_skills=conv.required_skills, exclude=conv.excluded_operators)
        await placement.offer(conn, conversation_id, team_id, decision.ranked)
    elif policy != "manual":
        await placement.drain_team_queue(conn, team_id, trigger)
