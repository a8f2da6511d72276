"""Screenshots of the visitor's page: an operator asks, the widget captures and uploads once, operators see it.

The widget's protocol (PocketPing widget 2.6): a ``screenshot_request`` event on its socket, or its poll of
``GET /screenshot/requests``; then ``POST /screenshot/upload`` (an upload URL), a ``PUT`` of the image to that
URL, and ``POST /screenshot/upload/complete``. The image is stored in the ``screenshot`` row itself.
"""

from __future__ import annotations

import secrets
import uuid
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from service.auth.principal import Principal
from service.conversations.services import visible_conversation
from service.db.tables import conversation_t, operator_t, screenshot_t
from service.errors import Conflict, Invalid, NotFound, Unprocessable, field_malformed
from service.events import record_event
from service.gateway.hub import SwitchboardPocketPing
from service.pagination import decode_cursor
from service.pagination import page as keyset_page

# What the widget is told the request came from (it only logs it).
REQUESTED_FROM = "switchboard"
IMAGE_TYPES = "PNG, JPEG or WebP"

s = screenshot_t.c
requester_o = operator_t.alias("requester")
_expired = sa.and_(s.status != "done", s.expires_at <= sa.func.now())
# What operators see: a request not done in time is expired, whatever step it reached.
_state = sa.case((_expired, "expired"), else_=s.status).label("state")


def sniff_image(data: bytes) -> str | None:
    """The image type the bytes say (never the client's word): PNG, JPEG or WebP, else None."""
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return "image/png"
    if data.startswith(b"\xff\xd8\xff"):
        return "image/jpeg"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "image/webp"
    return None


def _screenshots() -> sa.Select[Any]:
    columns = [column for column in screenshot_t.c if column.name not in ("content", "upload_key")]
    return sa.select(*columns, _state, requester_o.c.display_name.label("requester_name")).select_from(
        screenshot_t.outerjoin(requester_o, requester_o.c.id == s.requested_by)
    )


def screenshot_public(row: Any, prefix: str = "") -> dict[str, Any]:
    """A screenshot row as ``ScreenshotPublic`` fields; ``prefix`` is the site's ``PATH_PREFIX``."""
    done = row.state == "done"
    image = f"{prefix}/api/v1/conversations/{row.conversation_id}/screenshots/{row.id}/image"
    return {
        "id": row.id,
        "conversation_id": row.conversation_id,
        "status": row.state,
        "requested_by": {"id": row.requested_by, "display_name": row.requester_name} if row.requested_by else None,
        "requested_at": row.requested_at,
        "expires_at": row.expires_at,
        "captured_at": row.captured_at,
        "mime_type": row.mime_type,
        "size": row.size,
        "image_url": image if done else None,
    }


# --- Operators --------------------------------------------------------------------------------------------------


async def request_screenshot(
    engine: AsyncEngine,
    pocketping: SwitchboardPocketPing,
    principal: Principal,
    conversation_id: str,
    ttl_seconds: int,
) -> dict[str, Any]:
    """Ask the visitor's widget for a capture of their page; it has ``ttl_seconds`` to upload it."""
    request_id = uuid.uuid4()
    async with engine.begin() as conn:
        await visible_conversation(conn, principal, conversation_id)
        await conn.execute(
            sa.insert(screenshot_t).values(
                id=request_id,
                conversation_id=conversation_id,
                requested_by=principal.operator_id,
                expires_at=sa.func.now() + timedelta(seconds=ttl_seconds),
            )
        )
        row = (await conn.execute(_screenshots().where(s.id == request_id))).one()
    # The widget shows nothing of it either way; "silent" tells it so, as PocketPing's own requests do.
    await pocketping.ask_for_screenshot(conversation_id, _widget_request(request_id, principal.display_name))
    return screenshot_public(row)  # no image yet, so no URL


def _widget_request(request_id: uuid.UUID, requested_by: str | None) -> dict[str, Any]:
    """A request as the widget reads it, in the event and in the poll's answer."""
    return {"requestId": str(request_id), "requestedBy": requested_by, "requestedFrom": REQUESTED_FROM, "silent": True}


async def list_screenshots(
    conn: AsyncConnection, conversation_id: str, cursor: str | None, limit: int, prefix: str = ""
) -> tuple[list[dict[str, Any]], str | None]:
    """One page of the conversation's screenshots, oldest request first (keyset on ``(requested_at, id)``)."""
    statement = _screenshots().where(s.conversation_id == conversation_id)
    if cursor is not None:
        requested_at, screenshot_id = decode_cursor(cursor, 2)
        try:
            after = (datetime.fromisoformat(requested_at), uuid.UUID(screenshot_id))
        except ValueError:
            raise field_malformed("cursor", "use nextCursor from a previous page") from None
        statement = statement.where(sa.tuple_(s.requested_at, s.id) > after)
    rows = (await conn.execute(statement.order_by(s.requested_at, s.id).limit(limit + 1))).all()
    cursor_of = lambda r: (r["requested_at"].isoformat(), str(r["id"]))  # noqa: E731
    return keyset_page(rows, limit, lambda r: screenshot_public(r, prefix), cursor_of)


async def image(conn: AsyncConnection, conversation_id: str, screenshot_id: uuid.UUID) -> tuple[bytes, str]:
    """The stored image of a done screenshot of the conversation, and its sniffed type; 404 otherwise."""
    row = (
        await conn.execute(
            sa.select(s.content, s.mime_type).where(
                s.id == screenshot_id, s.conversation_id == conversation_id, s.status == "done"
            )
        )
    ).first()
    if row is None:
        raise NotFound("Screenshot not found")
    return row.content, row.mime_type


# --- The widget -------------------------------------------------------------------------------------------------


async def offer_pending(conn: AsyncConnection, session_id: str) -> list[dict[str, Any]]:
    """The session's requests not taken up yet, each handed out once (the widget captures every one it gets)."""
    known = await conn.scalar(sa.select(conversation_t.c.id).where(conversation_t.c.id == session_id))
    if known is None:
        raise NotFound("Session not found")
    name = sa.select(operator_t.c.display_name).where(operator_t.c.id == s.requested_by).scalar_subquery()
    offered = await conn.execute(
        sa.update(screenshot_t)
        .where(
            s.conversation_id == session_id, s.status == "pending", s.offered_at.is_(None), s.expires_at > sa.func.now()
        )
        .values(offered_at=sa.func.now())
        .returning(s.id, s.requested_at, name.label("requested_by"))
    )
    return [_widget_request(row.id, row.requested_by) for row in sorted(offered, key=lambda r: r.requested_at)]


def _request_id(value: str) -> uuid.UUID:
    try:
        return uuid.UUID(value)
    except ValueError:
        raise field_malformed("requestId", "the requestId of a screenshot_request") from None


async def _locked(conn: AsyncConnection, where: sa.ColumnElement[bool], what: str, field: str) -> Any:
    """The request (with its expired state and conversation), locked; 404 naming ``field`` when there is none."""
    row = (
        await conn.execute(
            sa.select(screenshot_t, _expired.label("expired"), conversation_t.c.team_id, conversation_t.c.assignee_id)
            .join(conversation_t, conversation_t.c.id == s.conversation_id)
            .where(where)
            .with_for_update(of=screenshot_t)
        )
    ).first()
    if row is None:
        raise NotFound(f"{what} not found", field=field)
    if row.status == "done":
        raise Conflict("This screenshot is already uploaded", field=field)
    if row.expired:
        raise Conflict("This screenshot request has expired", field=field)
    return row


async def start_upload(conn: AsyncConnection, session_id: str, request_id: str) -> tuple[str, Any]:
    """A fresh upload key for a live request of the session (a retry gets a new one); the key and ``expires_at``."""
    where = sa.and_(s.id == _request_id(request_id), s.conversation_id == session_id)
    row = await _locked(conn, where, "Screenshot request", "requestId")
    key = secrets.token_urlsafe(32)
    await conn.execute(sa.update(screenshot_t).where(s.id == row.id).values(status="uploading", upload_key=key))
    return key, row.expires_at


async def store_upload(conn: AsyncConnection, key: str, data: bytes) -> None:
    """Store the uploaded image once, as the type its bytes say, with its ``screenshot.captured`` event."""
    row = await _locked(conn, sa.and_(s.upload_key == key, s.status == "uploading"), "Upload", "attachmentId")
    mime_type = sniff_image(data)
    if mime_type is None:
        raise Unprocessable(f"The upload is not a {IMAGE_TYPES} image", field="body")
    await conn.execute(
        sa.update(screenshot_t)
        .where(s.id == row.id)
        .values(status="done", content=data, mime_type=mime_type, size=len(data), captured_at=sa.func.now())
    )
    await record_event(
        conn,
        "screenshot.captured",
        team_id=row.team_id,
        conversation_id=row.conversation_id,
        operator_ids=sorted({o for o in (row.requested_by, row.assignee_id) if o is not None}),
        data={
            "conversationId": row.conversation_id,
            "screenshotId": str(row.id),
            "requestedBy": str(row.requested_by) if row.requested_by else None,
            "mimeType": mime_type,
            "size": len(data),
        },
    )


async def complete_upload(
    conn: AsyncConnection, session_id: str, request_id: str, attachment_id: str, size: int
) -> dict[str, Any]:
    """The widget's last step: the image must be stored under that upload, with the size the widget measured."""
    row = (
        await conn.execute(
            sa.select(s.id, s.status, s.upload_key, s.size).where(
                s.id == _request_id(request_id), s.conversation_id == session_id
            )
        )
    ).first()
    if row is None:
        raise NotFound("Screenshot request not found", field="requestId")
    if row.status != "done" or not secrets.compare_digest(row.upload_key or "", attachment_id):
        raise Conflict("Nothing was uploaded for this attachmentId", field="attachmentId")
    if row.size != size:
        raise Invalid(f"size is not valid: the stored image has {row.size} bytes", field="size")
    return {"success": True, "attachmentId": attachment_id, "screenshotId": str(row.id)}
