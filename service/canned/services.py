"""Canned responses: team-scoped (leads manage, members use) and personal (the owner only); rendering."""

from __future__ import annotations

import uuid
from typing import Any

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from service.audit import record_audit
from service.auth.principal import Principal, requires_lead, requires_team_member
from service.canned import template
from service.canned.schemas import CannedCreate, CannedPage, CannedPublic, CannedUpdate, RenderedPublic
from service.db.tables import canned_t, conversation_t, operator_t, team_t
from service.errors import Conflict, NotFound, field_conflict, field_invalid, still_referenced, unique_violation
from service.pagination import decode_cursor, page

SHORTCUT_INDEXES = frozenset({"uq_canned_team_shortcut", "uq_canned_owner_shortcut"})


def _public(row: Any) -> CannedPublic:
    return CannedPublic.model_validate(
        {
            **row._mapping,
            "scope": "team" if row.team_id is not None else "personal",
            "variables": template.variables(row.body),
        }
    )


def _check_body(body: str) -> None:
    """Unknown variables and malformed placeholders are refused when saved, never found when sending."""
    try:
        template.parse(body)
    except template.TemplateError as exc:
        raise field_invalid("body", str(exc)) from exc


async def _write(conn: AsyncConnection, statement: Any) -> Any:
    try:
        return (await conn.execute(statement)).one()
    except IntegrityError as exc:
        if unique_violation(exc) in SHORTCUT_INDEXES:
            raise field_conflict("shortcut", "This shortcut is already used in this scope") from exc
        raise


async def _visible(conn: AsyncConnection, canned_id: uuid.UUID, principal: Principal, *, manage: bool) -> Any:
    """The response if the caller may use it (``manage``: change it); someone else's personal one is a 404."""
    row = (await conn.execute(sa.select(canned_t).where(canned_t.c.id == canned_id))).first()
    if row is None or (row.owner_id is not None and row.owner_id != principal.operator_id):
        raise NotFound("Canned response not found")
    if row.team_id is not None:
        requires_team_member(principal, row.team_id, "Canned response")
        if manage:
            requires_lead(principal, row.team_id)
    return row


async def get_canned(conn: AsyncConnection, canned_id: uuid.UUID, principal: Principal) -> CannedPublic:
    return _public(await _visible(conn, canned_id, principal, manage=False))


async def list_canned(
    conn: AsyncConnection,
    principal: Principal,
    *,
    team_id: uuid.UUID | None,
    prefix: str | None,
    cursor: str | None,
    limit: int,
) -> CannedPage:
    """The caller's own responses and their teams' (or only ``team_id``'s), by shortcut."""
    if team_id is not None:
        requires_team_member(principal, team_id, "Team")
    teams = [team_id] if team_id is not None else list(principal.teams)
    query = (
        sa.select(canned_t)
        .where(sa.or_(canned_t.c.owner_id == principal.operator_id, canned_t.c.team_id.in_(teams)))
        .order_by(canned_t.c.shortcut, canned_t.c.id)
        .limit(limit + 1)
    )
    if prefix:
        query = query.where(canned_t.c.shortcut.startswith(prefix.lower(), autoescape=True))
    if cursor is not None:
        shortcut, last_id = decode_cursor(cursor, 2)
        query = query.where(sa.tuple_(canned_t.c.shortcut, sa.cast(canned_t.c.id, sa.Text)) > (shortcut, last_id))
    rows = (await conn.execute(query)).all()
    items, next_cursor = page(rows, limit, _public, lambda item: (item.shortcut, item.id))
    return CannedPage(items=items, next_cursor=next_cursor)


async def create_canned(conn: AsyncConnection, data: CannedCreate, principal: Principal) -> CannedPublic:
    if data.team_id is not None:
        requires_lead(principal, data.team_id)
        if await conn.scalar(sa.select(team_t.c.id).where(team_t.c.id == data.team_id)) is None:
            raise NotFound("Team not found")
    _check_body(data.body)
    values = {
        "id": uuid.uuid4(),
        "team_id": data.team_id,
        "owner_id": None if data.team_id is not None else principal.operator_id,
        "shortcut": data.shortcut,
        "title": data.title,
        "body": data.body,
    }
    row = await _write(conn, sa.insert(canned_t).values(**values).returning(canned_t))
    audit = {"teamId": data.team_id, "shortcut": data.shortcut, "title": data.title}
    await record_audit(conn, principal.operator_id, "canned.created", "canned_response", row.id, audit)
    return _public(row)


async def update_canned(
    conn: AsyncConnection, canned_id: uuid.UUID, data: CannedUpdate, principal: Principal
) -> CannedPublic:
    row = await _visible(conn, canned_id, principal, manage=True)
    changes = {name: getattr(data, name) for name in data.model_fields_set if getattr(data, name) != getattr(row, name)}
    if not changes:
        return _public(row)
    if "body" in changes:
        _check_body(changes["body"])
    row = await _write(
        conn,
        sa.update(canned_t)
        .where(canned_t.c.id == canned_id)
        .values(**changes, updated_at=sa.func.now())
        .returning(canned_t),
    )
    await record_audit(conn, principal.operator_id, "canned.updated", "canned_response", canned_id, changes)
    return _public(row)


async def delete_canned(conn: AsyncConnection, canned_id: uuid.UUID, principal: Principal) -> None:
    row = await _visible(conn, canned_id, principal, manage=True)
    try:
        await conn.execute(sa.delete(canned_t).where(canned_t.c.id == canned_id))
    except IntegrityError as exc:
        if still_referenced(exc) == "fk_macro_canned_id_canned_response":
            raise Conflict("A macro of the team sends this response; change or delete the macro first") from exc
        raise
    audit = {"teamId": row.team_id, "shortcut": row.shortcut}
    await record_audit(conn, principal.operator_id, "canned.deleted", "canned_response", canned_id, audit)


def _text(value: Any) -> str | None:
    return None if value is None else str(value)


async def _values(conn: AsyncConnection, conversation_id: str | None, principal: Principal) -> dict[str, str | None]:
    """Every template variable's value for the caller, and for the conversation when one is given."""
    me = (await conn.execute(sa.select(operator_t.c.email).where(operator_t.c.id == principal.operator_id))).one()
    names = principal.display_name.split()
    values = {
        "operator.name": principal.display_name,
        "operator.firstName": names[0] if names else None,
        "operator.email": me.email,
    }
    if conversation_id is None:
        return values
    conversation = (
        await conn.execute(
            sa.select(
                conversation_t.c.id,
                conversation_t.c.team_id,
                conversation_t.c.identity,
                conversation_t.c.session_metadata,
                conversation_t.c.user_phone,
                conversation_t.c.user_phone_country,
                team_t.c.name.label("team_name"),
            )
            .select_from(conversation_t.outerjoin(team_t, team_t.c.id == conversation_t.c.team_id))
            .where(conversation_t.c.id == conversation_id)
        )
    ).first()
    if conversation is None:
        raise NotFound("Conversation not found")
    requires_team_member(principal, conversation.team_id)
    identity = conversation.identity or {}
    meta = conversation.session_metadata or {}
    return values | {
        "visitor.name": _text(identity.get("name")),
        "visitor.email": _text(identity.get("email")),
        "visitor.id": _text(identity.get("id")),
        "visitor.phone": _text(conversation.user_phone or identity.get("phone")),
        "visitor.country": _text(meta.get("country") or conversation.user_phone_country),
        "visitor.language": _text(meta.get("language")),
        "visitor.url": _text(meta.get("url")),
        "team.name": conversation.team_name,
        "conversation.id": conversation.id,
    }


async def render_canned(
    conn: AsyncConnection, canned_id: uuid.UUID, conversation_id: str, principal: Principal
) -> RenderedPublic:
    """Fill the response for this conversation, as sent by the caller."""
    row = await _visible(conn, canned_id, principal, manage=False)
    body, missing = template.render(row.body, await _values(conn, conversation_id, principal))
    return RenderedPublic(body=body, missing=missing)


async def preview_canned(
    conn: AsyncConnection, draft: str, conversation_id: str | None, principal: Principal
) -> RenderedPublic:
    """A draft body filled as ``render`` would fill it (visitor and team left empty without a conversation)."""
    _check_body(draft)
    body, missing = template.render(draft, await _values(conn, conversation_id, principal))
    return RenderedPublic(body=body, missing=missing)
