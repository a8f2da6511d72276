"""arq jobs: primitives in, idempotent, and each re-checks PostgreSQL before acting."""

from __future__ import annotations

import uuid
from typing import Any

import sqlalchemy as sa
import structlog
from sqlalchemy.ext.asyncio import AsyncConnection

from service.ai import services as ai
from service.bridges import notify as bridges
from service.conversations.outbox import WIDGET_MESSAGE, enqueue_delivery
from service.db.tables import outbox_t
from service.db.transactions import in_transaction
from service.flows import timeouts
from service.gateway.availability import AvailabilityRelay
from service.presence import services as presence
from service.queue import enqueue_drain, enqueue_route, enqueue_trigger
from service.realtime.relay import EventRelay
from service.routing import placement, queries
from service.timers import services as timers
from service.webhooks import delivery as webhooks

log = structlog.get_logger(__name__)

# A routing job that has not run this long after the visitor asked is presumed lost (Redis
# restarted, enqueue failed) and is enqueued again; versioned job ids make that harmless.
LOST_JOB_AFTER_SECONDS = 5.0


async def route_conversation(ctx: dict[str, Any], *, conversation_id: str, revision: int, trigger: str) -> str:
    """Route one conversation if ``revision`` is still current; otherwise do nothing."""

    async def work(conn: AsyncConnection) -> placement.RouteOutcome:
        outcome = await placement.route_conversation(conn, conversation_id, revision, trigger)
        if outcome.outcome != "stale":
            await ai.arm_after_routing(conn, conversation_id)
        return outcome

    async with timers.triggers(ctx["redis"]):
        outcome = await in_transaction(ctx["engine"], work)
    log.info("routed", conversation_id=conversation_id, revision=revision, outcome=outcome.outcome)
    return outcome.outcome


async def drain_team_queue(ctx: dict[str, Any], *, team_id: str, trigger: str) -> int:
    """Assign the team's queued conversations while members have room; a drain with nothing to do does nothing."""
    team = uuid.UUID(team_id)
    async with timers.triggers(ctx["redis"]):
        return await in_transaction(ctx["engine"], lambda conn: placement.drain_team_queue(conn, team, trigger))


async def fire_timer(ctx: dict[str, Any], *, timer_id: int, revision: int) -> str:
    """Fire one timer revision if it is still pending (a stale, duplicated or retried trigger does nothing)."""
    async with timers.triggers(ctx["redis"]):
        outcome, takeover = await in_transaction(ctx["engine"], lambda conn: timeouts.fire(conn, timer_id, revision))
    if takeover is not None:
        # After the commit: the provider may take seconds, and no lock is held meanwhile. The
        # timer has fired, so a retry would do nothing: a failed reply is logged, not retried.
        try:
            await ai.respond(
                ctx["pocketping"],
                ctx["ai_provider"],
                takeover,
                message_id=f"ai-{timer_id}-{revision}",
                context_messages=ctx["settings"].ai_context_messages,
            )
        except Exception:
            log.warning("AI reply failed", conversation_id=takeover.conversation_id, exc_info=True)
            return "ai_failed"
    log.info("timer fired", timer_id=timer_id, revision=revision, outcome=outcome)
    return outcome


async def deliver_outbox(ctx: dict[str, Any], *, outbox_id: int) -> str:
    """Deliver one outbox row once; a duplicate or retried job finds it delivered, locked or leased and stops."""
    async with ctx["engine"].begin() as conn:
        row = (
            await conn.execute(
                sa.select(outbox_t.c.kind, outbox_t.c.payload, outbox_t.c.attempts)
                .where(
                    outbox_t.c.id == outbox_id,
                    outbox_t.c.delivered_at.is_(None),
                    # A duplicate job (the sweep's, a second relay's) must not cut a retry's backoff short.
                    outbox_t.c.available_at <= sa.func.now(),
                )
                .with_for_update(skip_locked=True)
            )
        ).first()
        if row is None:
            return "skipped"
        if row.kind == bridges.BRIDGE:
            return await _deliver_bridge(ctx, conn, outbox_id, row)
        if row.kind != webhooks.WEBHOOK:
            return await _deliver_widget_message(ctx, conn, outbox_id, row)
        target: webhooks.Target | None = None
        error: Exception | None = None
        try:
            target = await webhooks.lease(conn, ctx["settings"], outbox_id)
        except webhooks.DeliveryFailed as exc:
            error = exc
    # Outside any transaction: a slow receiver holds no database connection.
    status_code = None
    if target is not None:
        try:
            status_code = await webhooks.send(ctx["http"], ctx["settings"], outbox_id, row.payload, target)
        except webhooks.DeliveryFailed as exc:
            error = exc
    retry_in = webhooks.retry_delay(ctx["settings"], row.attempts + 1)
    async with ctx["engine"].begin() as conn:
        if error is None:
            await _mark_delivered(conn, outbox_id, status_code)
            return "delivered"
        await _mark_failed(conn, outbox_id, error, retry_in)
    # After the commit, so the retry finds the row updated; if this is lost, the sweep retries.
    await ctx["redis"].enqueue_job(
        "deliver_outbox", outbox_id=outbox_id, _job_id=f"outbox:{outbox_id}:{row.attempts + 1}", _defer_by=retry_in
    )
    return "failed"


async def _deliver_widget_message(ctx: dict[str, Any], conn: Any, outbox_id: int, row: Any) -> str:
    try:
        if row.kind != WIDGET_MESSAGE:
            raise ValueError(f"unknown outbox kind {row.kind!r}")
        await _send_widget_message(ctx, row.payload)
    except Exception as exc:
        # Exponential backoff, capped at about four minutes; the sweep re-enqueues it.
        await _mark_failed(conn, outbox_id, exc, float(2 ** min(row.attempts, 8)))
        return "failed"
    await _mark_delivered(conn, outbox_id, None)
    return "delivered"


async def _deliver_bridge(ctx: dict[str, Any], conn: Any, outbox_id: int, row: Any) -> str:
    try:
        outcome = await bridges.deliver(ctx["engine"], ctx["team_bridge"], row.payload)
    except Exception as exc:
        if row.attempts + 1 < bridges.MAX_ATTEMPTS:
            await _mark_failed(conn, outbox_id, exc, float(2 ** min(row.attempts, 8)))
            return "failed"
        log.warning("bridge work given up", outbox_id=outbox_id, action=row.payload.get("action"))
        outcome = "given_up"
    await _mark_delivered(conn, outbox_id, None)
    return outcome


async def _mark_delivered(conn: Any, outbox_id: int, status_code: int | None) -> None:
    await conn.execute(
        sa.update(outbox_t)
        .where(outbox_t.c.id == outbox_id)
        .values(delivered_at=sa.func.now(), attempts=outbox_t.c.attempts + 1, status_code=status_code)
    )


async def _mark_failed(conn: Any, outbox_id: int, exc: Exception, retry_in: float) -> None:
    await conn.execute(
        sa.update(outbox_t)
        .where(outbox_t.c.id == outbox_id)
        .values(
            attempts=outbox_t.c.attempts + 1,
            last_error=str(exc)[:500] if isinstance(exc, webhooks.DeliveryFailed) else repr(exc)[:500],
            status_code=getattr(exc, "status_code", None),
            available_at=sa.func.now() + sa.func.make_interval(0, 0, 0, 0, 0, 0, retry_in),
        )
    )
    log.warning("outbox delivery failed", outbox_id=outbox_id, error=str(exc)[:200])


async def _send_widget_message(ctx: dict[str, Any], payload: dict[str, Any]) -> None:
    # The message id was fixed when the row was written: a re-delivery after a crash
    # re-sends the same message, which storage upserts and the widget de-duplicates.
    await ctx["pocketping"].send_as_operator(
        payload["conversationId"],
        payload["content"],
        operator_id=uuid.UUID(payload["operatorId"]) if payload["operatorId"] else None,
        operator_name=payload["operatorName"],
        message_id=payload["messageId"],
    )


async def sweep(ctx: dict[str, Any]) -> dict[str, int]:
    """Re-enqueue work whose trigger was lost (unrouted conversations, team queues, outbox rows, overdue timers);
    set silent heartbeating operators offline."""
    async with timers.triggers(ctx["redis"]):
        expired = await in_transaction(
            ctx["engine"],
            lambda conn: presence.expire_heartbeats(conn, ctx["settings"].presence_heartbeat_timeout_seconds),
        )
    async with ctx["engine"].connect() as conn:
        overdue = await timers.due_before(conn, 0)
        unrouted = await queries.unrouted_conversations(conn, LOST_JOB_AFTER_SECONDS)
        waiting_teams = await queries.teams_with_queue(conn)
        pending = (
            (
                await conn.execute(
                    sa.select(outbox_t.c.id)
                    .where(outbox_t.c.delivered_at.is_(None), outbox_t.c.available_at <= sa.func.now())
                    .limit(1000)
                )
            )
            .scalars()
            .all()
        )
    for conversation_id, revision in unrouted:
        await enqueue_route(ctx["redis"], conversation_id, revision, trigger="sweep")
    for team_id in waiting_teams:
        await enqueue_drain(ctx["redis"], team_id, trigger="sweep")
    for outbox_id in pending:
        await enqueue_delivery(ctx["redis"], outbox_id)
    # A trigger already waiting keeps its job id, so this only restores the lost ones.
    for trigger in overdue:
        await enqueue_trigger(ctx["redis"], trigger)
    # One pass of each relay too, in case the worker's loop is stuck (and so burst workers relay).
    await EventRelay(ctx["engine"], ctx["redis"], ctx["settings"]).step()
    await bridges.BridgeRelay(ctx["engine"], ctx["redis"], ctx["settings"]).step()
    await AvailabilityRelay(ctx["engine"], ctx["redis"], ctx["settings"], ctx["pocketping"]).step()
    return {
        "unrouted": len(unrouted),
        "outbox": len(pending),
        "queues": len(waiting_teams),
        "timers": len(overdue),
        "expired": len(expired),
    }
