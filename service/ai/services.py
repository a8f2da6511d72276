"""AI takeover: who may answer a conversation (operator or AI), the operator-replied hook, and the AI reply itself."""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

import sqlalchemy as sa
from pocketping.ai.base import AIProvider
from pocketping.models import Message, Sender
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from service import outbox
from service.auth.principal import Principal, requires_team_member
from service.db.tables import conversation_t, message_t, team_t
from service.errors import Conflict, NotFound
from service.events import record_event
from service.hours import calendar, clock
from service.hours.services import schedule_of
from service.teams.leads import tell_leads
from service.timers.services import AI_TAKEOVER, FIRST_RESPONSE, cancel_timer, schedule_timer

ACTIONS = ("pause", "resume", "handover", "takeback")


class AiSender(Protocol):
    """What the AI needs of the widget gateway (the PocketPing hub) to answer a visitor."""

    engine: AsyncEngine

    async def send_as_ai(
        self, session_id: str, content: str, *, message_id: str, takeover_reason: str | None = None
    ) -> Message: ...


@dataclass(frozen=True)
class AiState:
    conversation_id: str
    ai_active: bool
    ai_paused: bool


async def operator_replied(conn: AsyncConnection, conversation_id: str, operator_id: uuid.UUID | None) -> None:
    """Every operator message passes here: first response noted, first-response and AI timers cancelled, AI off."""
    row = (
        await conn.execute(
            sa.select(conversation_t.c.team_id, conversation_t.c.ai_active)
            .where(conversation_t.c.id == conversation_id)
            .with_for_update()
        )
    ).first()
    if row is None:
        return
    await conn.execute(
        sa.update(conversation_t)
        .where(conversation_t.c.id == conversation_id)
        .values(first_response_at=sa.func.coalesce(conversation_t.c.first_response_at, sa.func.now()), ai_active=False)
    )
    await cancel_timer(conn, FIRST_RESPONSE, conversation_id)
    await cancel_timer(conn, AI_TAKEOVER, conversation_id)
    if row.ai_active:
        await _state_event(conn, row.team_id, conversation_id, False, None, "operator_replied", operator_id)


async def _state_event(
    conn: AsyncConnection,
    team_id: uuid.UUID | None,
    conversation_id: str,
    active: bool,
    paused: bool | None,
    reason: str,
    actor_id: uuid.UUID | None,
) -> None:
    data: dict[str, Any] = {"conversationId": conversation_id, "aiActive": active, "reason": reason}
    if paused is not None:
        data["aiPaused"] = paused
    data["actorId"] = str(actor_id) if actor_id else None
    await record_event(conn, "ai.state_changed", team_id=team_id, conversation_id=conversation_id, data=data)


async def control_as_member(conn: AsyncConnection, principal: Principal, conversation_id: str, action: str) -> AiState:
    """``control`` by a member of the conversation's team; to anyone else the conversation does not exist."""
    row = (
        await conn.execute(sa.select(conversation_t.c.team_id).where(conversation_t.c.id == conversation_id))
    ).first()
    if row is None:
        raise NotFound("Conversation not found")
    requires_team_member(principal, row.team_id)
    return await control(conn, conversation_id, action, actor_id=principal.operator_id)


async def control(conn: AsyncConnection, conversation_id: str, action: str, *, actor_id: uuid.UUID) -> AiState:
    """An operator's AI control: ``pause``, ``resume``, ``handover`` (AI answers now) or ``takeback``."""
    row = (
        await conn.execute(
            sa.select(
                conversation_t.c.team_id,
                conversation_t.c.status,
                conversation_t.c.ai_active,
                conversation_t.c.ai_paused,
                team_t.c.ai_enabled,
            )
            .select_from(conversation_t.outerjoin(team_t, team_t.c.id == conversation_t.c.team_id))
            .where(conversation_t.c.id == conversation_id)
            .with_for_update(of=conversation_t)
        )
    ).first()
    if row is None:
        raise NotFound("Conversation not found")
    active, paused = row.ai_active, row.ai_paused
    if action == "pause":
        active, paused = False, True
        await cancel_timer(conn, AI_TAKEOVER, conversation_id)
    elif action == "resume":
        paused = False
    elif action == "takeback":
        active = False
        await cancel_timer(conn, AI_TAKEOVER, conversation_id)
    else:
        if row.status == "closed":
            raise Conflict("The conversation is closed")
        if not row.ai_enabled:
            raise Conflict("AI is not enabled for this conversation's team")
        active, paused = True, False
        # Due now: the AI answers the visitor's waiting message at once, and each later one.
        await schedule_timer(conn, AI_TAKEOVER, conversation_id, datetime.now(UTC))
        await record_event(
            conn,
            "ai.takeover",
            team_id=row.team_id,
            conversation_id=conversation_id,
            data={"conversationId": conversation_id, "reason": "handover", "actorId": str(actor_id)},
        )
    await conn.execute(
        sa.update(conversation_t)
        .where(conversation_t.c.id == conversation_id)
        .values(ai_active=active, ai_paused=paused)
    )
    if (active, paused) != (row.ai_active, row.ai_paused):
        await _state_event(conn, row.team_id, conversation_id, active, paused, action, actor_id)
    return AiState(conversation_id, active, paused)


async def arm_after_routing(conn: AsyncConnection, conversation_id: str) -> None:
    """Once a new conversation has its team, start the AI timer for its unanswered visitor message (if AI applies):
    after the team's delay, or at once while the team is closed and answers outside its hours with the AI."""
    row = (
        await conn.execute(
            sa.select(
                conversation_t.c.last_visitor_message_at,
                team_t.c.ai_takeover_delay_seconds,
                team_t.c.business_hours,
                team_t.c.outside_hours,
            )
            .select_from(conversation_t.join(team_t, team_t.c.id == conversation_t.c.team_id))
            .where(
                conversation_t.c.id == conversation_id,
                team_t.c.ai_enabled,
                sa.not_(conversation_t.c.ai_paused),
                conversation_t.c.first_response_at.is_(None),
                conversation_t.c.last_visitor_message_at.is_not(None),
            )
        )
    ).first()
    if row is not None:
        due = row.last_visitor_message_at + timedelta(seconds=row.ai_takeover_delay_seconds)
        if row.outside_hours == "ai" and not calendar.is_open(schedule_of(row.business_hours), clock.now()):
            due = datetime.now(UTC)  # the team is closed and lets the AI answer: nobody is coming
        await schedule_timer(conn, AI_TAKEOVER, conversation_id, due)


# Who wrote conversation ``c``'s latest message: the AI answers only while it is the visitor.
_LAST_SENDER = (
    "(SELECT m.sender FROM message m WHERE m.conversation_id = c.id AND m.deleted_at IS NULL "
    "ORDER BY m.seq DESC LIMIT 1)"
)
AI_REPLY = "ai_reply"  # the outbox kind of an AI reply owed to a visitor (``service.ai.delivery`` sends it)


@dataclass(frozen=True)
class Takeover:
    """An AI reply owed after the firing transaction commits: its outbox row, to enqueue once committed."""

    conversation_id: str
    outbox_id: int


async def take_over(conn: AsyncConnection, conversation_id: str, message_id: str) -> Takeover | None:
    """In the firing transaction: AI mode on, if AI still applies and the visitor's last message waits for an answer,
    and the reply owed as an outbox row, so it is sent at least once, and once only: as ``message_id``."""
    row = (
        await conn.execute(
            sa.text(
                "SELECT c.team_id, c.ai_active, c.ai_paused, c.status, t.ai_enabled, "
                f"{_LAST_SENDER} AS last_sender "
                "FROM conversation c LEFT JOIN team t ON t.id = c.team_id WHERE c.id = :id FOR UPDATE OF c"
            ),
            {"id": conversation_id},
        )
    ).first()
    if row is None or row.status == "closed" or not row.ai_enabled or row.ai_paused or row.last_sender != "visitor":
        return None
    if not row.ai_active:
        await conn.execute(
            sa.update(conversation_t).where(conversation_t.c.id == conversation_id).values(ai_active=True)
        )
        await record_event(
            conn,
            "ai.takeover",
            team_id=row.team_id,
            conversation_id=conversation_id,
            data={"conversationId": conversation_id, "reason": "timeout"},
        )
    payload = {
        "conversationId": conversation_id,
        "messageId": message_id,
        # The widget hears of the takeover with the AI's first reply, never before: a failing AI shows nothing.
        "announce": not row.ai_active,
        "firedAt": datetime.now(UTC).isoformat(),
    }
    outbox_id = await outbox.add(conn, AI_REPLY, payload, dedupe_key=f"ai:{message_id}")
    return Takeover(conversation_id, outbox_id)


async def still_owed(conn: AsyncConnection, conversation_id: str) -> bool:
    """Whether the AI should still answer: AI mode on, not paused, open, and the visitor's message the last one."""
    row = (
        await conn.execute(
            sa.text(
                "SELECT c.ai_active AND NOT c.ai_paused AND c.status <> 'closed' "
                f"AND {_LAST_SENDER} = 'visitor' AS owed FROM conversation c WHERE c.id = :id"
            ),
            {"id": conversation_id},
        )
    ).first()
    return bool(row and row.owed)


async def hand_back(conn: AsyncConnection, conversation_id: str, *, attempts: int, error: str) -> bool:
    """The AI could not answer: the conversation is the team's humans' again (AI paused for it, a queued one
    moved ahead of its priority), the team hears of it (``ai.handed_back``) and its leads are told (stream, bridge
    DM, push: ``tell_leads``). False if AI mode had ended."""
    row = (
        await conn.execute(
            sa.select(conversation_t.c.team_id, conversation_t.c.ai_active, conversation_t.c.status)
            .where(conversation_t.c.id == conversation_id)
            .with_for_update()
        )
    ).first()
    if row is None or not row.ai_active:
        return False
    queued = row.status == "queued"
    await conn.execute(
        sa.update(conversation_t)
        .where(conversation_t.c.id == conversation_id)
        .values(
            ai_active=False,
            ai_paused=True,
            priority=conversation_t.c.priority + 1 if queued else conversation_t.c.priority,
        )
    )
    await _state_event(conn, row.team_id, conversation_id, False, True, "ai_failed", None)
    await record_event(
        conn,
        "ai.handed_back",
        team_id=row.team_id,
        conversation_id=conversation_id,
        data={"conversationId": conversation_id, "attempts": attempts, "error": error, "requeuedAhead": queued},
    )
    if row.team_id is not None:
        await tell_leads(conn, row.team_id, conversation_id, reason="ai_handed_back", data={"attempts": attempts})
    return True


async def ai_context(engine: AsyncEngine, conversation_id: str, limit: int) -> tuple[str | None, list[Message]]:
    """The team's system prompt and the latest ``limit`` messages, oldest first."""
    async with engine.connect() as conn:
        prompt = await conn.scalar(
            sa.select(team_t.c.ai_system_prompt)
            .select_from(conversation_t.join(team_t, team_t.c.id == conversation_t.c.team_id))
            .where(conversation_t.c.id == conversation_id)
        )
        rows = (
            await conn.execute(
                sa.select(message_t.c.id, message_t.c.sender, message_t.c.content, message_t.c.created_at)
                .where(message_t.c.conversation_id == conversation_id, message_t.c.deleted_at.is_(None))
                .order_by(message_t.c.seq.desc())
                .limit(limit)
            )
        ).all()
    messages = [
        Message(id=r.id, session_id=conversation_id, content=r.content, sender=Sender(r.sender), timestamp=r.created_at)
        for r in reversed(rows)
    ]
    return prompt, messages


async def respond(
    pocketping: AiSender,
    provider: AIProvider,
    conversation_id: str,
    *,
    message_id: str,
    announce: bool,
    context_messages: int,
    vendor_seconds: float,
) -> Message:
    """Write the AI's reply with the team prompt and recent messages (the vendor cut off after ``vendor_seconds``),
    and deliver it to the visitor as sender ``ai``."""
    prompt, messages = await ai_context(pocketping.engine, conversation_id, context_messages)
    async with asyncio.timeout(vendor_seconds):
        content = await provider.generate_response(messages, prompt)
    if not content.strip():
        raise ValueError("The AI provider answered with no text")
    # Storage records the message.created event with the message itself.
    return await pocketping.send_as_ai(
        conversation_id, content, message_id=message_id, takeover_reason="timeout" if announce else None
    )
