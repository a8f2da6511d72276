"""Connected sites: their keys (hashed at rest, shown once), and the events their connectors send, applied once."""

from __future__ import annotations

import asyncio
import hashlib
import secrets
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa
from pocketping.models import CsatRequest, MessageStatus, ReadRequest, Session
from pocketping.models import Message as SdkMessage
from pydantic import ValidationError
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from service import connect
from service.crypto import encrypt_secret
from service.db.tables import conversation_t, message_t, site_event_t, site_t, team_t
from service.errors import NotFound, field_invalid
from service.gateway.bridge import SessionNotFound
from service.gateway.hub import SwitchboardPocketPing
from service.gateway.storage import session_to_row
from service.idempotency import advisory_lock
from service.pagination import decode_cursor, encode_cursor
from service.settings import Settings
from service.sites.schemas import (
    ConnectBatch,
    ConnectEvent,
    ConnectResult,
    RejectedEvent,
    SiteCreate,
    SiteCreated,
    SitePage,
    SitePublic,
    SiteUpdate,
)

KEY_PREFIX = "sbk_"
CALLBACK_PURPOSE = "site-callback"  # the key-derivation label of callback secrets at rest
INGEST_SCOPE = "ingest"
SITE_COLUMNS = (
    site_t.c.id,
    site_t.c.name,
    site_t.c.key_prefix,
    site_t.c.scopes,
    site_t.c.callback_url,
    site_t.c.team_id,
    site_t.c.revoked_at,
    site_t.c.key_rotated_at,
    site_t.c.created_at,
)


def hash_key(key: str) -> str:
    """What is stored of a site key: its SHA-256, hex."""
    return hashlib.sha256(key.encode()).hexdigest()


def _new_key(settings: Settings) -> tuple[str, dict[str, Any]]:
    """A fresh key and the columns that stand for it (its hash, prefix and encrypted callback secret)."""
    key = KEY_PREFIX + secrets.token_urlsafe(32)
    secret = encrypt_secret(settings.secret_key, CALLBACK_PURPOSE, connect.callback_secret(key))
    return key, {"key_hash": hash_key(key), "key_prefix": key[:12], "callback_secret_encrypted": secret}


async def _team_exists(conn: AsyncConnection, team_id: uuid.UUID | None) -> None:
    if team_id is not None and await conn.scalar(sa.select(team_t.c.id).where(team_t.c.id == team_id)) is None:
        raise field_invalid("teamId", "no such team")


# --- Administration --------------------------------------------------------------------------------------------


async def create_site(conn: AsyncConnection, data: SiteCreate, settings: Settings) -> SiteCreated:
    """A new site with its key, returned this once."""
    await _team_exists(conn, data.team_id)
    key, columns = _new_key(settings)
    values = {"name": data.name, "callback_url": data.callback_url, "team_id": data.team_id, **columns}
    row = (await conn.execute(sa.insert(site_t).values(**values).returning(*SITE_COLUMNS))).one()
    return SiteCreated(**SitePublic.model_validate(row).model_dump(), key=key)


async def list_sites(conn: AsyncConnection, cursor: str | None, limit: int) -> SitePage:
    """Every site, oldest first."""
    statement = sa.select(*SITE_COLUMNS)
    if cursor is not None:
        created_at, last_id = decode_cursor(cursor, 2)
        statement = statement.where(
            sa.tuple_(site_t.c.created_at, site_t.c.id)
            > sa.tuple_(sa.cast(created_at, site_t.c.created_at.type), sa.cast(last_id, sa.Uuid))
        )
    rows = (await conn.execute(statement.order_by(site_t.c.created_at, site_t.c.id).limit(limit + 1))).all()
    page = rows[:limit]
    after = encode_cursor(page[-1].created_at.isoformat(), str(page[-1].id)) if len(rows) > limit else None
    return SitePage(items=[SitePublic.model_validate(row) for row in page], next_cursor=after)


async def get_site(conn: AsyncConnection, site_id: uuid.UUID) -> SitePublic:
    row = (await conn.execute(sa.select(*SITE_COLUMNS).where(site_t.c.id == site_id))).first()
    if row is None:
        raise NotFound("Site not found")
    return SitePublic.model_validate(row)


async def update_site(conn: AsyncConnection, site_id: uuid.UUID, data: SiteUpdate) -> SitePublic:
    """Change the name, callback URL or team; fields left out stay as they are."""
    # Read as set (the URL validator already made it a string): omitted fields stay, an explicit null clears.
    changes = {name: getattr(data, name) for name in data.model_fields_set}
    if changes.get("name", "") is None:
        raise field_invalid("name", "must not be null")
    await _team_exists(conn, changes.get("team_id"))
    if not changes:
        return await get_site(conn, site_id)
    statement = sa.update(site_t).where(site_t.c.id == site_id).values(**changes).returning(*SITE_COLUMNS)
    row = (await conn.execute(statement)).first()
    if row is None:
        raise NotFound("Site not found")
    return SitePublic.model_validate(row)


async def rotate_key(conn: AsyncConnection, site_id: uuid.UUID, settings: Settings) -> SiteCreated:
    """A new key (returned this once); the old one stops working now, and a revoked site works again."""
    key, columns = _new_key(settings)
    statement = (
        sa.update(site_t)
        .where(site_t.c.id == site_id)
        .values(**columns, revoked_at=None, key_rotated_at=sa.func.now())
        .returning(*SITE_COLUMNS)
    )
    row = (await conn.execute(statement)).first()
    if row is None:
        raise NotFound("Site not found")
    return SiteCreated(**SitePublic.model_validate(row).model_dump(), key=key)


async def revoke_site(conn: AsyncConnection, site_id: uuid.UUID) -> SitePublic:
    """Its key stops working (its conversations stay); rotating the key brings it back."""
    statement = (
        sa.update(site_t)
        .where(site_t.c.id == site_id)
        .values(revoked_at=sa.func.coalesce(site_t.c.revoked_at, sa.func.now()))
        .returning(*SITE_COLUMNS)
    )
    row = (await conn.execute(statement)).first()
    if row is None:
        raise NotFound("Site not found")
    return SitePublic.model_validate(row)


# --- Ingest ------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Caller:
    """The site a connector request proved it speaks for."""

    id: uuid.UUID
    team_id: uuid.UUID | None


async def authenticate(
    conn: AsyncConnection, headers: Mapping[str, str], body: bytes, tolerance: float
) -> Caller | str:
    """The site whose live key is in the headers and signed the body freshly; otherwise why not (one refusal)."""
    key = headers.get(connect.KEY_HEADER.lower())
    if not key:
        return "missing site key"
    row = (
        await conn.execute(
            sa.select(site_t.c.id, site_t.c.team_id, site_t.c.scopes, site_t.c.revoked_at).where(
                site_t.c.key_hash == hash_key(key)
            )
        )
    ).first()
    if row is None or row.revoked_at is not None or INGEST_SCOPE not in row.scopes:
        return "unknown or revoked site key"
    refused = connect.verify(key, headers, body, tolerance)
    if refused is not None:
        return refused
    return Caller(row.id, row.team_id)


async def ingest(
    engine: AsyncEngine, pocketping: SwitchboardPocketPing, site: Caller, batch: ConnectBatch
) -> ConnectResult:
    """Apply the events in order, each once; returns once all it applied, and their ids, are committed.

    One site's batches are applied one at a time (an advisory lock), so a re-sent batch racing the first cannot
    apply an event twice. The ids of the events applied are recorded at the end; every kind is idempotent by its
    own ids as well (session and message ids), so a batch cut short (a crash, a lost database) and re-sent applies
    each event once. Consecutive visitor messages go to the routing bridge together, in order, as one group commit.
    """
    async with engine.begin() as lock:
        # Held by this transaction while the events are applied on other connections.
        await advisory_lock(lock, f"site\n{site.id}")
        state = await _Batch.load(engine, site, batch)
        for event in batch.events:
            if event.id in state.seen:
                state.duplicates += 1
                continue
            state.seen.add(event.id)
            if event.type == "message":
                state.messages.append(event)
                continue
            await state.flush_messages(pocketping)
            state.done(event, await _apply(engine, pocketping, state, event))
        await state.flush_messages(pocketping)
        if state.recorded:
            async with engine.begin() as conn:
                rows = [{"site_id": site.id, "event_id": event_id} for event_id in state.recorded]
                await conn.execute(insert(site_event_t).values(rows).on_conflict_do_nothing())
    return ConnectResult(applied=state.applied, duplicates=state.duplicates, rejected=state.rejected)


@dataclass
class _Batch:
    """What one batch has read and done so far."""

    site: Caller
    seen: set[str]
    # Each session's site (None: the hosted widget's), for the sessions the batch names that exist.
    owners: dict[str, uuid.UUID | None]
    # The conversation of each message id the batch names that is stored already.
    stored: dict[str, str]
    messages: list[ConnectEvent] = field(default_factory=list)
    recorded: list[str] = field(default_factory=list)
    rejected: list[RejectedEvent] = field(default_factory=list)
    applied: int = 0
    duplicates: int = 0

    @classmethod
    async def load(cls, engine: AsyncEngine, site: Caller, batch: ConnectBatch) -> _Batch:
        message_ids = [
            str(m.get("id"))
            for e in batch.events
            if e.type == "message" and isinstance(m := e.data.get("message"), dict)
        ]
        async with engine.connect() as conn:
            seen = await conn.execute(
                sa.select(site_event_t.c.event_id).where(
                    site_event_t.c.site_id == site.id, site_event_t.c.event_id.in_([e.id for e in batch.events])
                )
            )
            owners = await conn.execute(
                sa.select(conversation_t.c.id, conversation_t.c.site_id).where(
                    conversation_t.c.id.in_({e.session_id for e in batch.events})
                )
            )
            stored = await conn.execute(
                sa.select(message_t.c.id, message_t.c.conversation_id).where(message_t.c.id.in_(message_ids))
            )
            return cls(
                site, set(seen.scalars()), {r.id: r.site_id for r in owners}, {r.id: r.conversation_id for r in stored}
            )

    def done(self, event: ConnectEvent, reason: str | None) -> None:
        self.recorded.append(event.id)
        if reason is None:
            self.applied += 1
        else:
            self.rejected.append(RejectedEvent(id=event.id, reason=reason))

    def refusal(self, event: ConnectEvent) -> str | None:
        """Why the event may not touch its session, if it may not."""
        if event.session_id not in self.owners:
            return None if event.type in ("session", "identify") else "unknown session"
        return None if self.owners[event.session_id] == self.site.id else "session belongs to another site"

    async def flush_messages(self, pocketping: SwitchboardPocketPing) -> None:
        """The visitor messages collected, stored and routed together (in order: the routing bridge keeps it)."""
        events, self.messages = self.messages, []
        accepted: list[tuple[ConnectEvent, SdkMessage]] = []
        for event in events:
            reason = self.refusal(event)
            message: SdkMessage | None = None
            if reason is None:
                try:
                    message = SdkMessage.model_validate(event.data["message"])
                except (KeyError, TypeError, ValidationError) as exc:
                    reason = f"malformed message event: {type(exc).__name__}"
            if message is not None:
                reason = self._message_refusal(event, message)
            if reason is not None or message is None or message.id in self.stored:
                self.done(event, reason)
                continue
            self.stored[message.id] = event.session_id
            accepted.append((event, message))
        results = await asyncio.gather(
            *(pocketping.receive_visitor_message(m) for _, m in accepted), return_exceptions=True
        )
        for (event, _), result in zip(accepted, results, strict=True):
            if isinstance(result, SessionNotFound):
                self.done(event, "unknown session")
            elif isinstance(result, BaseException):
                raise result
            else:
                self.done(event, None)

    def _message_refusal(self, event: ConnectEvent, message: SdkMessage) -> str | None:
        if message.session_id != event.session_id:
            return "message sessionId differs"
        if message.sender.value != "visitor":
            return "only visitor messages are sent by a site"
        if self.stored.get(message.id, event.session_id) != event.session_id:
            return "message id already used"
        return None


async def _apply(
    engine: AsyncEngine, pocketping: SwitchboardPocketPing, state: _Batch, event: ConnectEvent
) -> str | None:
    """Apply one event other than a message; None when done, else why it is rejected for good."""
    reason = state.refusal(event)
    if reason is not None:
        return reason
    try:
        if event.type in ("session", "identify"):
            session = Session.model_validate(event.data["session"])
            if session.id != event.session_id:
                return "session id differs from sessionId"
            await _upsert_session(engine, pocketping, state.site, session)
            state.owners[session.id] = state.site.id
        elif event.type == "typing":
            await pocketping.storage.record_typing(event.session_id, bool(event.data["isTyping"]))
        elif event.type == "read":
            ids = [str(i) for i in event.data["messageIds"]][:500]
            status = MessageStatus(event.data["status"])
            await pocketping.handle_read(ReadRequest(session_id=event.session_id, message_ids=ids, status=status))
        elif event.type == "disconnect":
            await pocketping.handle_disconnect(event.session_id, event.data.get("duration"), event.data.get("reason"))
        elif event.type == "csat":
            request = CsatRequest(
                session_id=event.session_id, score=int(event.data["score"]), comment=event.data.get("comment")
            )
            await pocketping.handle_csat(request)
    except (KeyError, TypeError, ValueError, ValidationError) as exc:
        return f"malformed {event.type} event: {type(exc).__name__}"[:200]
    return None


async def _upsert_session(
    engine: AsyncEngine, pocketping: SwitchboardPocketPing, site: Caller, session: Session
) -> None:
    """The site's session as a conversation of the site: new, or its visit and identity updated; then its team."""
    row = session_to_row(session)
    async with engine.begin() as conn:
        statement = insert(conversation_t).values(**row, site_id=site.id, selected_team_id=site.team_id)
        changed = ("last_activity", "session_metadata", "identity", "user_phone", "user_phone_country")
        await conn.execute(
            statement.on_conflict_do_update(
                index_elements=[conversation_t.c.id],
                set_={c: statement.excluded[c] for c in changed},
                where=conversation_t.c.site_id == site.id,
            )
        )
        if site.team_id is None:
            # As for the hosted widget at connect and identify: the routing rules choose the team.
            await pocketping.hooks.choose_team(conn, session.id)
