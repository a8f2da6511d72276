"""Team tags: leads manage a team's tags; members put them on and take them off the team's conversations.

Rules and macros put tags on through ``add_tags`` too, in the caller's transaction.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from service.audit import record_audit
from service.auth.principal import Principal, requires_team_member
from service.db.tables import conversation_t, conversation_tag_t, macro_t, rule_t, tag_t
from service.errors import Conflict, NotFound, field_conflict, field_invalid, unique_violation
from service.events import record_event
from service.tags.schemas import (
    MAX_TAGS_PER_TEAM,
    ConversationTagList,
    ConversationTagPublic,
    TagCreate,
    TagList,
    TagPublic,
    TagUpdate,
)


async def _write(conn: AsyncConnection, statement: Any) -> Any:
    try:
        return (await conn.execute(statement)).one()
    except IntegrityError as exc:
        if unique_violation(exc) == "uq_tag_team_name":
            raise field_conflict("name", "The team already has a tag of this name") from exc
        raise


async def list_tags(conn: AsyncConnection, team_id: uuid.UUID) -> TagList:
    rows = await conn.execute(
        sa.select(tag_t).where(tag_t.c.team_id == team_id).order_by(sa.func.lower(tag_t.c.name), tag_t.c.id)
    )
    return TagList(items=[TagPublic.model_validate(row) for row in rows])


async def tags_of_teams(conn: AsyncConnection, team_ids: Sequence[uuid.UUID]) -> list[TagPublic]:
    """The tags of these teams, by name (the dashboard's pickers and filters)."""
    rows = await conn.execute(
        sa.select(tag_t).where(tag_t.c.team_id.in_(list(team_ids))).order_by(sa.func.lower(tag_t.c.name), tag_t.c.id)
    )
    return [TagPublic.model_validate(row) for row in rows]


async def _tag_of_team(conn: AsyncConnection, team_id: uuid.UUID, tag_id: uuid.UUID) -> Any:
    row = (await conn.execute(sa.select(tag_t).where(tag_t.c.id == tag_id, tag_t.c.team_id == team_id))).first()
    if row is None:
        raise NotFound("Tag not found")
    return row


async def create_tag(conn: AsyncConnection, team_id: uuid.UUID, data: TagCreate, actor: Principal) -> TagPublic:
    # The team row, locked: tags of one team are created one at a time, so the limit holds.
    if (await conn.execute(sa.text("SELECT 1 FROM team WHERE id = :id FOR UPDATE"), {"id": team_id})).first() is None:
        raise NotFound("Team not found")
    count = (
        await conn.execute(sa.select(sa.func.count()).select_from(tag_t).where(tag_t.c.team_id == team_id))
    ).scalar_one()
    if count >= MAX_TAGS_PER_TEAM:
        raise Conflict(f"A team has at most {MAX_TAGS_PER_TEAM} tags")
    row = await _write(
        conn,
        sa.insert(tag_t).values(id=uuid.uuid4(), team_id=team_id, name=data.name, color=data.color).returning(tag_t),
    )
    await record_audit(conn, actor.operator_id, "tag.created", "tag", row.id, {"teamId": team_id, "name": data.name})
    return TagPublic.model_validate(row)


async def update_tag(
    conn: AsyncConnection, team_id: uuid.UUID, tag_id: uuid.UUID, data: TagUpdate, actor: Principal
) -> TagPublic:
    row = await _tag_of_team(conn, team_id, tag_id)
    changes = {name: getattr(data, name) for name in data.model_fields_set if getattr(data, name) != getattr(row, name)}
    if not changes:
        return TagPublic.model_validate(row)
    row = await _write(conn, sa.update(tag_t).where(tag_t.c.id == tag_id).values(**changes).returning(tag_t))
    await record_audit(conn, actor.operator_id, "tag.updated", "tag", tag_id, changes)
    return TagPublic.model_validate(row)


async def delete_tag(conn: AsyncConnection, team_id: uuid.UUID, tag_id: uuid.UUID, actor: Principal) -> None:
    """The tag leaves every conversation, and the team's rules and macros stop setting it."""
    row = await _tag_of_team(conn, team_id, tag_id)
    await conn.execute(
        sa.update(rule_t)
        .where(rule_t.c.team_id == team_id)
        .values(set_tags=sa.func.array_remove(rule_t.c.set_tags, tag_id))
    )
    await conn.execute(
        sa.update(macro_t)
        .where(macro_t.c.team_id == team_id)
        .values(
            add_tags=sa.func.array_remove(macro_t.c.add_tags, tag_id),
            remove_tags=sa.func.array_remove(macro_t.c.remove_tags, tag_id),
        )
    )
    await conn.execute(sa.delete(tag_t).where(tag_t.c.id == tag_id))
    await record_audit(conn, actor.operator_id, "tag.deleted", "tag", tag_id, {"teamId": team_id, "name": row.name})


async def check_team_tags(conn: AsyncConnection, team_id: uuid.UUID, tag_ids: Sequence[uuid.UUID], field: str) -> None:
    """422 naming ``field`` unless every id is a tag of the team (another team's tag is as unknown as none)."""
    wanted = set(tag_ids)
    if not wanted:
        return
    found = set(
        (await conn.execute(sa.select(tag_t.c.id).where(tag_t.c.team_id == team_id, tag_t.c.id.in_(wanted)))).scalars()
    )
    if missing := sorted(wanted - found, key=str):
        raise field_invalid(field, f"No such tag in the team: {', '.join(map(str, missing))}")


# --- Tags on conversations ----------------------------------------------------------------------------------------


def tagged(tag_id: uuid.UUID) -> sa.ColumnElement[bool]:
    """A filter on ``conversation``: the tag is on it."""
    return (
        sa.select(conversation_tag_t.c.tag_id)
        .where(conversation_tag_t.c.conversation_id == conversation_t.c.id, conversation_tag_t.c.tag_id == tag_id)
        .exists()
    )


async def conversation_tags(conn: AsyncConnection, conversation_ids: Sequence[str]) -> dict[str, list[dict[str, Any]]]:
    """Each conversation's tags by name, as ``ConversationTagPublic`` fields."""
    if not conversation_ids:
        return {}
    rows = await conn.execute(
        sa.select(
            conversation_tag_t.c.conversation_id,
            tag_t.c.id,
            tag_t.c.team_id,
            tag_t.c.name,
            tag_t.c.color,
            conversation_tag_t.c.source,
            conversation_tag_t.c.added_by,
            conversation_tag_t.c.created_at.label("added_at"),
        )
        .join(tag_t, tag_t.c.id == conversation_tag_t.c.tag_id)
        .where(conversation_tag_t.c.conversation_id.in_(list(conversation_ids)))
        .order_by(sa.func.lower(tag_t.c.name), tag_t.c.id)
    )
    out: dict[str, list[dict[str, Any]]] = {}
    for row in rows:
        out.setdefault(row.conversation_id, []).append(
            {k: v for k, v in row._mapping.items() if k != "conversation_id"}
        )
    return out


async def _tag_list(conn: AsyncConnection, conversation_id: str) -> ConversationTagList:
    items = (await conversation_tags(conn, [conversation_id])).get(conversation_id, [])
    return ConversationTagList(items=[ConversationTagPublic.model_validate(item) for item in items])


async def _locked_for_tags(conn: AsyncConnection, conversation_id: str, principal: Principal) -> Any:
    """Lock the conversation (404 unless the caller sees it); 409 if it has no team yet (tags are a team's)."""
    if "\x00" in conversation_id:
        raise NotFound("Conversation not found")
    row = (
        await conn.execute(
            sa.select(conversation_t.c.id, conversation_t.c.team_id)
            .where(conversation_t.c.id == conversation_id)
            .with_for_update()
        )
    ).first()
    if row is None:
        raise NotFound("Conversation not found")
    requires_team_member(principal, row.team_id)
    return row


async def add_tags(
    conn: AsyncConnection,
    conversation_id: str,
    team_id: uuid.UUID,
    tag_ids: Sequence[uuid.UUID],
    *,
    source: str,
    actor_id: uuid.UUID | None,
) -> list[uuid.UUID]:
    """Put the team's tags on the conversation (only those of ``team_id``; ones already there stay as they were);
    returns the tags newly put on. An event tells the team."""
    if not tag_ids:
        return []
    added = list(
        (
            await conn.execute(
                pg_insert(conversation_tag_t)
                .from_select(
                    ["conversation_id", "tag_id", "added_by", "source"],
                    sa.select(
                        sa.literal(conversation_id),
                        tag_t.c.id,
                        sa.literal(actor_id, sa.Uuid),
                        sa.literal(source),
                    ).where(tag_t.c.team_id == team_id, tag_t.c.id.in_(list(tag_ids))),
                )
                .on_conflict_do_nothing()
                .returning(conversation_tag_t.c.tag_id)
            )
        ).scalars()
    )
    if added:
        await _changed(conn, conversation_id, team_id, actor_id, added=added, removed=[])
    return added


async def remove_tags(
    conn: AsyncConnection,
    conversation_id: str,
    team_id: uuid.UUID | None,
    tag_ids: Sequence[uuid.UUID],
    *,
    actor_id: uuid.UUID | None,
) -> list[uuid.UUID]:
    """Take the tags off the conversation (whatever team they are of); returns those that were on it."""
    if not tag_ids:
        return []
    removed = list(
        (
            await conn.execute(
                sa.delete(conversation_tag_t)
                .where(
                    conversation_tag_t.c.conversation_id == conversation_id,
                    conversation_tag_t.c.tag_id.in_(list(tag_ids)),
                )
                .returning(conversation_tag_t.c.tag_id)
            )
        ).scalars()
    )
    if removed:
        await _changed(conn, conversation_id, team_id, actor_id, added=[], removed=removed)
    return removed


async def _changed(
    conn: AsyncConnection,
    conversation_id: str,
    team_id: uuid.UUID | None,
    actor_id: uuid.UUID | None,
    *,
    added: list[uuid.UUID],
    removed: list[uuid.UUID],
) -> None:
    await record_event(
        conn,
        "conversation.tags_changed",
        team_id=team_id,
        conversation_id=conversation_id,
        data={
            "conversationId": conversation_id,
            "added": [str(t) for t in added],
            "removed": [str(t) for t in removed],
            "actorId": str(actor_id) if actor_id else None,
        },
    )


async def tag_conversation(
    conn: AsyncConnection, conversation_id: str, tag_id: uuid.UUID, principal: Principal
) -> ConversationTagList:
    """A member of the conversation's team puts one of the team's tags on it (422 naming ``tagId`` otherwise)."""
    conv = await _locked_for_tags(conn, conversation_id, principal)
    if conv.team_id is None:
        raise Conflict("This conversation has not been routed to a team yet")
    await check_team_tags(conn, conv.team_id, [tag_id], "tagId")
    await add_tags(conn, conversation_id, conv.team_id, [tag_id], source="operator", actor_id=principal.operator_id)
    return await _tag_list(conn, conversation_id)


async def untag_conversation(
    conn: AsyncConnection, conversation_id: str, tag_id: uuid.UUID, principal: Principal
) -> ConversationTagList:
    """A member of the conversation's team takes a tag off it (404 if it was not on it)."""
    conv = await _locked_for_tags(conn, conversation_id, principal)
    if not await remove_tags(conn, conversation_id, conv.team_id, [tag_id], actor_id=principal.operator_id):
        raise NotFound("Tag not found on this conversation")
    return await _tag_list(conn, conversation_id)


async def list_conversation_tags(
    conn: AsyncConnection, conversation_id: str, principal: Principal
) -> ConversationTagList:
    if "\x00" in conversation_id:
        raise NotFound("Conversation not found")
    team = (
        await conn.execute(sa.select(conversation_t.c.team_id).where(conversation_t.c.id == conversation_id))
    ).first()
    if team is None:
        raise NotFound("Conversation not found")
    requires_team_member(principal, team.team_id)
    return await _tag_list(conn, conversation_id)
