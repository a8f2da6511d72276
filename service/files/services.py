"""Attachments: announced, received (checked against the team's limits and sniffed), completed, linked to a
message, served through short-lived signed URLs, and swept away when never finished.

A refused file leaves nothing behind: its row is deleted with it and no bytes are kept.
"""

from __future__ import annotations

import secrets
import time
import unicodedata
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlencode

import sqlalchemy as sa
import structlog
from pocketping.models import Attachment, AttachmentStatus
from sqlalchemy.dialects.postgresql import aggregate_order_by
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from service.crypto import sign, signature_matches
from service.db.models import DEFAULT_ATTACHMENT_MAX_BYTES, DEFAULT_ATTACHMENT_TYPES, MAX_ATTACHMENT_BYTES
from service.db.tables import attachment_t, conversation_t, message_t, team_t
from service.errors import Conflict, Forbidden, Invalid, NotFound, TooLarge, UnsupportedType
from service.files.sniff import sniff
from service.files.store import FileStore
from service.settings import Settings

log = structlog.get_logger(__name__)

UPLOAD = "attachment-upload"
DOWNLOAD = "attachment-download"
MAX_FILENAME = 255
MAX_UPLOAD_BYTES = MAX_ATTACHMENT_BYTES
# At most this many attachments on one message (the widget's own limit).
MAX_PER_MESSAGE = 10


class Files:
    """The process's file store and the URL rules (built in service/resources.py)."""

    def __init__(self, settings: Settings, store: FileStore) -> None:
        self.settings = settings
        self.store = store
        self._root = settings.base_url

    def _signed(self, purpose: str, path: str, attachment_id: str, ttl: int) -> str:
        expires = str(int(time.time()) + ttl)
        signature = sign(self.settings.secret_key, purpose, attachment_id, expires)
        return f"{self._root}{path}?{urlencode({'expires': expires, 'signature': signature})}"

    def upload_url(self, attachment_id: str) -> str:
        """Where the widget PUTs the bytes: signed, valid for ``ATTACHMENT_UPLOAD_TTL_SECONDS``."""
        ttl = self.settings.attachment_upload_ttl_seconds
        return self._signed(UPLOAD, f"/pocketping/upload/{attachment_id}", attachment_id, ttl)

    def download_url(self, attachment_id: str, storage_key: str, filename: str, mime_type: str) -> str:
        """A URL serving the bytes for ``ATTACHMENT_URL_TTL_SECONDS``: the store's presigned one, else ours."""
        ttl = self.settings.attachment_url_ttl_seconds
        presigned = self.store.presigned_url(storage_key, filename, mime_type, ttl)
        return presigned or self._signed(DOWNLOAD, f"/files/{attachment_id}", attachment_id, ttl)

    def check(self, purpose: str, attachment_id: str, expires: str | None, signature: str | None) -> None:
        """403 unless the URL was signed by us for this attachment and has not expired."""
        if not expires or not signature or not expires.isdigit():
            raise Forbidden("This file URL is not signed", field="signature")
        if not signature_matches(self.settings.secret_key, purpose, signature, attachment_id, expires):
            raise Forbidden("This file URL's signature does not match", field="signature")
        if int(expires) < time.time():
            raise Forbidden("This file URL has expired; ask for the message again for a fresh one", field="expires")

    def present(self, values: dict[str, Any]) -> Attachment:
        """The SDK's ``Attachment`` of a row (a mapping), with a fresh signed URL for a stored file."""
        key = values.get("storage_key")
        url = self.download_url(values["id"], key, values["filename"], values["mime_type"]) if key else values["url"]
        return Attachment(
            id=values["id"],
            message_id=values["message_id"],
            filename=values["filename"],
            mime_type=values["mime_type"],
            size=values["size"],
            url=url or "",
            thumbnail_url=values.get("thumbnail_url"),
            status=values["status"],
            uploaded_from=values.get("uploaded_from"),
            bridge_file_id=values.get("bridge_file_id"),
            created_at=values["created_at"],
        )


@dataclass(frozen=True)
class Limits:
    """What a team accepts: bytes per file and (sniffed) MIME types."""

    max_bytes: int
    types: tuple[str, ...]


DEFAULT_LIMITS = Limits(DEFAULT_ATTACHMENT_MAX_BYTES, DEFAULT_ATTACHMENT_TYPES)


def new_attachment_id() -> str:
    return f"att-{secrets.token_hex(12)}"


async def limits(conn: AsyncConnection, conversation_id: str) -> Limits:
    """The limits of the conversation's team (the one routing placed it in, else the one chosen at connect, else
    the default team); PocketPing's defaults when there is none."""
    team = sa.func.coalesce(
        conversation_t.c.team_id,
        conversation_t.c.selected_team_id,
        sa.select(team_t.c.id).where(team_t.c.is_default).scalar_subquery(),
    )
    row = (
        await conn.execute(
            sa.select(team_t.c.attachment_max_bytes, team_t.c.attachment_types)
            .select_from(conversation_t.join(team_t, team_t.c.id == team))
            .where(conversation_t.c.id == conversation_id)
        )
    ).first()
    return DEFAULT_LIMITS if row is None else Limits(row.attachment_max_bytes, tuple(row.attachment_types))


def _too_large(limit: Limits, size: int, field: str) -> TooLarge:
    return TooLarge(
        f"The file is {size} bytes; this team accepts files of at most {limit.max_bytes} bytes",
        field=field,
        message=f"at most {limit.max_bytes} bytes",
    )


def _clean_name(filename: str) -> str:
    """The file's own name (no folders), NFC; 400 naming ``filename`` when nothing printable is left."""
    name = unicodedata.normalize("NFC", filename).replace("\\", "/").rsplit("/", 1)[-1].strip()
    if not name or len(name) > MAX_FILENAME or any(unicodedata.category(c) == "Cc" for c in name):
        raise Invalid("filename is not valid", field="filename", message="1 to 255 printable characters")
    return name


def _check_declared(limit: Limits, filename: str, mime_type: str, size: int) -> str:
    """The file name to keep; refusals name ``filename``, ``size`` or ``mimeType``."""
    name = _clean_name(filename)
    if size <= 0:
        raise Invalid("size is not valid", field="size", message="the file's size in bytes, more than 0")
    if size > limit.max_bytes:
        raise _too_large(limit, size, "size")
    if mime_type not in limit.types:
        raise UnsupportedType(
            f"Files of type {mime_type} are not accepted here",
            field="mimeType",
            message="one of " + ", ".join(limit.types),
        )
    return name


def _check_bytes(limit: Limits, data: bytes, declared: str) -> str:
    """The sniffed type of bytes the team accepts; refusals name ``file``."""
    if len(data) > limit.max_bytes:
        raise _too_large(limit, len(data), "file")
    if not data:
        raise Invalid("The file is empty", field="file", message="must not be empty")
    found = sniff(data, declared)
    if found is None or found not in limit.types:
        raise UnsupportedType(
            f"The file's content is {found or 'of no known type'}, which is not accepted here",
            field="file",
            message="one of " + ", ".join(limit.types),
        )
    if found != declared:
        raise UnsupportedType(
            f"The file's content is {found}, not {declared} as declared", field="file", message=f"is {found}"
        )
    return found


# --- The widget's three steps ---------------------------------------------------------------------------------


async def initiate(
    conn: AsyncConnection, files: Files, conversation_id: str, filename: str, mime_type: str, size: int
) -> tuple[str, str, datetime]:
    """Announce a visitor's upload: (attachment id, upload URL, when that URL expires). Nothing is stored when
    the declared file is refused."""
    exists = await conn.scalar(sa.select(conversation_t.c.id).where(conversation_t.c.id == conversation_id))
    if exists is None:
        raise NotFound("Session not found", field="sessionId")
    name = _check_declared(await limits(conn, conversation_id), filename, mime_type, size)
    attachment_id = new_attachment_id()
    expires_at = datetime.now(UTC) + timedelta(seconds=files.settings.attachment_upload_ttl_seconds)
    await conn.execute(
        sa.insert(attachment_t).values(
            id=attachment_id,
            conversation_id=conversation_id,
            filename=name,
            mime_type=mime_type,
            size=size,
            status=AttachmentStatus.PENDING.value,
            uploaded_from="widget",
            expires_at=expires_at,
            created_at=sa.func.now(),
        )
    )
    return attachment_id, files.upload_url(attachment_id), expires_at


async def _refuse(engine: AsyncEngine, files: Files, attachment_id: str, storage_key: str | None) -> None:
    async with engine.begin() as conn:
        await conn.execute(sa.delete(attachment_t).where(attachment_t.c.id == attachment_id))
    if storage_key is not None:
        await files.store.delete(storage_key)


async def receive(engine: AsyncEngine, files: Files, attachment_id: str, data: bytes) -> None:
    """The bytes of an announced upload (the signed PUT): kept if the team accepts them, else the upload is
    deleted (its row too) and the refusal names ``file`` or ``size``."""
    async with engine.connect() as conn:
        row = (
            await conn.execute(
                sa.select(attachment_t).where(
                    attachment_t.c.id == attachment_id, attachment_t.c.status == AttachmentStatus.PENDING.value
                )
            )
        ).first()
        if row is None:
            raise NotFound("No upload is waiting for this file")
        limit = await limits(conn, row.conversation_id)
    try:
        if len(data) != row.size:
            raise Invalid(
                f"The file is {len(data)} bytes, not {row.size} as announced", field="size", message=f"is {len(data)}"
            )
        mime_type = _check_bytes(limit, data, row.mime_type)
    except (Invalid, TooLarge, UnsupportedType):
        await _refuse(engine, files, attachment_id, None)
        raise
    await files.store.put(attachment_id, data, mime_type)
    async with engine.begin() as conn:
        stored = await conn.scalar(
            sa.update(attachment_t)
            .where(attachment_t.c.id == attachment_id, attachment_t.c.status == AttachmentStatus.PENDING.value)
            .values(status=AttachmentStatus.UPLOADING.value, storage_key=attachment_id, mime_type=mime_type)
            .returning(attachment_t.c.id)
        )
    if stored is None:  # swept or received twice meanwhile
        await files.store.delete(attachment_id)
        raise Conflict("This upload was already received or has expired")


async def complete(conn: AsyncConnection, files: Files, session_id: str, attachment_id: str) -> Attachment:
    """The widget's last step: the received file is ready to be attached (by this session only)."""
    row = (
        await conn.execute(
            sa.update(attachment_t)
            .where(
                attachment_t.c.id == attachment_id,
                attachment_t.c.conversation_id == session_id,
                attachment_t.c.status.in_([AttachmentStatus.UPLOADING.value, AttachmentStatus.READY.value]),
            )
            .values(status=AttachmentStatus.READY.value)
            .returning(attachment_t)
        )
    ).first()
    if row is not None:
        return files.present(dict(row._mapping))
    waiting = await conn.scalar(
        sa.select(attachment_t.c.id).where(
            attachment_t.c.id == attachment_id, attachment_t.c.conversation_id == session_id
        )
    )
    if waiting is not None:
        raise Conflict("The file has not been uploaded yet", field="attachmentId", message="upload the file first")
    raise NotFound("Attachment not found", field="attachmentId")


# --- Files operators and chat platforms send ---------------------------------------------------------------------


async def store_file(
    engine: AsyncEngine,
    files: Files,
    conversation_id: str,
    filename: str,
    declared: str,
    data: bytes,
    *,
    source: str,
    operator_id: uuid.UUID | None = None,
    bridge_file_id: str | None = None,
) -> Attachment:
    """Keep a whole file at once (an operator's upload, a file from a chat), ready to attach to a message."""
    async with engine.connect() as conn:
        exists = await conn.scalar(sa.select(conversation_t.c.id).where(conversation_t.c.id == conversation_id))
        if exists is None:
            raise NotFound("Conversation not found")
        limit = await limits(conn, conversation_id)
    declared = declared.split(";", 1)[0].strip().lower() or "application/octet-stream"
    # An operator's browser or a platform may not know the type: the bytes decide, within the team's types.
    if declared not in limit.types:
        declared = sniff(data, declared) or declared
    name = _clean_name(filename or "file")
    mime_type = _check_bytes(limit, data, declared)
    attachment_id = new_attachment_id()
    await files.store.put(attachment_id, data, mime_type)
    expires_at = datetime.now(UTC) + timedelta(seconds=files.settings.attachment_upload_ttl_seconds)
    try:
        async with engine.begin() as conn:
            row = (
                await conn.execute(
                    sa.insert(attachment_t)
                    .values(
                        id=attachment_id,
                        conversation_id=conversation_id,
                        filename=name,
                        mime_type=mime_type,
                        size=len(data),
                        status=AttachmentStatus.READY.value,
                        uploaded_from=source,
                        bridge_file_id=bridge_file_id,
                        storage_key=attachment_id,
                        operator_id=operator_id,
                        expires_at=expires_at,
                        created_at=sa.func.now(),
                    )
                    .returning(attachment_t)
                )
            ).one()
    except BaseException:
        await files.store.delete(attachment_id)
        raise
    return files.present(dict(row._mapping))


async def forget(engine: AsyncEngine, files: Files, attachment_ids: list[str]) -> None:
    """Delete stored files never attached to a message (the rest of a batch when one of it was refused)."""
    if not attachment_ids:
        return
    async with engine.begin() as conn:
        keys = (
            await conn.execute(
                sa.delete(attachment_t)
                .where(attachment_t.c.id.in_(attachment_ids), attachment_t.c.message_id.is_(None))
                .returning(attachment_t.c.storage_key)
            )
        ).scalars()
        gone = [key for key in keys if key is not None]
    for key in gone:
        await files.store.delete(key)


# --- Messages ----------------------------------------------------------------------------------------------------


def message_attachments() -> sa.Label[Any]:
    """A column for a query over ``message``: its attachment rows as a JSON array (null: none), oldest first."""
    row: sa.ColumnElement[Any] = sa.literal_column("attachment")
    return (
        sa.select(sa.func.json_agg(aggregate_order_by(row, attachment_t.c.created_at, attachment_t.c.id)))
        .select_from(attachment_t)
        .where(attachment_t.c.message_id == message_t.c.id)
        .scalar_subquery()
        .label("attachments")
    )


async def link(
    conn: AsyncConnection, files: Files, session_id: str, attachment_ids: list[str], message_id: str
) -> list[Attachment]:
    """Attach ready files of this session, not on any message yet, to the message: all of them or none (400
    naming ``attachmentIds``)."""
    wanted = list(dict.fromkeys(attachment_ids))
    if len(wanted) > MAX_PER_MESSAGE:
        raise Invalid("attachmentIds is not valid", field="attachmentIds", message=f"at most {MAX_PER_MESSAGE}")
    usable = (
        sa.select(attachment_t.c.id)
        .where(
            attachment_t.c.id.in_(wanted),
            attachment_t.c.conversation_id == session_id,
            attachment_t.c.status == AttachmentStatus.READY.value,
            attachment_t.c.message_id.is_(None),
        )
        .with_for_update()
        .cte("usable")
    )
    rows = (
        await conn.execute(
            sa.update(attachment_t)
            .where(
                attachment_t.c.id.in_(sa.select(usable.c.id)),
                sa.select(sa.func.count()).select_from(usable).scalar_subquery() == len(wanted),
            )
            .values(message_id=message_id, expires_at=None)
            .returning(attachment_t)
        )
    ).all()
    if len(rows) != len(wanted):
        raise Invalid(
            "attachmentIds is not valid",
            field="attachmentIds",
            message="each must be a file uploaded and completed in this conversation, not yet sent",
        )
    order = {attachment_id: i for i, attachment_id in enumerate(wanted)}
    return [files.present(dict(row._mapping)) for row in sorted(rows, key=lambda r: order[r.id])]


async def read(engine: AsyncEngine, files: Files, attachment_id: str) -> tuple[Any, bytes] | None:
    """A stored file's row and bytes (None when Switchboard does not hold it)."""
    async with engine.connect() as conn:
        row = (await conn.execute(sa.select(attachment_t).where(attachment_t.c.id == attachment_id))).first()
    if row is None or row.storage_key is None:
        return None
    data = await files.store.get(row.storage_key)
    return None if data is None else (row, data)


async def download(
    engine: AsyncEngine, files: Files, attachment_id: str, expires: str | None, signature: str | None
) -> tuple[Any, bytes]:
    """What a signed download URL serves: 403 when it is not ours or expired, 404 when the file is gone."""
    files.check(DOWNLOAD, attachment_id, expires, signature)
    found = await read(engine, files, attachment_id)
    if found is None:
        raise NotFound("File not found")
    return found


async def sweep(engine: AsyncEngine, files: Files) -> int:
    """Delete uploads never finished (or finished and never sent) past their time, with their bytes."""
    async with engine.begin() as conn:
        keys = (
            await conn.execute(
                sa.delete(attachment_t)
                .where(attachment_t.c.message_id.is_(None), attachment_t.c.expires_at < sa.func.now())
                .returning(attachment_t.c.storage_key)
            )
        ).scalars()
        gone = list(keys)
    for key in gone:
        if key is not None:
            try:
                await files.store.delete(key)
            except Exception:
                log.warning("swept attachment's file not deleted", storage_key=key, exc_info=True)
    return len(gone)
