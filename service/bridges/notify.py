"""Bridge work driven by domain events: threads for routed conversations, and notifications.

The worker's bridge relay reads the event table with a cursor of its own (``bridges``) and
writes one outbox row per piece of work, whose dedupe key makes a second pass over the same
events add nothing; ``deliver_outbox`` then does it, with retries. So each happens once, and
survives a restart:

- ``threads``: a conversation queued, assigned or transferred in a team with bridges gets its
  thread in each of the team's chats (``TeamBridge.open_threads``);
- ``assigned``: the assignee hears of a new assignment (visitor, page, last message) in their
  linked direct chat, on each platform the team has enabled;
- ``mention``: an operator @mentioned in an internal note hears of it the same way;
- ``leads``: each lead a ``leads.alerted`` event names (an SLA escalation, the AI handing back) the same way;
- ``queue``: the team's channels hear when its queue is longer than the team's
  ``queue_alert_threshold``, at most once per platform per ``QUEUE_ALERT_QUIET_SECONDS``;
- ``webhook_disabled``: the team's channels hear that one of its webhook endpoints was disabled
  for failing (its leads enable it again).
"""

from __future__ import annotations

import uuid
from typing import Any, ClassVar

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from service import notices
from service.bridges.dispatch import TeamBridge
from service.bridges.outbound import BridgeUnavailable, send, send_direct, team_bridges
from service.notices import QUEUE_ALERT_QUIET_SECONDS
from service.outbox import Delivery, Done
from service.realtime.relay import OutboxRelay

BRIDGE = "bridge"  # the outbox kind
BRIDGE_CURSOR = "bridges"
# A notification the platform keeps refusing (a revoked token, a deleted chat) is given up after this many tries.
MAX_ATTEMPTS = 10

_FAN_OUT = sa.text(
    """
    WITH enabled AS (
        SELECT e.id, e.kind, e.team_id, e.conversation_id, e.operator_ids, e.data, e.created_at,
               b.key AS platform, t.queue_alert_threshold
        FROM event e
        JOIN team t ON t.id = e.team_id
        CROSS JOIN LATERAL jsonb_each(t.bridge_settings) AS b
        WHERE e.id = ANY(:ids) AND (b.value ->> 'enabled')::boolean
    ), work AS (
        SELECT DISTINCT ON (id) id,
               jsonb_build_object('action', 'threads', 'conversationId', conversation_id) AS payload,
               'bridge:threads:' || id AS dedupe_key
        FROM enabled
        WHERE kind IN ('conversation.queued', 'conversation.assigned', 'conversation.transferred')
        UNION ALL
        SELECT en.id,
               jsonb_build_object('action', 'assigned', 'conversationId', en.conversation_id, 'teamId', en.team_id,
                                  'operatorId', l.operator_id, 'platform', en.platform),
               'bridge:assigned:' || en.id || ':' || en.platform
        FROM enabled en
        JOIN bridge_link l ON l.operator_id = (en.data ->> 'operatorId')::uuid AND l.platform = en.platform
        -- An operator who claimed the conversation needs no telling.
        WHERE en.kind = 'conversation.assigned' AND en.data ->> 'reason' IS DISTINCT FROM 'claimed'
        UNION ALL
        -- The operators an event names: those @mentioned in a note, the leads told of a conversation.
        SELECT en.id,
               jsonb_build_object('action', told.action, 'conversationId', en.conversation_id, 'teamId', en.team_id,
                                  'operatorId', l.operator_id, 'platform', en.platform,
                                  'noteId', en.data ->> 'noteId', 'reason', en.data ->> 'reason'),
               'bridge:' || told.action || ':' || en.id || ':' || l.operator_id || ':' || en.platform
        FROM enabled en
        CROSS JOIN LATERAL (SELECT CASE en.kind WHEN 'note.created' THEN 'mention' ELSE 'leads' END AS action) told
        CROSS JOIN LATERAL unnest(en.operator_ids) AS named(operator_id)
        JOIN bridge_link l ON l.operator_id = named.operator_id AND l.platform = en.platform
        WHERE en.kind IN ('note.created', 'leads.alerted')
        UNION ALL
        SELECT en.id,
               jsonb_build_object('action', 'queue', 'teamId', en.team_id, 'platform', en.platform),
               'bridge:queue:' || en.team_id || ':' || en.platform || ':'
                   || floor(extract(epoch FROM en.created_at) / :quiet)::bigint
        FROM enabled en
        WHERE en.kind = 'conversation.queued' AND en.queue_alert_threshold IS NOT NULL
          AND (SELECT count(*) FROM conversation c WHERE c.team_id = en.team_id AND c.status = 'queued')
              > en.queue_alert_threshold
        UNION ALL
        SELECT en.id,
               jsonb_build_object('action', 'webhook_disabled', 'teamId', en.team_id, 'platform', en.platform,
                                  'url', en.data ->> 'url', 'reason', en.data ->> 'reason'),
               'bridge:webhook_disabled:' || en.id || ':' || en.platform
        FROM enabled en
        WHERE en.kind = 'webhook.disabled'
    )
    INSERT INTO outbox (kind, payload, dedupe_key)
    SELECT 'bridge', payload, dedupe_key FROM work ORDER BY id
    ON CONFLICT (dedupe_key) DO NOTHING
    RETURNING id
    """
)


class BridgeRelay(OutboxRelay):
    """Reads new events into bridge outbox rows (threads, notifications) with the ``bridges`` cursor."""

    cursor = BRIDGE_CURSOR
    statement = _FAN_OUT
    params: ClassVar[dict[str, Any]] = {"quiet": QUEUE_ALERT_QUIET_SECONDS}


# --- Delivery ----------------------------------------------------------------------------------------------------


async def deliver(engine: AsyncEngine, team_bridge: TeamBridge, delivery: Delivery) -> Done:
    """Do one bridge outbox row (its kind gives work the platforms keep refusing up after ``MAX_ATTEMPTS`` tries)."""
    return Done(await _work(engine, team_bridge, delivery.payload))


async def _work(engine: AsyncEngine, team_bridge: TeamBridge, payload: dict[str, Any]) -> str:
    """Do one piece of bridge work; returns what happened. Re-checks the database first: stale work is skipped."""
    action = payload["action"]
    if action == "threads":
        opened = await team_bridge.open_threads(payload["conversationId"])
        return "opened" if opened else "nothing"
    async with engine.begin() as conn:
        team_id = uuid.UUID(payload["teamId"])
        try:
            team = await team_bridges(conn, team_bridge.registry, team_id)
            if action == "queue":
                return await _queue_alert(conn, team, team_id, payload["platform"])
            if action == "webhook_disabled":
                text = f"Webhook disabled: {payload['url']}\n{payload['reason']}\nA team lead can enable it again."
                await send(team, payload["platform"], text)
                return "sent"
            conversation = await notices.conversation(conn, payload["conversationId"])
            if conversation is None or conversation.team_id != team_id:
                return "stale"
            operator_id = uuid.UUID(payload["operatorId"])
            if action == "assigned":
                if conversation.status != "assigned" or conversation.assignee_id != operator_id:
                    return "stale"
                text = "\n".join([notices.ASSIGNED_TITLE, *notices.summary_lines(conversation)])
            elif action == "leads":
                text = "\n".join([notices.lead_alert_title(payload["reason"]), *notices.summary_lines(conversation)])
            else:
                text = await _mention_text(conn, conversation, payload["noteId"])
            # A deep link to the conversation's dashboard page, under the site's path prefix.
            text += f"\nOpen: {team_bridge.registry.settings.base_url}/app/conversations/{conversation.id}"
            sent = await send_direct(conn, team, operator_id, payload["platform"], text)
        except BridgeUnavailable:
            return "disabled"
    return "sent" if sent else "unlinked"


async def _mention_text(conn: AsyncConnection, conversation: Any, note_id: str) -> str:
    note = await notices.note(conn, note_id)
    return "\n".join([notices.mention_title(note), *notices.summary_lines(conversation), f"Note: {note.body}"])


async def _queue_alert(conn: AsyncConnection, team: Any, team_id: uuid.UUID, platform: str) -> str:
    text = await notices.queue_alert(conn, team_id)
    if text is None:
        return "stale"
    await send(team, platform, text)
    return "sent"
