"""PocketPing ``Storage`` on PostgreSQL: sessions are conversation rows, messages are message rows."""

from __future__ import annotations

import contextvars
import re
import uuid
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from pocketping.models import Attachment, Message, MessageStatus, Session
from pocketping.storage import BridgeMessageIds, Storage
from sqlalchemy.dialects.postgresql import aggregate_order_by, array, insert
from sqlalchemy.ext.asyncio import AsyncEngine

from service.db.tables import attachment_t, conversation_t, event_t, message_t
from service.files.services import Files

# The operator on whose behalf the SDK is saving a message right now (set around
# ``send_operator_message``), so operator messages are attributed without changing the SDK.
acting_operator: contextvars.ContextVar[uuid.UUID | None] = contextvars.ContextVar("acting_operator", default=None)

# Columns the SDK owns on a conversation; routing columns are never written from here, and neither is
# ``csat`` once the session exists: service/csat writes it, and a session the SDK read earlier must not undo that.
_SESSION_COLUMNS = (
    "visitor_id",
    "last_activity",
    "operator_online",
    "ai_active",
    "session_metadata",
    "identity",
    "user_phone",
    "user_phone_country",
)


def _dump(model: Any) -> Any:
    # SQL NULL for none: a JSONB column would otherwise store JSON null, which is not "nothing" to SQL.
    return model.model_dump(mode="json", exclude_none=True) if model is not None else sa.null()


def session_to_row(session: Session) -> dict[str, Any]:
    """The conversation columns that hold a PocketPing session."""
    return {
        "id": session.id,
        "visitor_id": session.visitor_id,
        "created_at": session.created_at,
        "last_activity": session.last_activity,
        "operator_online": session.operator_online,
        "ai_active": session.ai_active,
        "session_metadata": _dump(session.metadata),
        "identity": _dump(session.identity),
        "user_phone": session.user_phone,
        "user_phone_country": session.user_phone_country,
        "csat": _dump(session.csat),
    }


def message_to_row(message: Message, session_id: str | None = None) -> dict[str, Any]:
    """The message columns that hold a PocketPing message (in ``session_id``, else its own session)."""
    return {
        "id": message.id,
        "conversation_id": session_id or message.session_id,
        "sender": message.sender.value,
        "content": message.content,
        "created_at": message.timestamp,
        "reply_to": message.reply_to,
        "message_metadata": message.metadata,
        "status": message.status.value,
        "delivered_at": message.delivered_at,
        "read_at": message.read_at,
        "edited_at": message.edited_at,
        "deleted_at": message.deleted_at,
    }


def row_to_session(row: Any) -> Session:
    """Rebuild the SDK's ``Session`` from a conversation row."""
    return Session(
        id=row.id,
        visitor_id=row.visitor_id,
        created_at=row.created_at,
        last_activity=row.last_activity,
        operator_online=row.operator_online,
        ai_active=row.ai_active,
        metadata=row.session_metadata,
        identity=row.identity,
        user_phone=row.user_phone,
        user_phone_country=row.user_phone_country,
        csat=row.csat,
    )


# The message columns a ``message.created`` event is built from: an INSERT into message returns them.
CREATED_COLUMNS = (
    message_t.c.id,
    message_t.c.conversation_id,
    message_t.c.sender,
    message_t.c.operator_id,
    message_t.c.content,
    message_t.c.seq,
)


def message_created(messages: sa.FromClause) -> sa.Insert:
    """The ``message.created`` events of ``messages`` (rows of ``CREATED_COLUMNS``), each to its team and assignee."""
    m = messages.c
    audience = (
        sa.select(
            sa.literal("message.created"),
            conversation_t.c.team_id,
            m.conversation_id,
            sa.func.array_remove(array([conversation_t.c.assignee_id]), None),
            sa.func.jsonb_build_object(
                "conversationId",
                m.conversation_id,
                "messageId",
                m.id,
                "sender",
                m.sender,
                "operatorId",
                m.operator_id,
                "content",
                m.content,
            ),
        )
        .select_from(messages.join(conversation_t, conversation_t.c.id == m.conversation_id))
        .order_by(m.seq)
    )
    return sa.insert(event_t).from_select(["kind", "team_id", "conversation_id", "operator_ids", "data"], audience)


def _conversation_event(
    kind: str, session_id: str, data: sa.ColumnElement[Any], when: sa.ColumnElement[bool] | None = None
) -> sa.Insert:
    """One event about the conversation (if ``when``), to its team and assignee; ``data`` follows ``conversationId``."""
    audience = sa.select(
        sa.literal(kind),
        conversation_t.c.team_id,
        conversation_t.c.id,
        sa.func.array_remove(array([conversation_t.c.assignee_id]), None),
        sa.func.jsonb_build_object("conversationId", conversation_t.c.id).op("||")(data),
    ).where(conversation_t.c.id == session_id, sa.true() if when is None else when)
    return sa.insert(event_t).from_select(["kind", "team_id", "conversation_id", "operator_ids", "data"], audience)


# Receipts only move a message forward: sent, delivered, read.
_STATUS_ORDER = [status.value for status in MessageStatus]


def attachment_values(attachment: Attachment) -> dict[str, Any]:
    """The attachment columns that hold an SDK ``Attachment``."""
    return {
        "id": attachment.id,
        "message_id": attachment.message_id,
        "filename": attachment.filename,
        "mime_type": attachment.mime_type,
        "size": attachment.size,
        "url": attachment.url,
        "thumbnail_url": attachment.thumbnail_url,
        "status": attachment.status.value,
        "uploaded_from": attachment.uploaded_from.value if attachment.uploaded_from else None,
        "bridge_file_id": attachment.bridge_file_id,
        "created_at": attachment.created_at,
    }


def as_stored(values: Mapping[str, Any]) -> Attachment:
    """An attachment row as it is stored (a file Switchboard holds gets no URL here: see ``Files.present``)."""
    known = {key: values[key] for key in _ATTACHMENT_FIELDS if key in values}
    return Attachment(**{**known, "url": values.get("url") or ""})


_ATTACHMENT_FIELDS = (
    "id",
    "message_id",
    "filename",
    "mime_type",
    "size",
    "url",
    "thumbnail_url",
    "status",
    "uploaded_from",
    "bridge_file_id",
    "created_at",
)
Present = Callable[[dict[str, Any]], Attachment]


# One round trip per read: attachments ride along as a JSON array, in the order they were added (a worker posting
# the message re-reads it: its first file carries the caption, as the request's own copy had it).
_attachments_json = (
    sa.select(
        sa.func.json_agg(
            aggregate_order_by(
                sa.func.json_build_object(
                    "id",
                    attachment_t.c.id,
                    "message_id",
                    attachment_t.c.message_id,
                    "filename",
                    attachment_t.c.filename,
                    "mime_type",
                    attachment_t.c.mime_type,
                    "size",
                    attachment_t.c.size,
                    "url",
                    attachment_t.c.url,
                    "thumbnail_url",
                    attachment_t.c.thumbnail_url,
                    "status",
                    attachment_t.c.status,
                    "uploaded_from",
                    attachment_t.c.uploaded_from,
                    "bridge_file_id",
                    attachment_t.c.bridge_file_id,
                    "created_at",
                    attachment_t.c.created_at,
                    "storage_key",
                    attachment_t.c.storage_key,
                ),
                attachment_t.c.created_at,
                attachment_t.c.id,
            )
        )
    )
    .where(attachment_t.c.message_id == message_t.c.id)
    .scalar_subquery()
    .label("attachments")
)

# The message row as the SDK reads it; also what the bridges post when a thread opens.
MESSAGE_COLUMNS = (
    message_t.c.id,
    message_t.c.conversation_id,
    message_t.c.content,
    message_t.c.sender,
    message_t.c.created_at,
    message_t.c.reply_to,
    message_t.c.message_metadata,
    message_t.c.status,
    message_t.c.delivered_at,
    message_t.c.read_at,
    message_t.c.edited_at,
    message_t.c.deleted_at,
    _attachments_json,
)


def row_to_message(row: Any, present: Present = as_stored) -> Message:
    """Rebuild the SDK's ``Message`` (with its attachments, each through ``present``) from a message row."""
    return Message(
        id=row.id,
        session_id=row.conversation_id,
        content=row.content,
        # 'system' rows are Switchboard's own; the widget protocol only knows the SDK's senders.
        sender=row.sender if row.sender != "system" else "operator",
        timestamp=row.created_at,
        reply_to=row.reply_to,
        metadata=row.message_metadata,
        status=row.status,
        delivered_at=row.delivered_at,
        read_at=row.read_at,
        edited_at=row.edited_at,
        deleted_at=row.deleted_at,
        attachments=[present(a) for a in row.attachments] if row.attachments else None,
    )


_ISO_INSTANT = re.compile(r"\d{4}-\d{2}-\d{2}T")


def _instant(after: str) -> datetime | None:
    """``after`` as an instant when it is an ISO 8601 date and time (no message id looks like one), else None."""
    if not _ISO_INSTANT.match(after):
        return None
    try:
        instant = datetime.fromisoformat(after)
    except ValueError:
        return None
    return instant if instant.tzinfo else instant.replace(tzinfo=UTC)


class PostgresStorage(Storage):
    """Every abstract and optional ``Storage`` method, one statement (one round trip) each."""

    def __init__(self, engine: AsyncEngine, files: Files | None = None) -> None:
        # Each call is a single statement, so autocommit saves the BEGIN/COMMIT round trips.
        self._engine = engine.execution_options(isolation_level="AUTOCOMMIT")
        # Stored files are read with a fresh signed URL each time (without ``files``: as stored).
        self.files = files
        self._present: Present = files.present if files is not None else as_stored

    async def _execute(self, statement: Any) -> Any:
        async with self._engine.connect() as conn:
            return await conn.execute(statement)

    # Sessions ---------------------------------------------------------------------------

    async def create_session(self, session: Session) -> None:
        values = session_to_row(session)
        statement = insert(conversation_t).values(**values)
        await self._execute(
            statement.on_conflict_do_update(
                index_elements=[conversation_t.c.id],
                set_={c: statement.excluded[c] for c in _SESSION_COLUMNS},
            )
        )

    async def get_session(self, session_id: str) -> Session | None:
        result = await self._execute(sa.select(conversation_t).where(conversation_t.c.id == session_id))
        row = result.first()
        return row_to_session(row) if row else None

    async def get_session_by_visitor_id(self, visitor_id: str) -> Session | None:
        result = await self._execute(
            sa.select(conversation_t)
            .where(conversation_t.c.visitor_id == visitor_id)
            .order_by(conversation_t.c.last_activity.desc())
            .limit(1)
        )
        row = result.first()
        return row_to_session(row) if row else None

    async def update_session(self, session: Session) -> None:
        values = session_to_row(session)
        await self._execute(
            sa.update(conversation_t)
            .where(conversation_t.c.id == session.id)
            .values(**{c: values[c] for c in _SESSION_COLUMNS})
        )

    async def delete_session(self, session_id: str) -> None:
        await self._execute(sa.delete(conversation_t).where(conversation_t.c.id == session_id))

    async def list_sessions(self, since: datetime | None = None) -> list[Session]:
        statement = sa.select(conversation_t).order_by(conversation_t.c.created_at)
        if since is not None:
            statement = statement.where(conversation_t.c.created_at >= since)
        result = await self._execute(statement)
        return [row_to_session(row) for row in result]

    async def cleanup_old_sessions(self, older_than: datetime) -> int:
        result = await self._execute(sa.delete(conversation_t).where(conversation_t.c.last_activity < older_than))
        return int(result.rowcount)

    async def mark_visitor_left(self, session_id: str) -> None:
        """Record when the visitor said they left (``/disconnect``)."""
        await self._execute(
            sa.update(conversation_t).where(conversation_t.c.id == session_id).values(visitor_left_at=sa.func.now())
        )

    # Messages ---------------------------------------------------------------------------

    async def save_message(self, message: Message) -> None:
        """Insert, or update the mutable fields: the SDK re-saves messages on read receipts."""
        operator_id = acting_operator.get() if message.sender.value == "operator" else None
        values = {**message_to_row(message), "operator_id": operator_id}
        statement = insert(message_t).values(**values)
        mutable = (
            "content",
            "reply_to",
            "message_metadata",
            "status",
            "delivered_at",
            "read_at",
            "edited_at",
            "deleted_at",
        )
        upsert = statement.on_conflict_do_update(
            index_elements=[message_t.c.id], set_={c: statement.excluded[c] for c in mutable}
        )
        if message.sender.value == "visitor":
            # Visitor messages are inserted (with their event) by the routing bridge; this is a re-save.
            await self._execute(upsert)
        else:
            # One statement, so the event exists exactly when the message does; the SDK's re-saves add none.
            saved = upsert.returning(*CREATED_COLUMNS, sa.literal_column("xmax = 0").label("inserted")).cte("saved")
            await self._execute(message_created(sa.select(saved).where(saved.c.inserted).subquery("inserted")))
        for attachment in message.attachments or []:
            await self.save_attachment(attachment.model_copy(update={"message_id": message.id}))

    async def update_message(self, message: Message) -> None:
        await self.save_message(message)

    async def record_receipts(
        self,
        session_id: str,
        status: MessageStatus,
        *,
        message_ids: list[str] | None = None,
        operator_id: uuid.UUID | None = None,
    ) -> tuple[list[str], datetime]:
        """Mark messages delivered or read, never back, with their ``message.receipt`` event, in one statement.

        The visitor's receipts name ``message_ids``; an operator (``operator_id``) reads all the visitor's
        messages. Returns the ids that changed, in conversation order, and the time they were stamped.
        """
        at = datetime.now(UTC)
        m = message_t.c
        values: dict[str, Any] = {"status": status.value}
        if status in (MessageStatus.DELIVERED, MessageStatus.READ):
            values["delivered_at"] = sa.func.coalesce(m.delivered_at, at)
        if status is MessageStatus.READ:
            values["read_at"] = at
        update = sa.update(message_t).where(
            m.conversation_id == session_id, m.status.in_(_STATUS_ORDER[: _STATUS_ORDER.index(status.value)])
        )
        if message_ids is not None:
            update = update.where(m.id.in_(message_ids))
        if operator_id is not None:
            update = update.where(m.sender == "visitor")
        changed = update.values(**values).returning(m.id, m.seq).cte("changed")
        data = sa.func.jsonb_build_object(
            "messageIds",
            sa.select(sa.func.jsonb_agg(aggregate_order_by(changed.c.id, changed.c.seq))).scalar_subquery(),
            "status",
            status.value,
            "by",
            "operator" if operator_id is not None else "visitor",
            "operatorId",
            str(operator_id) if operator_id is not None else sa.null(),
            "at",
            sa.literal(at, sa.DateTime(timezone=True)),
        )
        event = _conversation_event("message.receipt", session_id, data, sa.exists(sa.select(changed.c.id)))
        result = await self._execute(sa.select(changed.c.id).add_cte(event.cte("receipt")).order_by(changed.c.seq))
        return list(result.scalars()), at

    async def record_typing(self, session_id: str, is_typing: bool) -> None:
        """A ``visitor.typing`` event, to the conversation's team and assignee (the operator stream)."""
        data = sa.func.jsonb_build_object("isTyping", is_typing)
        await self._execute(_conversation_event("visitor.typing", session_id, data))

    async def get_messages(self, session_id: str, after: str | None = None, limit: int = 50) -> list[Message]:
        """Oldest first, at most ``limit``: after ``after``, else the latest ones (the widget's whole history).

        ``after`` is a message id (the messages after it) or, as the widget sends it, an ISO timestamp:
        the messages created, edited, deleted, delivered or read after that instant, in that order, so
        the next poll, from the latest of those times, goes on where this page stopped.
        """
        statement = sa.select(*MESSAGE_COLUMNS).where(message_t.c.conversation_id == session_id)
        if not after:
            newest = statement.order_by(message_t.c.seq.desc()).limit(limit)
            return [row_to_message(row, self._present) for row in reversed((await self._execute(newest)).all())]
        if (instant := _instant(after)) is not None:
            changed = sa.func.greatest(
                message_t.c.created_at,
                message_t.c.edited_at,
                message_t.c.deleted_at,
                message_t.c.delivered_at,
                message_t.c.read_at,
            )
            statement = statement.where(changed > instant).order_by(changed, message_t.c.seq)
        else:
            # Like the reference: an unknown "after" id pages from the start.
            after_seq = (
                sa.select(message_t.c.seq)
                .where(message_t.c.id == after, message_t.c.conversation_id == session_id)
                .scalar_subquery()
            )
            statement = statement.where(message_t.c.seq > sa.func.coalesce(after_seq, 0)).order_by(message_t.c.seq)
        result = await self._execute(statement.limit(limit))
        return [row_to_message(row, self._present) for row in result]

    async def get_message(self, message_id: str) -> Message | None:
        result = await self._execute(sa.select(*MESSAGE_COLUMNS).where(message_t.c.id == message_id))
        row = result.first()
        return row_to_message(row, self._present) if row else None

    async def save_bridge_message_ids(self, message_id: str, bridge_ids: BridgeMessageIds) -> None:
        await self._execute(
            sa.update(message_t)
            .where(message_t.c.id == message_id)
            .values(
                telegram_message_id=sa.func.coalesce(
                    sa.cast(bridge_ids.telegram_message_id, sa.BigInteger), message_t.c.telegram_message_id
                ),
                discord_message_id=sa.func.coalesce(
                    sa.cast(bridge_ids.discord_message_id, sa.Text), message_t.c.discord_message_id
                ),
                slack_message_ts=sa.func.coalesce(
                    sa.cast(bridge_ids.slack_message_ts, sa.Text), message_t.c.slack_message_ts
                ),
            )
        )

    async def get_bridge_message_ids(self, message_id: str) -> BridgeMessageIds | None:
        result = await self._execute(
            sa.select(
                message_t.c.telegram_message_id, message_t.c.discord_message_id, message_t.c.slack_message_ts
            ).where(message_t.c.id == message_id)
        )
        row = result.first()
        if row is None or all(value is None for value in row):
            return None
        return BridgeMessageIds(
            telegram_message_id=row.telegram_message_id,
            discord_message_id=row.discord_message_id,
            slack_message_ts=row.slack_message_ts,
        )

    # Attachments ------------------------------------------------------------------------

    async def save_attachment(self, attachment: Attachment) -> None:
        values = attachment_values(attachment)
        statement = insert(attachment_t).values(**values)
        updated: dict[str, Any] = {c: statement.excluded[c] for c in values if c not in ("id", "created_at")}
        # A file Switchboard holds keeps no URL: the one the SDK re-saves is a signed, short-lived one.
        updated["url"] = sa.case((attachment_t.c.storage_key.is_(None), statement.excluded.url), else_=None)
        await self._execute(statement.on_conflict_do_update(index_elements=[attachment_t.c.id], set_=updated))

    async def update_attachment(self, attachment: Attachment) -> None:
        await self.save_attachment(attachment)

    async def get_attachment(self, attachment_id: str) -> Attachment | None:
        result = await self._execute(sa.select(attachment_t).where(attachment_t.c.id == attachment_id))
        row = result.first()
        return self._present(dict(row._mapping)) if row else None

    async def get_message_attachments(self, message_id: str) -> list[Attachment]:
        result = await self._execute(
            sa.select(attachment_t).where(attachment_t.c.message_id == message_id).order_by(attachment_t.c.created_at)
        )
        return [self._present(dict(row._mapping)) for row in result]
