"""arq jobs: primitives in, idempotent, and each re-checks PostgreSQL before acting."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Coroutine
from functools import partial, wraps
from typing import Any, TypeVar, cast

import structlog
from sqlalchemy.ext.asyncio import AsyncConnection

from service import metrics, outbox, queue, retention
from service.ai import delivery as ai_delivery
from service.ai import services as ai
from service.bridges import notify as bridges
from service.bridges import posts as bridge_posts
from service.conversations.delivery import WIDGET_MESSAGE, deliver_widget_message
from service.csat.services import RatingAsk
from service.db.transactions import in_transaction
from service.files import services as files
from service.flows import timeouts
from service.gateway.availability import AvailabilityRelay
from service.presence import services as presence
from service.push import notify as push
from service.queue import enqueue_delivery, enqueue_drain, enqueue_notices, enqueue_route, enqueue_trigger
from service.realtime.relay import EventRelay
from service.routing import placement, queries, queue_notices
from service.sites import callbacks as site_callbacks
from service.timers import services as timers
from service.webhooks import delivery as webhooks

log = structlog.get_logger(__name__)

# A routing job that has not run this long after the visitor asked is presumed lost (Redis
# restarted, enqueue failed, its worker killed) and is enqueued again, unless it still waits in the
# queue; versioned job ids and the database re-check make that harmless.
LOST_JOB_AFTER_SECONDS = 2.0

Job = TypeVar("Job", bound=Callable[..., Coroutine[Any, Any, Any]])


def logged(job: Job) -> Job:
    """Every line the job logs carries ``job`` (its name) and ``conversation_id`` when it is given one."""

    @wraps(job)
    async def run(ctx: dict[str, Any], **kwargs: Any) -> Any:
        fields = {"job": job.__name__}
        if "conversation_id" in kwargs:
            fields["conversation_id"] = kwargs["conversation_id"]
        # arq runs each job in a task of its own; clearing still keeps a job's fields out of anything after it.
        structlog.contextvars.clear_contextvars()
        structlog.contextvars.bind_contextvars(**fields)
        try:
            return await job(ctx, **kwargs)
        finally:
            structlog.contextvars.clear_contextvars()

    return cast(Job, run)


@logged
async def route_conversation(ctx: dict[str, Any], *, conversation_id: str, revision: int, trigger: str) -> str:
    """Route one conversation if ``revision`` is still current; otherwise do nothing."""

    async def work(conn: AsyncConnection) -> placement.RouteOutcome:
        outcome = await placement.route_conversation(conn, conversation_id, revision, trigger)
        if outcome.outcome != "stale":
            await ai.arm_after_routing(conn, conversation_id)
        return outcome

    started = time.perf_counter()
    async with timers.triggers(ctx["redis"]):
        outcome = await in_transaction(ctx["engine"], work)
    metrics.observe_routing(outcome.outcome, time.perf_counter() - started)
    if outcome.drain and outcome.team_id is not None:
        await enqueue_drain(ctx["redis"], outcome.team_id, trigger="queue_order")
    if outcome.outcome == "queued" and outcome.team_id is not None:
        await _tell_positions(ctx, outcome.team_id)
    log.info("routed", conversation_id=conversation_id, revision=revision, outcome=outcome.outcome)
    return outcome.outcome


@logged
async def drain_team_queue(ctx: dict[str, Any], *, team_id: str, trigger: str) -> int:
    """Assign the team's queued conversations while members have room; a drain with nothing to do does nothing."""
    team = uuid.UUID(team_id)
    async with timers.triggers(ctx["redis"]):
        assigned = await in_transaction(ctx["engine"], lambda conn: placement.drain_team_queue(conn, team, trigger))
    if assigned:
        # Those still waiting moved up.
        await _tell_positions(ctx, team)
    return assigned


async def _tell_positions(ctx: dict[str, Any], team_id: uuid.UUID) -> None:
    """A notices job for the team, if it tells its queued visitors their place (no job to find out it does not)."""
    async with ctx["engine"].connect() as conn:
        telling = await queue_notices.enabled(conn, team_id)
    if telling:
        await enqueue_notices(ctx["redis"], team_id)


@logged
async def tell_queue_positions(ctx: dict[str, Any], *, team_id: str) -> int:
    """Tell the team's queued visitors whose estimated wait moved by a minute or more; how many were told."""
    team = uuid.UUID(team_id)
    told = await in_transaction(ctx["engine"], lambda conn: queue_notices.refresh(conn, team))
    await ctx["pocketping"].show_system_messages(told.created, told.edited)
    return len(told.created) + len(told.edited)


@logged
async def fire_timer(ctx: dict[str, Any], *, timer_id: int, revision: int) -> str:
    """Fire this timer revision if still pending, and with it every other due timer no transaction holds (a stale,
    duplicated or retried trigger, or one whose timer a batch fired, reads one row and does nothing)."""
    settings = ctx["settings"]
    async with timers.triggers(ctx["redis"]):
        # One batch at a time in this worker: triggers due together wait for the first one's, then find theirs fired.
        async with ctx["timer_batches"]:
            batch = await timeouts.fire_batch(
                ctx["engine"],
                timer_id,
                revision,
                limit=settings.timer_batch_size,
                sla_at_risk_share=settings.sla_at_risk_share,
            )
        owed = [fired.owed for fired in batch.fired]
        if batch.own is None:
            # Another transaction held its row or its conversation: alone now, waiting for them as a single firing does.
            outcome, alone = await in_transaction(
                ctx["engine"],
                lambda conn: timeouts.fire(conn, timer_id, revision, sla_at_risk_share=settings.sla_at_risk_share),
            )
            owed.append(alone)
        else:
            outcome = batch.own
    # Their triggers would only find them fired: off the queue, so this worker's throughput is timers', not jobs'.
    name = ctx["redis"].default_queue_name
    others = [queue.timer_job_id(name, f.timer_id, f.revision) for f in batch.fired if f.timer_id != timer_id]
    try:
        await queue.drop_waiting(ctx["redis"], others)
    except Exception:
        log.warning("fired timers' triggers not dropped; they will find them fired", exc_info=True)
    for what in owed:
        try:
            await _deliver_owed(ctx, what)
        except Exception:
            # One visitor's follow-up failing must not keep the batch's others from theirs.
            log.warning("timer follow-up failed", exc_info=True)
    log.info(
        "timer fired",
        timer_id=timer_id,
        revision=revision,
        outcome=outcome,
        batch=len(batch.fired),
        skipped=len(batch.skipped),
        failed=len(batch.failed),
    )
    if batch.own_error is not None:
        # The others committed; this one stays pending (the sweep re-enqueues it) and the job is seen to fail.
        raise batch.own_error
    return outcome


async def _deliver_owed(ctx: dict[str, Any], owed: RatingAsk | ai.Takeover | None) -> None:
    """After the commit: what a fired timer owes its visitor."""
    if isinstance(owed, RatingAsk):
        # At most once: a visitor not connected now is not asked.
        await ctx["pocketping"].ask_for_rating(owed.conversation_id, owed.requested_at)
    elif owed is not None:
        # The AI reply is outbox work (retried, sent once); if this enqueue is lost, the sweep finds the row.
        await enqueue_delivery(ctx["redis"], owed.outbox_id)


@logged
async def deliver_outbox(ctx: dict[str, Any], *, outbox_id: int) -> str:
    """Deliver one outbox row once; a duplicate or retried job finds it delivered, leased or locked and stops."""
    return await outbox.deliver(ctx["engine"], ctx["redis"], ctx["settings"], outbox_id, _outbox_kinds(ctx))


def _outbox_kinds(ctx: dict[str, Any]) -> dict[str, outbox.Kind]:
    # Each kind's sender is its domain's; the resources it needs are read only when a row of that kind is sent.
    return {
        WIDGET_MESSAGE: outbox.Kind(lambda delivery: deliver_widget_message(ctx["pocketping"], delivery)),
        webhooks.WEBHOOK: webhooks.outbox_kind(
            ctx["settings"], lambda delivery: webhooks.deliver(ctx["engine"], ctx["http"], ctx["settings"], delivery)
        ),
        bridges.BRIDGE: outbox.Kind(
            lambda delivery: bridges.deliver(ctx["engine"], ctx["team_bridge"], delivery),
            max_attempts=bridges.MAX_ATTEMPTS,
        ),
        bridge_posts.BRIDGE_POST: outbox.Kind(
            lambda delivery: bridge_posts.deliver(ctx["engine"], ctx["redis"], ctx["team_bridge"], delivery),
            max_attempts=bridge_posts.MAX_ATTEMPTS,
        ),
        ai.AI_REPLY: outbox.Kind(
            lambda delivery: ai_delivery.deliver(ctx["pocketping"], ctx["ai_provider"], ctx["settings"], delivery),
            # A try is cut off at the hand-back limit; beyond it the row may be leased again.
            lease_seconds=ctx["settings"].ai_handback_seconds + outbox.LEASE_SECONDS,
        ),
        push.PUSH: outbox.Kind(
            lambda delivery: push.deliver(ctx["engine"], ctx["push"], delivery), max_attempts=push.MAX_ATTEMPTS
        ),
        site_callbacks.SITE_CALLBACK: site_callbacks.outbox_kind(
            ctx["settings"],
            lambda delivery: site_callbacks.deliver(ctx["engine"], ctx["http"], ctx["settings"], delivery),
        ),
    }


@logged
async def sweep(ctx: dict[str, Any]) -> dict[str, int]:
    """Re-enqueue work PostgreSQL shows undone whose job is not waiting in the queue (unrouted conversations, due
    outbox rows, overdue timers: a lost trigger, or a killed worker's job), drain every team with a queue; end
    silent presence clients and set idle ones away; delete uploads never finished (or never sent) past their time."""
    async with ctx["engine"].connect() as conn:
        swept = await presence.due_for_sweep(conn)
    async with timers.triggers(ctx["redis"]):
        for operator_id in swept:
            # One transaction per operator, as every presence change: their row, then their teams' locks.
            await in_transaction(ctx["engine"], partial(presence.sweep_operator, operator_id=operator_id))
    async with ctx["engine"].connect() as conn:
        overdue = await timers.due_before(conn, 0)
        unrouted = await queries.unrouted_conversations(conn, LOST_JOB_AFTER_SECONDS)
        waiting_teams = await queries.teams_with_queue(conn)
        telling_teams = await queue_notices.teams_with_queue(conn)
        pending = await outbox.due(conn)
    arq, name = ctx["redis"], ctx["redis"].default_queue_name
    # This sweep's generation: a copy it enqueues has a job id no earlier job (a dead one included) holds.
    attempt = f"sweep{int(time.time())}"
    routes = await _not_waiting(arq, unrouted, lambda u: queue.route_job_id(name, *u))
    for conversation_id, revision in routes:
        await enqueue_route(arq, conversation_id, revision, trigger="sweep", attempt=attempt)
    for team_id in waiting_teams:
        await enqueue_drain(arq, team_id, trigger="sweep")
    # Estimates move with time and with claims too; each run writes only what moved by a minute or more.
    for team_id in telling_teams:
        await enqueue_notices(arq, team_id)
    deliveries = await _not_waiting(arq, pending, lambda p: queue.outbox_job_id(name, *p))
    for outbox_id, _ in deliveries:
        await enqueue_delivery(arq, outbox_id, attempt=attempt)
    fires = await _not_waiting(arq, overdue, lambda t: queue.timer_job_id(name, t.timer_id, t.revision))
    for trigger in fires:
        await enqueue_trigger(arq, trigger, attempt=attempt)
    # One pass of each relay too, in case the worker's loop is stuck (and so burst workers relay).
    await EventRelay(ctx["engine"], arq, ctx["settings"]).step()
    await bridges.BridgeRelay(ctx["engine"], arq, ctx["settings"]).step()
    await push.PushRelay(ctx["engine"], arq, ctx["settings"]).step()
    await AvailabilityRelay(ctx["engine"], arq, ctx["settings"], ctx["pocketping"]).step()
    uploads = await files.sweep(ctx["engine"], ctx["files"])
    return {
        "attachments": uploads,
        "unrouted": len(routes),
        "outbox": len(deliveries),
        "queues": len(waiting_teams),
        "timers": len(fires),
        "presence": len(swept),
    }


@logged
async def prune_old_rows(ctx: dict[str, Any]) -> dict[str, int]:
    """Delete what is older than ``RETENTION_DAYS``; events stay until every relay has read them."""
    cursors = [EventRelay.cursor, bridges.BridgeRelay.cursor, AvailabilityRelay.cursor, site_callbacks.SITE_CURSOR]
    return await retention.prune(ctx["engine"], ctx["settings"].retention_days, cursors)


async def _not_waiting(arq: Any, work: list[Any], job_id: Any) -> list[Any]:
    """The undone work whose usual job is not waiting in the queue (lost, or started by a worker that may be dead)."""
    flags = await queue.waiting(arq, [job_id(item) for item in work])
    return [item for item, is_waiting in zip(work, flags, strict=True) if not is_waiting]
