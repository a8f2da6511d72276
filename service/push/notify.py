"""Push notifications driven by domain events: one outbox row per (event, device), then one push each.

The worker's push relay reads the event table with a cursor of its own (``push``), as the bridge relay
does (``service/bridges/notify.py``), and turns these events into rows for each device of each operator
to tell:

- ``assigned``: a conversation assigned to them (not one they claimed);
- ``message``: a visitor's message in a conversation assigned to them;
- ``mention``: an @mention of them in an internal note;
- ``leads``: to each lead a ``leads.alerted`` event names (an SLA escalation, the AI handing back);
- ``queue``: to the team's leads, its queue longer than ``queue_alert_threshold`` (at most once per device
  per ``QUEUE_ALERT_QUIET_SECONDS``).

A row's dedupe key is its event (or quiet window) and device, so a second pass adds nothing, and a delivered
row is never sent again. At delivery the database is read again: nothing is pushed to an operator while a
foreground client of theirs is connected (a dashboard tab, an app in the foreground), nor for what has
changed since (a conversation reassigned, a queue drained). A dead token removes its device, without retry.
"""

from __future__ import annotations

import uuid
from typing import Any, ClassVar

import sqlalchemy as sa
import structlog
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from service import notices
from service.db.tables import device_t
from service.notices import QUEUE_ALERT_QUIET_SECONDS
from service.outbox import Delivery, Done
from service.presence.services import in_foreground
from service.push.devices import remove_dead
from service.push.senders import DeadToken, Device, NotConfigured, Push, PushSenders
from service.realtime.relay import OutboxRelay

log = structlog.get_logger(__name__)
PUSH = "push"  # the outbox kind
PUSH_CURSOR = "push"
# A push the platform keeps refusing (not a dead token: an outage, a bad key) is given up after this many tries.
MAX_ATTEMPTS = 10
MESSAGE_PREVIEW = 200

_FAN_OUT = sa.text(
    """
    WITH ev AS (
        SELECT id, kind, team_id, conversation_id, operator_ids, data, created_at FROM event WHERE id = ANY(:ids)
    ), work AS (
        SELECT id, 'assigned' AS action, conversation_id, team_id, (data ->> 'operatorId')::uuid AS operator_id,
               NULL AS ref, NULL::bigint AS quiet_window
        FROM ev
        -- An operator who claimed the conversation needs no telling.
        WHERE kind = 'conversation.assigned' AND data ->> 'reason' IS DISTINCT FROM 'claimed'
        UNION ALL
        SELECT ev.id, 'message', ev.conversation_id, ev.team_id, assignee.id, ev.data ->> 'messageId', NULL
        FROM ev CROSS JOIN LATERAL unnest(ev.operator_ids) AS assignee(id)
        WHERE ev.kind = 'message.created' AND ev.data ->> 'sender' = 'visitor'
        UNION ALL
        -- The operators an event names: those @mentioned in a note (ref: the note), the leads told (the reason).
        SELECT ev.id, CASE ev.kind WHEN 'note.created' THEN 'mention' ELSE 'leads' END, ev.conversation_id,
               ev.team_id, named.id, coalesce(ev.data ->> 'noteId', ev.data ->> 'reason'), NULL
        FROM ev CROSS JOIN LATERAL unnest(ev.operator_ids) AS named(id)
        WHERE ev.kind IN ('note.created', 'leads.alerted')
        UNION ALL
        SELECT ev.id, 'queue', NULL, ev.team_id, m.operator_id, NULL,
               floor(extract(epoch FROM ev.created_at) / :quiet)::bigint
        FROM ev
        JOIN team t ON t.id = ev.team_id
        JOIN team_member m ON m.team_id = ev.team_id AND m.role = 'lead'
        WHERE ev.kind = 'conversation.queued' AND t.queue_alert_threshold IS NOT NULL
          AND (SELECT count(*) FROM conversation c WHERE c.team_id = ev.team_id AND c.status = 'queued')
              > t.queue_alert_threshold
    )
    INSERT INTO outbox (kind, payload, dedupe_key)
    SELECT 'push',
           jsonb_build_object('action', w.action, 'deviceId', d.id, 'operatorId', w.operator_id,
                              'conversationId', w.conversation_id, 'teamId', w.team_id, 'ref', w.ref),
           CASE WHEN w.action = 'queue' THEN 'push:queue:' || w.team_id || ':' || w.quiet_window || ':' || d.id
                ELSE 'push:' || w.id || ':' || d.id END
    FROM work w JOIN push_device d ON d.operator_id = w.operator_id
    ORDER BY w.id, d.id
    ON CONFLICT (dedupe_key) DO NOTHING
    RETURNING id
    """
)


class PushRelay(OutboxRelay):
    """Reads new events into push outbox rows, one per device to tell, with the ``push`` cursor."""

    cursor = PUSH_CURSOR
    statement = _FAN_OUT
    params: ClassVar[dict[str, Any]] = {"quiet": QUEUE_ALERT_QUIET_SECONDS}


async def deliver(engine: AsyncEngine, senders: PushSenders, delivery: Delivery) -> Done:
    """Do one push outbox row; returns what happened (``sent``, ``suppressed``, ``stale``, ``dead_token``, ...)."""
    payload = delivery.payload
    async with engine.connect() as conn:
        device = await _device(conn, payload)
        if device is None:
            return Done("no_device")  # removed, or now another operator's
        if await in_foreground(conn, uuid.UUID(payload["operatorId"])):
            return Done("suppressed")
        push = await _push(conn, payload)
    if push is None:
        return Done("stale")
    try:
        status = await senders.send(device, push)
    except DeadToken as dead:
        async with engine.begin() as conn:
            await remove_dead(conn, device.id)
        log.info("push device removed: dead token", device_id=str(device.id), platform=device.platform)
        return Done("dead_token", dead.status_code)
    except NotConfigured as exc:
        log.warning("push not sent", platform=device.platform, reason=str(exc))
        return Done("not_configured")
    # Other failures are retried by the outbox rule; its kind gives the row up after MAX_ATTEMPTS tries.
    return Done("sent", status)


async def _device(conn: AsyncConnection, payload: dict[str, Any]) -> Device | None:
    row = (
        await conn.execute(
            sa.select(device_t).where(
                device_t.c.id == uuid.UUID(payload["deviceId"]),
                device_t.c.operator_id == uuid.UUID(payload["operatorId"]),
            )
        )
    ).first()
    return None if row is None else Device(row.id, row.platform, row.token, row.keys, row.app_id)


async def _push(conn: AsyncConnection, payload: dict[str, Any]) -> Push | None:
    """The notification, as things are now; None when it no longer holds (reassigned, queue drained)."""
    action, team_id = payload["action"], payload["teamId"]
    if action == "queue":
        text = await notices.queue_alert(conn, uuid.UUID(team_id))
        if text is None:
            return None
        title, _, body = text.partition(": ")
        return Push(title, body, f"queue-{team_id}", {"type": "queue", "teamId": team_id})
    conversation = await notices.conversation(conn, payload["conversationId"])
    if conversation is None or str(conversation.team_id) != team_id:
        return None
    data = {"type": action, "conversationId": conversation.id, "teamId": team_id}
    mine = conversation.status == "assigned" and str(conversation.assignee_id) == payload["operatorId"]
    if action == "assigned":
        if not mine:
            return None
        return Push(notices.ASSIGNED_TITLE, " · ".join(notices.summary_lines(conversation)), conversation.id, data)
    if action == "message":
        content = await conn.scalar(sa.text("SELECT content FROM message WHERE id = :id"), {"id": payload["ref"]})
        if not mine or content is None:
            return None
        return Push(notices.visitor_name(conversation), content[:MESSAGE_PREVIEW], conversation.id, data)
    if action == "leads":
        title = notices.lead_alert_title(payload["ref"])
        return Push(title, " · ".join(notices.summary_lines(conversation)), conversation.id, data)
    note = await notices.note(conn, payload["ref"])
    return Push(notices.mention_title(note), note.body[:MESSAGE_PREVIEW], conversation.id, data)
