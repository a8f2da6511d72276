"""Macros: a team's leads define them; a member applies one to a conversation of the team in one click.

Applying sends the canned reply through the operator reply path (widget, bridges, first response and SLA
see an ordinary reply), then takes tags off, puts tags on and runs the routing action (assign, transfer,
close) through the routing services, all in one transaction. What can be checked before the reply is
checked first, so a macro that cannot run sends nothing.
"""

from __future__ import annotations

import uuid
from typing import Any

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from service import idempotency
from service.audit import record_audit
from service.auth.principal import Principal
from service.canned import services as canned
from service.conversations import services as conversations
from service.db.tables import canned_t, conversation_t, macro_t, member_t, team_t
from service.db.transactions import in_transaction
from service.errors import Conflict, NotFound, field_conflict, field_invalid, unique_violation
from service.gateway.hub import SwitchboardPocketPing
from service.macros.schemas import MAX_MACROS_PER_TEAM, MacroApplied, MacroCreate, MacroList, MacroPublic
from service.routing import handoff, queries
from service.tags import services as tags


def _public(row: Any) -> MacroPublic:
    return MacroPublic.model_validate(row)


async def list_macros(conn: AsyncConnection, team_id: uuid.UUID) -> MacroList:
    rows = await conn.execute(
        sa.select(macro_t).where(macro_t.c.team_id == team_id).order_by(sa.func.lower(macro_t.c.name), macro_t.c.id)
    )
    return MacroList(items=[_public(row) for row in rows])


async def _macro_of_team(conn: AsyncConnection, team_id: uuid.UUID | None, macro_id: uuid.UUID) -> Any:
    row = (await conn.execute(sa.select(macro_t).where(macro_t.c.id == macro_id, macro_t.c.team_id == team_id))).first()
    if row is None:
        raise NotFound("Macro not found")
    return row


async def _check(conn: AsyncConnection, team_id: uuid.UUID, data: MacroCreate) -> None:
    """What the body alone cannot tell: the response, tags and transfer target are the team's (422 naming each)."""
    if data.canned_id is not None:
        owner = await conn.scalar(sa.select(canned_t.c.team_id).where(canned_t.c.id == data.canned_id))
        if owner != team_id:
            raise field_invalid("cannedId", "No such canned response of the team (personal ones cannot be used)")
    await tags.check_team_tags(conn, team_id, data.add_tags, "addTags")
    await tags.check_team_tags(conn, team_id, data.remove_tags, "removeTags")
    if both := set(data.add_tags) & set(data.remove_tags):
        raise field_invalid("removeTags", f"Also in addTags: {', '.join(sorted(map(str, both)))}")
    if data.action != "transfer":
        for name, value in (
            ("transferTeamId", data.transfer_team_id),
            ("transferOperatorId", data.transfer_operator_id),
        ):
            if value is not None:
                raise field_invalid(name, "Only for action transfer")
    elif (data.transfer_team_id is None) == (data.transfer_operator_id is None):
        raise field_invalid("transferTeamId", "A transfer needs exactly one of transferTeamId and transferOperatorId")
    elif data.transfer_team_id is not None:
        exists = await conn.scalar(sa.select(team_t.c.id).where(team_t.c.id == data.transfer_team_id))
        if exists is None or data.transfer_team_id == team_id:
            raise field_invalid("transferTeamId", "No such other team")
    else:
        member = await conn.scalar(
            sa.select(member_t.c.operator_id).where(
                member_t.c.team_id == team_id, member_t.c.operator_id == data.transfer_operator_id
            )
        )
        if member is None:
            raise field_invalid("transferOperatorId", "No such member of the team")
    if data.canned_id is None and not data.add_tags and not data.remove_tags and data.action == "none":
        raise field_invalid("action", "A macro must reply, change tags or act")


async def _write(conn: AsyncConnection, statement: Any) -> Any:
    try:
        return (await conn.execute(statement)).one()
    except IntegrityError as exc:
        if unique_violation(exc) == "uq_macro_team_name":
            raise field_conflict("name", "The team already has a macro of this name") from exc
        raise


def _values(data: MacroCreate) -> dict[str, Any]:
    return data.model_dump(exclude_unset=False)


async def create_macro(conn: AsyncConnection, team_id: uuid.UUID, data: MacroCreate, actor: Principal) -> MacroPublic:
    # The team row, locked: macros of one team are created one at a time, so the limit holds.
    if (await conn.execute(sa.select(team_t.c.id).where(team_t.c.id == team_id).with_for_update())).first() is None:
        raise NotFound("Team not found")
    count = (
        await conn.execute(sa.select(sa.func.count()).select_from(macro_t).where(macro_t.c.team_id == team_id))
    ).scalar_one()
    if count >= MAX_MACROS_PER_TEAM:
        raise Conflict(f"A team has at most {MAX_MACROS_PER_TEAM} macros")
    await _check(conn, team_id, data)
    row = await _write(
        conn, sa.insert(macro_t).values(id=uuid.uuid4(), team_id=team_id, **_values(data)).returning(macro_t)
    )
    audit = data.model_dump(mode="json", by_alias=True)
    await record_audit(conn, actor.operator_id, "macro.created", "macro", row.id, {"teamId": team_id, **audit})
    return _public(row)


async def replace_macro(
    conn: AsyncConnection, team_id: uuid.UUID, macro_id: uuid.UUID, data: MacroCreate, actor: Principal
) -> MacroPublic:
    await _macro_of_team(conn, team_id, macro_id)
    await _check(conn, team_id, data)
    row = await _write(
        conn,
        sa.update(macro_t)
        .where(macro_t.c.id == macro_id)
        .values(**_values(data), updated_at=sa.func.now())
        .returning(macro_t),
    )
    await record_audit(
        conn, actor.operator_id, "macro.replaced", "macro", macro_id, data.model_dump(mode="json", by_alias=True)
    )
    return _public(row)


async def delete_macro(conn: AsyncConnection, team_id: uuid.UUID, macro_id: uuid.UUID, actor: Principal) -> None:
    row = await _macro_of_team(conn, team_id, macro_id)
    await conn.execute(sa.delete(macro_t).where(macro_t.c.id == macro_id))
    await record_audit(
        conn, actor.operator_id, "macro.deleted", "macro", macro_id, {"teamId": team_id, "name": row.name}
    )


# --- Applying --------------------------------------------------------------------------------------------------


async def _precheck(conn: AsyncConnection, conv: Any, macro: Any) -> None:
    """Refuse, before anything is sent, a macro whose action the conversation's state already rules out."""
    if conv.status == "closed":
        raise Conflict("The conversation is closed; reopen it first")
    if macro.action != "transfer":
        return
    if macro.transfer_team_id is None and macro.transfer_operator_id is None:
        raise Conflict("The macro's transfer target no longer exists; a lead must change the macro")
    if macro.transfer_team_id is not None and macro.transfer_team_id == conv.team_id:
        raise Conflict("The conversation is already in that team")
    if macro.transfer_operator_id is None:
        return
    if conv.status == "assigned" and conv.assignee_id == macro.transfer_operator_id:
        raise Conflict("The conversation is already assigned to that operator")
    member = await conn.scalar(
        sa.select(member_t.c.operator_id).where(
            member_t.c.team_id == conv.team_id, member_t.c.operator_id == macro.transfer_operator_id
        )
    )
    if member is None:
        raise Conflict("The macro's operator is no longer a member of the team; a lead must change the macro")


async def _act(conn: AsyncConnection, conversation_id: str, macro: Any, principal: Principal) -> None:
    """The macro's routing action, through the routing services (their checks, locks, events and drains)."""
    me = principal.operator_id
    if macro.action == "close":
        await handoff.close_conversation(conn, conversation_id, actor_id=me)
    elif macro.action == "transfer" and macro.transfer_team_id is not None:
        await handoff.transfer_to_team(conn, conversation_id, macro.transfer_team_id, actor_id=me)
    elif macro.action == "transfer":
        await handoff.transfer_to_operator(conn, conversation_id, macro.transfer_operator_id, actor_id=me)
    elif macro.action == "assign":
        conv = (
            await conn.execute(
                sa.select(conversation_t.c.status, conversation_t.c.assignee_id).where(
                    conversation_t.c.id == conversation_id
                )
            )
        ).one()
        if conv.status in ("new", "queued"):
            await handoff.claim(conn, conversation_id, me, actor_id=me)
        elif conv.assignee_id != me:
            await handoff.transfer_to_operator(conn, conversation_id, me, actor_id=me)


async def apply_macro(
    engine: AsyncEngine,
    pocketping: SwitchboardPocketPing,
    principal: Principal,
    conversation_id: str,
    macro_id: uuid.UUID,
    key: str | None = None,
) -> tuple[bool, MacroApplied]:
    """Reply with the macro's canned response (as the caller), then change tags and act in one transaction;
    returns (applied now, what it did).

    With ``key``, a repeat answers what the first application did: the reply is sent under the same key
    (so once), and the tags and action are remembered in their transaction.
    """
    idempotency.check_key(key)
    me = principal.operator_id
    bound_to = idempotency.request_hash("macro", conversation_id, str(macro_id))
    if key is not None:
        async with engine.begin() as conn:
            if earlier := await idempotency.replayed(conn, me, key, bound_to):
                return False, MacroApplied.model_validate(earlier)
    async with engine.connect() as conn:
        conv = await conversations.visible_conversation(conn, principal, conversation_id)
        macro = await _macro_of_team(conn, conv.team_id, macro_id)
        await _precheck(conn, conv, macro)
        body = None
        if macro.canned_id is not None:
            body = (await canned.render_canned(conn, macro.canned_id, conversation_id, principal)).body
    message = None
    if body is not None:
        _, message = await conversations.reply(engine, pocketping, principal, conversation_id, body, key)

    async def rest(conn: AsyncConnection) -> tuple[bool, MacroApplied]:
        if key is not None and (earlier := await idempotency.replayed(conn, me, key, bound_to)):
            return False, MacroApplied.model_validate(earlier)  # a concurrent duplicate finished first
        if await queries.lock_for_member(conn, conversation_id, principal) != macro.team_id:
            raise Conflict("The conversation moved to another team meanwhile")
        await tags.remove_tags(conn, conversation_id, macro.team_id, macro.remove_tags, actor_id=me)
        await tags.add_tags(conn, conversation_id, macro.team_id, macro.add_tags, source="macro", actor_id=me)
        await _act(conn, conversation_id, macro, principal)
        on = (await tags.conversation_tags(conn, [conversation_id])).get(conversation_id, [])
        applied = MacroApplied.model_validate(
            {"message": message, "tags": on, "routing": await queries.routing_state(conn, conversation_id)}
        )
        if key is not None:
            await idempotency.remember(conn, me, key, bound_to, applied.model_dump(mode="json", by_alias=True))
        return True, applied

    return await in_transaction(engine, rest)
