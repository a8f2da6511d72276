"""Reading conversations, replying as an operator (idempotently) and internal notes with mentions."""

from __future__ import annotations

import hashlib
import re
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, cast

import sqlalchemy as sa
from arq.connections import ArqRedis
from sqlalchemy.dialects.postgresql import ARRAY, aggregate_order_by, distinct_on
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from service.auth.principal import Principal, requires_team_member
from service.db.tables import conversation_t, member_t, message_t, note_t, operator_t, sla_clock_t, team_t
from service.db.transactions import in_transaction
from service.errors import Conflict, Forbidden, NotFound, field_malformed
from service.events import record_event
from service.files import services as files
from service.gateway.hub import SwitchboardPocketPing
from service.idempotency import advisory_lock, check_key
from service.pagination import decode_cursor, encode_cursor
from service.pagination import page as keyset_page
from service.routing.handoff import claim
from service.sites import callbacks as site_callbacks
from service.tags import services as tags
from service.teams import services as teams

MAX_PAGE = 100
# How long a repeated Idempotency-Key waits for the first request before a 409 asks to retry.
REPLY_LOCK_TIMEOUT_MS = 10_000
_LOCK_NOT_AVAILABLE = "55P03"


def _as_is(row: Any) -> Any:
    return row


def _timestamp(value: Any) -> datetime:
    try:
        instant = datetime.fromisoformat(str(value))
        # In UTC: an offset that moves year 1 (or 9999) across midnight is out of range, not a 500.
        return (instant if instant.tzinfo else instant.replace(tzinfo=UTC)).astimezone(UTC)
    except (ValueError, OverflowError):
        raise field_malformed("cursor", "use nextCursor from a previous page") from None


# --- Conversations ----------------------------------------------------------------------------------------------

assignee_o = operator_t.alias("assignee")
rated_o = operator_t.alias("rated_for")

# The conversation's SLA clocks, one primary-key range read per row: time left is the stored deadline minus now.
_SLA_CLOCKS = (
    sa.select(
        sa.func.jsonb_agg(
            aggregate_order_by(
                sa.func.jsonb_build_object(
                    "target",
                    sla_clock_t.c.target,
                    "started_at",
                    sla_clock_t.c.started_at,
                    "at_risk_at",
                    sla_clock_t.c.at_risk_at,
                    "due_at",
                    sla_clock_t.c.due_at,
                    "stopped_at",
                    sla_clock_t.c.stopped_at,
                    "seconds_left",
                    sa.case(
                        (
                            sla_clock_t.c.stopped_at.is_(None),
                            sa.func.floor(sa.extract("epoch", sla_clock_t.c.due_at - sa.func.now())),
                        )
                    ),
                    "at_risk",
                    sla_clock_t.c.at_risk_reported_at.is_not(None),
                    "breached",
                    sla_clock_t.c.breached_at.is_not(None),
                ),
                sla_clock_t.c.target,
            )
        )
    )
    .where(sla_clock_t.c.conversation_id == conversation_t.c.id)
    .scalar_subquery()
    .label("sla_clocks")
)
_CONVERSATION_COLUMNS = (
    conversation_t,
    team_t.c.name.label("team_name"),
    assignee_o.c.display_name.label("assignee_name"),
    rated_o.c.display_name.label("csat_operator_name"),
    _SLA_CLOCKS,
)


def _conversations() -> sa.Select[Any]:
    return sa.select(*_CONVERSATION_COLUMNS).select_from(
        conversation_t.outerjoin(team_t, team_t.c.id == conversation_t.c.team_id)
        .outerjoin(assignee_o, assignee_o.c.id == conversation_t.c.assignee_id)
        .outerjoin(rated_o, rated_o.c.id == conversation_t.c.csat_operator_id)
    )


def _csat_public(row: Any) -> dict[str, Any] | None:
    """The conversation's rating (the SDK's SessionCsat in ``csat``) as ``CsatPublic`` fields."""
    csat = row.csat or {}
    if not csat.get("requested_at") and csat.get("score") is None:
        return None
    operator = {"id": row.csat_operator_id, "display_name": row.csat_operator_name} if row.csat_operator_id else None
    return {
        "requested_at": csat.get("requested_at"),
        "score": csat.get("score"),
        "comment": csat.get("comment"),
        "rated_at": csat.get("responded_at"),
        "operator": operator,
    }


def _sla_public(clocks: list[dict[str, Any]] | None) -> dict[str, Any] | None:
    """The clocks as ``SlaPublic`` fields: ``next`` is the running one with the nearest deadline."""
    if not clocks:
        return None
    moments = ("started_at", "at_risk_at", "due_at", "stopped_at")
    # jsonb carries the moments as ISO text.
    clocks = [{**c, **{k: c[k] and datetime.fromisoformat(c[k]) for k in moments}} for c in clocks]
    running = [c for c in clocks if c["stopped_at"] is None and c["due_at"] is not None]
    return {"next": min(running, key=lambda c: c["seconds_left"]) if running else None, "clocks": clocks}


def conversation_public(row: Any, tags: list[dict[str, Any]]) -> dict[str, Any]:
    """A joined conversation row and its ``tags`` (``tags.conversation_tags``) as ``ConversationPublic`` fields."""
    return {
        "id": row.id,
        "status": row.status,
        "priority": row.priority,
        "team": {"id": row.team_id, "name": row.team_name} if row.team_id else None,
        "assignee": {"id": row.assignee_id, "display_name": row.assignee_name} if row.assignee_id else None,
        "waiting_since": row.waiting_since,
        "assigned_at": row.assigned_at,
        "first_response_at": row.first_response_at,
        "closed_at": row.closed_at,
        "created_at": row.created_at,
        "last_activity": row.last_activity,
        "visitor_left_at": row.visitor_left_at,
        "required_skills": row.required_skills,
        "ai": {"active": row.ai_active, "paused": row.ai_paused},
        "csat": _csat_public(row),
        "tags": tags,
        "sla": _sla_public(row.sla_clocks),
        "visitor": {
            "id": row.visitor_id,
            "identity": row.identity,
            "metadata": row.session_metadata,
            "phone": row.user_phone,
            "phone_country": row.user_phone_country,
        },
    }


async def conversation_of(conn: AsyncConnection, row: Any) -> dict[str, Any]:
    """``conversation_public`` of one joined row, its tags read."""
    return conversation_public(row, (await tags.conversation_tags(conn, [row.id])).get(row.id, []))


def visible_to(principal: Principal) -> sa.ColumnElement[bool]:
    """Admins see every conversation; others only their teams' ones."""
    if principal.is_admin:
        return sa.true()
    return conversation_t.c.team_id.in_(list(principal.teams))


@dataclass(frozen=True)
class ConversationFilters:
    """What ``GET /api/v1/conversations`` narrows by; ``assignee`` is ``me``, ``unassigned`` or an operator id."""

    statuses: Sequence[str] = ()
    team_id: uuid.UUID | None = None
    assignee: str | None = None
    q: str | None = None
    # A tag id: only conversations it is on.
    tag: uuid.UUID | None = None


def _assignee_filter(principal: Principal, assignee: str) -> sa.ColumnElement[bool]:
    if assignee == "me":
        return conversation_t.c.assignee_id == principal.operator_id
    if assignee == "unassigned":
        return conversation_t.c.assignee_id.is_(None)
    if assignee == "offered":
        return offered_to(principal.operator_id)
    try:
        return conversation_t.c.assignee_id == uuid.UUID(assignee)
    except ValueError:
        raise field_malformed("assignee", "use me, unassigned, offered or an operator id") from None


def offered_to(operator_id: uuid.UUID) -> sa.ColumnElement[bool]:
    """Queued in a pooled team of the operator, who has the skills it asks for now and was not taken off it: the
    conversations offered to them (the first to claim one gets it)."""
    member = (
        sa.select(member_t.c.operator_id)
        .join(team_t, team_t.c.id == member_t.c.team_id)
        .where(
            member_t.c.team_id == conversation_t.c.team_id,
            member_t.c.operator_id == operator_id,
            team_t.c.routing_policy == "pooled",
            sa.func.skill_ladder(member_t.c.skills, type_=ARRAY(sa.Text)).contains(conversation_t.c.required_skills),
        )
        .exists()
    )
    return sa.and_(
        conversation_t.c.status == "queued",
        member,
        sa.not_(sa.literal(operator_id, sa.Uuid) == sa.any_(conversation_t.c.excluded_operators)),
    )


def _search(q: str) -> sa.ColumnElement[bool]:
    """Words in any message (full-text, indexed), or a substring of the visitor's id or identity values."""
    words = sa.func.plainto_tsquery("simple", q)
    in_messages = (
        sa.select(message_t.c.id)
        .where(
            message_t.c.conversation_id == conversation_t.c.id,
            sa.func.to_tsvector("simple", message_t.c.content).op("@@")(words),
        )
        .exists()
    )
    pattern = "%" + q.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
    # Only an object has values to search; older rows hold JSON null for "no identify()" (jsonb_each_text
    # refuses anything but an object, and that one row failed the whole search).
    only_object = sa.case((sa.func.jsonb_typeof(conversation_t.c.identity) == "object", conversation_t.c.identity))
    identity = sa.func.jsonb_each_text(only_object).table_valued("value").alias("identity_value")
    in_identity = sa.select(identity.c.value).where(identity.c.value.ilike(pattern)).exists()
    return sa.or_(in_messages, conversation_t.c.visitor_id.ilike(pattern), in_identity)


async def list_conversations(
    conn: AsyncConnection, principal: Principal, filters: ConversationFilters, cursor: str | None, limit: int
) -> tuple[list[dict[str, Any]], str | None]:
    """One page of visible conversations, most recent activity first (keyset on ``(last_activity, id)``), each
    with its ``unread_count``."""
    statement = _filtered(_conversations(), principal, filters)
    if cursor is not None:
        last_activity, last_id = decode_cursor(cursor, 2)
        statement = statement.where(
            sa.tuple_(conversation_t.c.last_activity, conversation_t.c.id) < (_timestamp(last_activity), str(last_id))
        )
    statement = statement.order_by(conversation_t.c.last_activity.desc(), conversation_t.c.id.desc()).limit(limit + 1)
    rows = (await conn.execute(statement)).all()
    page, after = keyset_page(rows, limit, _as_is, lambda r: (r.last_activity.isoformat(), r.id))
    counts: dict[str, int] = dict(
        (
            await conn.execute(
                sa.select(message_t.c.conversation_id, sa.func.count())
                .where(message_t.c.conversation_id.in_([row.id for row in page]), _unread())
                .group_by(message_t.c.conversation_id)
            )
        ).all()
    )
    on = await tags.conversation_tags(conn, [row.id for row in page])
    return [
        conversation_public(row, on.get(row.id, [])) | {"unread_count": counts.get(row.id, 0)} for row in page
    ], after


def _filtered(statement: sa.Select[Any], principal: Principal, filters: ConversationFilters) -> sa.Select[Any]:
    """The conversations the caller may see that match the filters."""
    statement = statement.where(visible_to(principal))
    if filters.statuses:
        statement = statement.where(conversation_t.c.status.in_(list(filters.statuses)))
    if filters.team_id is not None:
        statement = statement.where(conversation_t.c.team_id == filters.team_id)
    if filters.assignee is not None:
        statement = statement.where(_assignee_filter(principal, filters.assignee))
    if filters.q:
        statement = statement.where(_search(filters.q))
    if filters.tag is not None:
        statement = statement.where(tags.tagged(filters.tag))
    return statement


def _unread() -> sa.ColumnElement[bool]:
    """A visitor message no operator has read yet (deleted ones do not count)."""
    return sa.and_(message_t.c.sender == "visitor", message_t.c.read_at.is_(None), message_t.c.deleted_at.is_(None))


async def unread_total(conn: AsyncConnection, principal: Principal, filters: ConversationFilters) -> int:
    """Unread visitor messages over every conversation the filters match (not only one page): an app's badge."""
    matching = _filtered(sa.select(conversation_t.c.id), principal, filters).scalar_subquery()
    total = await conn.scalar(
        sa.select(sa.func.count()).select_from(message_t).where(message_t.c.conversation_id.in_(matching), _unread())
    )
    return int(total or 0)


async def visible_conversation(conn: AsyncConnection, principal: Principal, conversation_id: str) -> Any:
    """The conversation's joined row; 404 when it does not exist or belongs to another team."""
    if "\x00" in conversation_id:
        raise NotFound("Conversation not found")
    row = (await conn.execute(_conversations().where(conversation_t.c.id == conversation_id))).first()
    if row is None:
        raise NotFound("Conversation not found")
    requires_team_member(principal, row.team_id)
    return row


# --- Messages ---------------------------------------------------------------------------------------------------

author_o = operator_t.alias("author")


def _messages() -> sa.Select[Any]:
    return sa.select(
        message_t, author_o.c.display_name.label("operator_name"), files.message_attachments()
    ).select_from(message_t.outerjoin(author_o, author_o.c.id == message_t.c.operator_id))


def message_public(row: Any, stored: files.Files) -> dict[str, Any]:
    """A message row (with its author's name and files, each with a fresh signed URL) as ``MessagePublic`` fields."""
    attachments = [stored.present(values).model_dump() for values in row.attachments or ()]
    return {
        "id": row.id,
        "seq": row.seq,
        "conversation_id": row.conversation_id,
        "sender": row.sender,
        "operator": {"id": row.operator_id, "display_name": row.operator_name} if row.operator_id else None,
        "content": row.content,
        "created_at": row.created_at,
        "reply_to": row.reply_to,
        "status": row.status,
        "delivered_at": row.delivered_at,
        "read_at": row.read_at,
        "edited_at": row.edited_at,
        "deleted_at": row.deleted_at,
        "attachments": attachments,
    }


async def list_messages(
    conn: AsyncConnection,
    stored: files.Files,
    conversation_id: str,
    cursor: str | None,
    limit: int,
    *,
    newest_first: bool = False,
) -> tuple[list[dict[str, Any]], str | None]:
    """One page of the conversation's messages in the order they were stored, or newest first (the cursor
    then stands for the last message shown, and the next page holds the ones before it)."""
    statement = _messages().where(message_t.c.conversation_id == conversation_id)
    if cursor is not None:
        (seq,) = decode_cursor(cursor, 1, int)
        if not isinstance(seq, int):
            raise field_malformed("cursor", "use nextCursor from a previous page")
        statement = statement.where(message_t.c.seq < seq if newest_first else message_t.c.seq > seq)
    order = message_t.c.seq.desc() if newest_first else message_t.c.seq
    rows = (await conn.execute(statement.order_by(order).limit(limit + 1))).all()
    page, after = keyset_page(rows, limit, _as_is, lambda r: (r.seq,))
    return [message_public(row, stored) for row in page], after


async def newest_messages(
    conn: AsyncConnection, stored: files.Files, conversation_id: str
) -> tuple[list[dict[str, Any]], bool]:
    """The newest ``MAX_PAGE`` messages, oldest first, and whether older ones are left out."""
    newest_left_out = await conn.scalar(
        sa.select(message_t.c.seq)
        .where(message_t.c.conversation_id == conversation_id)
        .order_by(message_t.c.seq.desc())
        .offset(MAX_PAGE)
        .limit(1)
    )
    cursor = None if newest_left_out is None else encode_cursor(newest_left_out)
    messages, _ = await list_messages(conn, stored, conversation_id, cursor, MAX_PAGE)
    return messages, cursor is not None


async def last_messages(conn: AsyncConnection, conversation_ids: list[str]) -> dict[str, str]:
    """The newest message of each conversation, by conversation id (an inbox preview); system notices (a queue
    position, say) are what the visitor was told, not what the conversation says, so they are skipped."""
    if not conversation_ids:
        return {}
    rows = await conn.execute(
        sa.select(message_t.c.conversation_id, message_t.c.content)
        .where(message_t.c.conversation_id.in_(conversation_ids), message_t.c.sender != "system")
        .ext(distinct_on(message_t.c.conversation_id))
        .order_by(message_t.c.conversation_id, message_t.c.seq.desc())
    )
    return {row.conversation_id: row.content for row in rows}


async def _message(conn: AsyncConnection, message_id: str) -> Any:
    return (await conn.execute(_messages().where(message_t.c.id == message_id))).first()


# --- Replies ----------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _How:
    """Where a reply comes from, and whether a lead may answer someone else's conversation."""

    source_bridge: str
    lead_steps_in: bool
    attachment_ids: list[str]


def reply_message_id(operator_id: uuid.UUID, key: str) -> str:
    """The message id an idempotent reply gets: the same key from the same operator names the same message."""
    return "r-" + hashlib.sha256(f"{operator_id}\n{key}".encode()).hexdigest()[:32]


def _note_id(operator_id: uuid.UUID, key: str) -> uuid.UUID:
    """The id an idempotent note gets: the same key from the same operator names the same note."""
    return uuid.uuid5(uuid.NAMESPACE_URL, f"switchboard:note:{operator_id}\n{key}")


async def _may_reply(engine: AsyncEngine, principal: Principal, conversation_id: str, lead_steps_in: bool) -> None:
    """The assignee replies; leads and admins may step in; a team member replying to a waiting conversation claims it.

    An admin outside the team replies to a waiting conversation without taking it. Without
    ``lead_steps_in`` (chat bridges), only the assignee answers an assigned conversation.
    """

    async def check(conn: AsyncConnection) -> None:
        # Locked first, so what is read next is its latest state: of a reply and a claim racing for a waiting
        # conversation (a pooled team's offer), the one that loses sees the other's assignment.
        row = await visible_conversation(conn, principal, conversation_id)  # 404 first, for any id
        await conn.execute(
            sa.select(conversation_t.c.id).where(conversation_t.c.id == conversation_id).with_for_update()
        )
        row = await visible_conversation(conn, principal, conversation_id)
        me = principal.operator_id
        if row.status == "closed":
            raise Conflict("The conversation is closed; reopen it to reply")
        if row.assignee_id == me or (row.status == "assigned" and lead_steps_in and principal.is_lead(row.team_id)):
            return
        if row.status == "assigned":
            raise Forbidden("Another operator holds this conversation; claim or transfer it first")
        if row.team_id is not None and row.team_id in principal.teams:
            await claim(conn, conversation_id, me, actor_id=me)

    await in_transaction(engine, check)


async def reply(
    engine: AsyncEngine,
    pocketping: SwitchboardPocketPing,
    principal: Principal,
    conversation_id: str,
    content: str,
    idempotency_key: str | None,
    *,
    attachment_ids: Sequence[str] = (),
    source_bridge: str = "api",
    lead_steps_in: bool = True,
) -> tuple[bool, dict[str, Any]]:
    """Send ``content`` (and the files of ``attachment_ids``) to the visitor as the caller; returns (sent now, the
    message).

    ``source_bridge`` names where the reply was written (a chat bridge does not get its own message
    back); ``lead_steps_in=False`` refuses a lead's reply to someone else's conversation.

    With a key, the send happens under a transaction-scoped advisory lock on the key's message
    id and only if that message does not exist yet: concurrent duplicates wait for the first,
    then find its message, and a retry after a crash finds the message the first one stored.
    """
    check_key(idempotency_key)
    async with engine.connect() as conn:
        await visible_conversation(conn, principal, conversation_id)
    how = _How(source_bridge, lead_steps_in, list(attachment_ids))
    if idempotency_key is None:
        return True, await _send(engine, pocketping, principal, conversation_id, content, None, how)
    message_id = reply_message_id(principal.operator_id, idempotency_key)
    async with engine.begin() as conn:
        # A duplicate waits for the first request, but not forever: it holds a pooled connection meanwhile.
        await conn.execute(sa.text(f"SET LOCAL lock_timeout = {int(REPLY_LOCK_TIMEOUT_MS)}"))
        try:
            await advisory_lock(conn, message_id)
        except DBAPIError as exc:
            if getattr(exc.orig, "sqlstate", None) != _LOCK_NOT_AVAILABLE:
                raise
            raise Conflict("A reply with this Idempotency-Key is still being sent; retry shortly") from None
        existing = await _message(conn, message_id)
        if existing is not None:
            if existing.conversation_id != conversation_id or existing.content != content:
                raise Conflict("This Idempotency-Key was used for a different reply")
            return False, message_public(existing, pocketping.files)
        return True, await _send(engine, pocketping, principal, conversation_id, content, message_id, how)


async def _send(
    engine: AsyncEngine,
    pocketping: SwitchboardPocketPing,
    principal: Principal,
    conversation_id: str,
    content: str,
    message_id: str | None,
    how: _How,
) -> dict[str, Any]:
    await _may_reply(engine, principal, conversation_id, how.lead_steps_in)
    try:
        sent = await pocketping.send_as_operator(
            conversation_id,
            content,
            operator_id=principal.operator_id,
            operator_name=principal.display_name,
            message_id=message_id,
            source_bridge=how.source_bridge,
            attachment_ids=how.attachment_ids,
        )
    except ValueError:  # the SDK's "Session not found": deleted meanwhile
        raise NotFound("Conversation not found") from None
    # Storage recorded the message.created event with the message itself.
    async with engine.connect() as conn:
        row = await _message(conn, sent.id)
    return message_public(row, pocketping.files)


async def upload(
    engine: AsyncEngine,
    stored: files.Files,
    principal: Principal,
    conversation_id: str,
    filename: str,
    content_type: str,
    data: bytes,
) -> dict[str, Any]:
    """Keep a file the caller will send in this conversation of their team (its id goes in a reply's
    ``attachmentIds``); the team's limits and the sniffed type decide, as for visitors."""
    async with engine.connect() as conn:
        row = await visible_conversation(conn, principal, conversation_id)
    if row.status == "closed":
        raise Conflict("The conversation is closed; reopen it to send files")
    attachment = await files.store_file(
        engine, stored, conversation_id, filename, content_type, data, source="api", operator_id=principal.operator_id
    )
    return attachment.model_dump()


# --- Operators' edits and deletions ----------------------------------------------------------------------------


async def _own_message(conn: AsyncConnection, principal: Principal, conversation_id: str, message_id: str) -> Any:
    """Lock the caller's own message of a conversation they see (404 otherwise), still inside its team's edit
    window: someone else's (an operator's, the visitor's, the AI's) is 403, a deleted or too old one 409.
    Returns the conversation."""
    conversation = await visible_conversation(conn, principal, conversation_id)
    if "\x00" in message_id:
        raise NotFound("Message not found")
    window = await teams.message_edit_window(conn, conversation.team_id)
    message = (
        await conn.execute(
            sa.select(
                message_t.c.sender,
                message_t.c.operator_id,
                message_t.c.deleted_at,
                sa.func.extract("epoch", sa.func.now() - message_t.c.created_at).label("age"),
            )
            .where(message_t.c.id == message_id, message_t.c.conversation_id == conversation_id)
            .with_for_update()
        )
    ).first()
    if message is None:
        raise NotFound("Message not found")
    if message.sender != "operator" or message.operator_id != principal.operator_id:
        raise Forbidden("Only the operator who sent a message may edit or delete it")
    if message.deleted_at is not None:
        raise Conflict("The message is deleted")
    if not window:
        raise Conflict("This team does not let operators edit or delete sent messages")
    if message.age >= window:
        raise Conflict(f"Messages can be edited or deleted for {window} seconds after they are sent")
    return conversation


async def _change(
    engine: AsyncEngine,
    pocketping: SwitchboardPocketPing,
    principal: Principal,
    conversation_id: str,
    message_id: str,
    kind: str,
    values: dict[str, Any],
) -> dict[str, Any]:
    """Apply ``values`` to the caller's own message with its ``kind`` event, in one transaction; the message."""
    async with engine.begin() as conn:
        conversation = await _own_message(conn, principal, conversation_id, message_id)
        await conn.execute(sa.update(message_t).where(message_t.c.id == message_id).values(**values))
        row = await _message(conn, message_id)
        data = {"conversationId": conversation_id, "messageId": message_id, "operatorId": str(principal.operator_id)}
        await record_event(
            conn,
            kind,
            team_id=conversation.team_id,
            conversation_id=conversation_id,
            operator_ids=[conversation.assignee_id] if conversation.assignee_id else [],
            data=data | ({"content": row.content} if "content" in values else {}),
        )
    return message_public(row, pocketping.files)


async def edit_message(
    engine: AsyncEngine,
    pocketping: SwitchboardPocketPing,
    principal: Principal,
    conversation_id: str,
    message_id: str,
    content: str,
) -> dict[str, Any]:
    """Change the text of the caller's own message (``editedAt``); the widget and the team's chats follow."""
    values = {"content": content, "edited_at": sa.func.now()}
    message = await _change(engine, pocketping, principal, conversation_id, message_id, "message.edited", values)
    sdk_message = await pocketping.storage.get_message(message_id)
    if sdk_message is not None:
        await pocketping.announce_edit(sdk_message, principal.display_name)
    return message


async def delete_message(
    engine: AsyncEngine, pocketping: SwitchboardPocketPing, principal: Principal, conversation_id: str, message_id: str
) -> dict[str, Any]:
    """Soft-delete the caller's own message (``deletedAt``, the text kept, as the SDK deletes); the widget hides
    it and the team's chats delete their copies."""
    values = {"deleted_at": sa.func.now()}
    message = await _change(engine, pocketping, principal, conversation_id, message_id, "message.deleted", values)
    sdk_message = await pocketping.storage.get_message(message_id)
    if sdk_message is not None:
        await pocketping.announce_delete(sdk_message)
    return message


# --- Typing and read ---------------------------------------------------------------------------------------------


async def typing(
    engine: AsyncEngine, pocketping: SwitchboardPocketPing, principal: Principal, conversation_id: str, is_typing: bool
) -> None:
    """Show the visitor that the caller is (no longer) typing."""
    async with engine.connect() as conn:
        await visible_conversation(conn, principal, conversation_id)
    await pocketping.operator_typing(conversation_id, is_typing)
    # A connected site's visitor is on the site's own PocketPing: it hears of it by callback.
    await site_callbacks.operator_typing(engine, cast(ArqRedis, pocketping.redis), conversation_id, is_typing)


async def mark_read(
    engine: AsyncEngine, pocketping: SwitchboardPocketPing, principal: Principal, conversation_id: str
) -> dict[str, Any]:
    """The caller saw the conversation: the visitor's messages not read yet are read now, and the widget shows it."""
    async with engine.connect() as conn:
        await visible_conversation(conn, principal, conversation_id)
    message_ids, at = await pocketping.read_by_operator(conversation_id, principal.operator_id)
    return {"message_ids": message_ids, "read_at": at if message_ids else None}


# --- Notes ------------------------------------------------------------------------------------------------------

# "@" at the start of a word, then an email local part; a trailing dot or dash ends the sentence, not the handle.
_MENTION = re.compile(r"(?<![\w@.])@([a-z0-9](?:[a-z0-9._+-]*[a-z0-9])?)", re.IGNORECASE)


def mention_handles(body: str) -> set[str]:
    """The ``@handle`` mentions in a note, lowercased; a handle is the local part of an operator's email."""
    return {match.group(1).lower() for match in _MENTION.finditer(body)}


async def _resolve_mentions(conn: AsyncConnection, team_id: uuid.UUID | None, handles: set[str]) -> list[uuid.UUID]:
    """Active operators with those handles who can see the conversation (its team's members, and admins)."""
    if not handles:
        return []
    member = sa.select(member_t.c.operator_id).where(
        member_t.c.team_id == team_id, member_t.c.operator_id == operator_t.c.id
    )
    statement = (
        sa.select(operator_t.c.id)
        .where(
            sa.func.lower(sa.func.split_part(operator_t.c.email, "@", 1)).in_(sorted(handles)),
            operator_t.c.deactivated_at.is_(None),
            sa.or_(operator_t.c.is_admin, member.exists()),
        )
        .order_by(operator_t.c.id)
    )
    return list((await conn.scalars(statement)).all())


def _notes() -> sa.Select[Any]:
    return sa.select(note_t, author_o.c.display_name.label("author_name")).select_from(
        note_t.outerjoin(author_o, author_o.c.id == note_t.c.author_id)
    )


def note_public(row: Any) -> dict[str, Any]:
    return {
        "id": row.id,
        "conversation_id": row.conversation_id,
        "author": {"id": row.author_id, "display_name": row.author_name} if row.author_id else None,
        "body": row.body,
        "mentions": row.mentions,
        "created_at": row.created_at,
    }


async def add_note(
    conn: AsyncConnection, principal: Principal, conversation_id: str, body: str, idempotency_key: str | None = None
) -> tuple[bool, dict[str, Any]]:
    """Store the note and a ``note.created`` event addressed to the mentioned operators; the visitor never sees it.

    Returns (stored now, the note). With a key, the note's id is derived from the key and the caller, so a
    retried or concurrent duplicate inserts nothing (it waits on the first's row) and gets the first note.
    """
    check_key(idempotency_key)
    conversation = await visible_conversation(conn, principal, conversation_id)
    mentions = await _resolve_mentions(conn, conversation.team_id, mention_handles(body))
    note_id = uuid.uuid4() if idempotency_key is None else _note_id(principal.operator_id, idempotency_key)
    inserted = await conn.execute(
        pg_insert(note_t)
        .values(
            id=note_id, conversation_id=conversation_id, author_id=principal.operator_id, body=body, mentions=mentions
        )
        .on_conflict_do_nothing(index_elements=[note_t.c.id])
    )
    if inserted.rowcount == 0:
        existing = (await conn.execute(_notes().where(note_t.c.id == note_id))).one()
        if existing.conversation_id != conversation_id or existing.body != body:
            raise Conflict("This Idempotency-Key was used for a different note")
        return False, note_public(existing)
    await record_event(
        conn,
        "note.created",
        team_id=conversation.team_id,
        conversation_id=conversation_id,
        operator_ids=mentions,
        data={
            "conversationId": conversation_id,
            "noteId": str(note_id),
            "authorId": str(principal.operator_id),
            "mentions": [str(m) for m in mentions],
        },
    )
    return True, note_public((await conn.execute(_notes().where(note_t.c.id == note_id))).one())


async def list_notes(
    conn: AsyncConnection, conversation_id: str, cursor: str | None, limit: int
) -> tuple[list[dict[str, Any]], str | None]:
    """One page of the conversation's notes, oldest first (keyset on ``(created_at, id)``)."""
    statement = _notes().where(note_t.c.conversation_id == conversation_id)
    if cursor is not None:
        created_at, note_id = decode_cursor(cursor, 2)
        try:
            after = (_timestamp(created_at), uuid.UUID(str(note_id)))
        except ValueError:
            raise field_malformed("cursor", "use nextCursor from a previous page") from None
        statement = statement.where(sa.tuple_(note_t.c.created_at, note_t.c.id) > after)
    rows = (await conn.execute(statement.order_by(note_t.c.created_at, note_t.c.id).limit(limit + 1))).all()
    page, after_cursor = keyset_page(rows, limit, _as_is, lambda r: (r.created_at.isoformat(), str(r.id)))
    return [note_public(row) for row in page], after_cursor
