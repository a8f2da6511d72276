"""Teams: settings, memberships and bridge settings; each function runs in the caller's transaction."""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from typing import Any

import sqlalchemy as sa
from pydantic.alias_generators import to_camel
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from service.audit import record_audit
from service.auth.principal import Principal
from service.crypto import decrypt_secret, encrypt_secret
from service.db.tables import conversation_t, member_t, operator_t, team_t, thread_t
from service.errors import Conflict, NotFound, field_conflict, field_invalid, unique_violation
from service.hours.services import arm_opening, schedule_of
from service.pagination import decode_cursor, page
from service.routing.sql import lock_teams
from service.teams.schemas import (
    BridgesPublic,
    BridgesUpdate,
    MemberCreate,
    MemberPublic,
    MemberUpdate,
    TeamCreate,
    TeamPage,
    TeamPublic,
    TeamUpdate,
)

# Settings whose change can let queued conversations through: the caller drains the queue after commit.
DRAIN_SETTINGS = frozenset({"routing_policy", "default_capacity", "business_hours"})
# Settings that move the team's next opening (its ``hours_open`` timer).
HOURS_SETTINGS = frozenset({"business_hours"})
SECRET_PURPOSE = "bridge-settings"
# Secret fields per bridge (camelCase, stored encrypted as "<field>Encrypted"); what a bridge needs to be enabled.
BRIDGE_SECRETS = {
    "telegram": ("botToken", "webhookSecret"),
    "discord": ("botToken",),
    "slack": ("botToken", "signingSecret"),
}
BRIDGE_REQUIRED = {
    "telegram": ("chatId", "botToken"),
    "discord": ("channelId", "botToken"),
    "slack": ("channelId", "botToken", "signingSecret"),
}

_member_count = (
    sa.select(sa.func.count()).select_from(member_t).where(member_t.c.team_id == team_t.c.id).scalar_subquery()
)


def _camel(values: dict[str, Any]) -> dict[str, Any]:
    """Audit data uses the API's field names."""
    return {to_camel(key): value for key, value in values.items()}


# --- Teams ----------------------------------------------------------------------------------------------------


def _team_public(row: Any, show_bridges: bool) -> TeamPublic:
    values = dict(row._mapping)
    bridges = values.pop("bridge_settings")
    return TeamPublic.model_validate({**values, "bridges": public_bridges(bridges) if show_bridges else None})


async def _team_row(conn: AsyncConnection, team_id: uuid.UUID, *, lock: bool = False) -> Any:
    query = sa.select(team_t, _member_count.label("member_count")).where(team_t.c.id == team_id)
    row = (await conn.execute(query.with_for_update(of=team_t, key_share=True) if lock else query)).first()
    if row is None:
        raise NotFound("Team not found")
    return row


async def lock_team(conn: AsyncConnection, team_id: uuid.UUID, *, lock: bool = True) -> None:
    """404 unless the team exists; with ``lock``, hold its row so its configuration changes one at a time."""
    await _team_row(conn, team_id, lock=lock)


async def get_team(conn: AsyncConnection, team_id: uuid.UUID, principal: Principal) -> TeamPublic:
    """The team as the caller may see it (bridges for its leads and admins only)."""
    return _team_public(await _team_row(conn, team_id), principal.is_lead(team_id))


async def list_teams(conn: AsyncConnection, principal: Principal, cursor: str | None, limit: int) -> TeamPage:
    """The caller's teams (every team for admins), by name."""
    query = sa.select(team_t, _member_count.label("member_count")).order_by(team_t.c.name).limit(limit + 1)
    if not principal.is_admin:
        query = query.where(team_t.c.id.in_(list(principal.teams)))
    if cursor is not None:
        [after] = decode_cursor(cursor, 1)
        query = query.where(team_t.c.name > after)
    rows = (await conn.execute(query)).all()
    items, next_cursor = page(
        rows, limit, lambda row: _team_public(row, principal.is_lead(row.id)), lambda t: (t.name,)
    )
    return TeamPage(items=items, next_cursor=next_cursor)


async def team_names(conn: AsyncConnection, team_ids: Iterable[uuid.UUID]) -> dict[uuid.UUID, str]:
    """The names of these teams, by id, in name order."""
    rows = await conn.execute(
        sa.select(team_t.c.id, team_t.c.name).where(team_t.c.id.in_(list(team_ids))).order_by(team_t.c.name)
    )
    return {row.id: row.name for row in rows}


async def team_id_by_name(conn: AsyncConnection, name: str) -> uuid.UUID:
    """The id of the team called ``name``."""
    team_id: uuid.UUID | None = (await conn.execute(sa.select(team_t.c.id).where(team_t.c.name == name))).scalar()
    if team_id is None:
        raise NotFound(f"no team is called {name!r}", field="team")
    return team_id


async def other_teams(conn: AsyncConnection, team_id: uuid.UUID | None) -> list[Any]:
    """Every team but this one (``id``, ``name``), by name: where a conversation can be transferred."""
    rows = await conn.execute(
        sa.select(team_t.c.id, team_t.c.name).where(team_t.c.id.is_distinct_from(team_id)).order_by(team_t.c.name)
    )
    return list(rows)


async def ai_enabled(conn: AsyncConnection, team_id: uuid.UUID | None) -> bool:
    """Whether the team lets the AI take over its conversations (no team: no AI)."""
    if team_id is None:
        return False
    return bool(await conn.scalar(sa.select(team_t.c.ai_enabled).where(team_t.c.id == team_id)))


async def any_pooled(conn: AsyncConnection, team_ids: list[uuid.UUID]) -> bool:
    """Whether one of these teams offers its conversations to every member (the ``pooled`` policy)."""
    if not team_ids:
        return False
    found = await conn.scalar(
        sa.select(sa.literal(True)).where(team_t.c.id.in_(team_ids), team_t.c.routing_policy == "pooled").limit(1)
    )
    return bool(found)


async def message_edit_window(conn: AsyncConnection, team_id: uuid.UUID | None) -> int:
    """Seconds the team's operators may edit or delete their own messages after sending them (no team: none)."""
    if team_id is None:
        return 0
    window = await conn.scalar(sa.select(team_t.c.message_edit_window_seconds).where(team_t.c.id == team_id))
    return int(window or 0)


async def _write_team(conn: AsyncConnection, statement: Any) -> None:
    """Run an INSERT/UPDATE of a team; a taken name is a 409 naming ``name``."""
    try:
        await conn.execute(statement)
    except IntegrityError as exc:
        if unique_violation(exc) == "uq_team_name":
            raise field_conflict("name", "A team with this name already exists") from exc
        raise


async def _take_default(conn: AsyncConnection, team_id: uuid.UUID) -> None:
    # One default team: the partial unique index enforces it, this hands the flag over.
    await conn.execute(sa.update(team_t).where(team_t.c.is_default, team_t.c.id != team_id).values(is_default=False))


def _stored(name: str, value: Any) -> Any:
    """A setting as the team row holds it (business hours as their canonical JSON)."""
    if name == "business_hours" and value is not None:
        return value.document()
    return value


async def _check_outside_hours(conn: AsyncConnection, team_id: uuid.UUID, settings: Any) -> None:
    """The outside-hours settings as they will stand: an existing overflow team (not this one); AI on for "ai"."""
    overflow = settings["outside_hours_team_id"]
    if overflow is not None:
        if overflow == team_id:
            raise field_invalid("outsideHoursTeamId", "A team cannot overflow to itself")
        if await conn.scalar(sa.select(team_t.c.id).where(team_t.c.id == overflow)) is None:
            raise field_invalid("outsideHoursTeamId", "No team has this id")
    if settings["outside_hours"] == "overflow" and overflow is None:
        raise field_invalid("outsideHoursTeamId", "outsideHours 'overflow' needs the team to overflow to")
    if settings["outside_hours"] == "ai" and not settings["ai_enabled"]:
        raise field_invalid(
            "outsideHours", "outsideHours 'ai' needs aiEnabled: the AI answers while the team is closed"
        )


async def create_team(conn: AsyncConnection, data: TeamCreate, actor: Principal) -> TeamPublic:
    team_id = uuid.uuid4()
    values = data.model_dump() | {"business_hours": _stored("business_hours", data.business_hours)}
    await _check_outside_hours(conn, team_id, values)
    if data.is_default:
        await _take_default(conn, team_id)
    await _write_team(conn, sa.insert(team_t).values(id=team_id, **values))
    if values["business_hours"] is not None:
        await arm_opening(conn, team_id, schedule_of(values["business_hours"]))
    await record_audit(conn, actor.operator_id, "team.created", "team", team_id, _camel(values))
    return _team_public(await _team_row(conn, team_id), True)


async def update_team(
    conn: AsyncConnection, team_id: uuid.UUID, data: TeamUpdate, actor: Principal
) -> tuple[TeamPublic, bool]:
    """Apply the given settings; returns the team and whether its queue should be drained."""
    await lock_teams(conn, team_id)  # may make room: routing's queue lock first (docs/routing.md, "Queue order")
    current = await _team_row(conn, team_id, lock=True)
    given = {name: _stored(name, getattr(data, name)) for name in data.model_fields_set}
    changes = {name: value for name, value in given.items() if value != getattr(current, name)}
    await _check_outside_hours(conn, team_id, dict(current._mapping) | changes)
    if changes.get("is_default") is False:
        raise field_invalid("isDefault", "Make another team the default instead")
    if changes.get("is_default"):
        await _take_default(conn, team_id)
    if changes:
        await _write_team(conn, sa.update(team_t).where(team_t.c.id == team_id).values(**changes))
        await record_audit(conn, actor.operator_id, "team.updated", "team", team_id, _camel(changes))
    if HOURS_SETTINGS & changes.keys():
        await arm_opening(conn, team_id, schedule_of(changes["business_hours"]))
    team = _team_public(await _team_row(conn, team_id), True)
    return team, bool(DRAIN_SETTINGS & changes.keys())


async def delete_team(conn: AsyncConnection, team_id: uuid.UUID, actor: Principal) -> None:
    """Delete a team with its memberships, rules and canned responses; refused while it holds open conversations."""
    current = await _team_row(conn, team_id, lock=True)
    if current.is_default:
        raise Conflict("The default team cannot be deleted; make another team the default first")
    open_count = await conn.scalar(
        sa.select(sa.func.count())
        .select_from(conversation_t)
        .where(conversation_t.c.team_id == team_id, conversation_t.c.status != "closed")
    )
    if open_count:
        raise Conflict(f"The team still has {open_count} open conversations; transfer or close them first")
    # Teams that overflowed here outside their hours wait for their opening instead (the key is cleared too).
    await conn.execute(
        sa.update(team_t)
        .where(team_t.c.outside_hours_team_id == team_id, team_t.c.outside_hours == "overflow")
        .values(outside_hours="wait")
    )
    await conn.execute(sa.delete(team_t).where(team_t.c.id == team_id))
    await record_audit(conn, actor.operator_id, "team.deleted", "team", team_id, {"name": current.name})


# --- Members --------------------------------------------------------------------------------------------------


def _members_query(team_id: uuid.UUID) -> Any:
    return (
        sa.select(
            member_t.c.operator_id,
            operator_t.c.display_name,
            operator_t.c.email,
            member_t.c.role,
            member_t.c.capacity,
            sa.func.coalesce(member_t.c.capacity, team_t.c.default_capacity).label("effective_capacity"),
            member_t.c.skills,
            operator_t.c.status,
            operator_t.c.status_changed_at,
            operator_t.c.open_conversations,
            member_t.c.last_assigned_at,
            member_t.c.created_at,
        )
        .select_from(member_t.join(operator_t, operator_t.c.id == member_t.c.operator_id).join(team_t))
        .where(member_t.c.team_id == team_id)
    )


async def list_members(conn: AsyncConnection, team_id: uuid.UUID) -> list[MemberPublic]:
    await _team_row(conn, team_id)
    rows = await conn.execute(_members_query(team_id).order_by(operator_t.c.display_name, member_t.c.operator_id))
    return [MemberPublic.model_validate(row) for row in rows]


async def memberships(conn: AsyncConnection, operator_id: uuid.UUID) -> list[Any]:
    """The operator's teams (``name``, ``role``, effective ``capacity``, ``skills``), by team name."""
    rows = await conn.execute(
        sa.select(
            team_t.c.name,
            member_t.c.role,
            sa.func.coalesce(member_t.c.capacity, team_t.c.default_capacity).label("capacity"),
            member_t.c.skills,
        )
        .join(team_t, team_t.c.id == member_t.c.team_id)
        .where(member_t.c.operator_id == operator_id)
        .order_by(team_t.c.name)
    )
    return list(rows)


async def _member(conn: AsyncConnection, team_id: uuid.UUID, operator_id: uuid.UUID) -> MemberPublic:
    row = (await conn.execute(_members_query(team_id).where(member_t.c.operator_id == operator_id))).first()
    if row is None:
        raise NotFound("Member not found")
    return MemberPublic.model_validate(row)


async def add_member(conn: AsyncConnection, team_id: uuid.UUID, data: MemberCreate, actor: Principal) -> MemberPublic:
    await lock_teams(conn, team_id)  # makes room: routing's queue lock first
    await _team_row(conn, team_id, lock=True)
    active = await conn.scalar(
        sa.select(operator_t.c.id).where(operator_t.c.id == data.operator_id, operator_t.c.deactivated_at.is_(None))
    )
    if active is None:
        raise field_invalid("operatorId", "No active operator has this id")
    values = data.model_dump()
    added = await conn.scalar(
        sa.dialects.postgresql.insert(member_t)
        .values(team_id=team_id, **values)
        .on_conflict_do_nothing()
        .returning(member_t.c.operator_id)
    )
    if added is None:
        raise field_conflict("operatorId", "This operator is already a member of the team")
    await record_audit(conn, actor.operator_id, "team.member_added", "team", team_id, _camel(values))
    return await _member(conn, team_id, data.operator_id)


async def update_member(
    conn: AsyncConnection, team_id: uuid.UUID, operator_id: uuid.UUID, data: MemberUpdate, actor: Principal
) -> tuple[MemberPublic, bool]:
    """Change role, capacity or skills; returns the member and whether the team's queue should be drained."""
    await lock_teams(conn, team_id)  # may make room: routing's queue lock first
    await _team_row(conn, team_id, lock=True)
    current = await _member(conn, team_id, operator_id)
    changes = {
        name: getattr(data, name) for name in data.model_fields_set if getattr(data, name) != getattr(current, name)
    }
    if changes:
        await conn.execute(
            sa.update(member_t)
            .where(member_t.c.team_id == team_id, member_t.c.operator_id == operator_id)
            .values(**changes)
        )
        audit = {"operatorId": operator_id, **_camel(changes)}
        await record_audit(conn, actor.operator_id, "team.member_updated", "team", team_id, audit)
    return await _member(conn, team_id, operator_id), bool({"capacity", "skills"} & changes.keys())


async def remove_member(conn: AsyncConnection, team_id: uuid.UUID, operator_id: uuid.UUID, actor: Principal) -> None:
    """Remove a membership; conversations the operator holds stay with them until closed or transferred."""
    await _team_row(conn, team_id, lock=True)
    removed = await conn.scalar(
        sa.delete(member_t)
        .where(member_t.c.team_id == team_id, member_t.c.operator_id == operator_id)
        .returning(member_t.c.operator_id)
    )
    if removed is None:
        raise NotFound("Member not found")
    await record_audit(conn, actor.operator_id, "team.member_removed", "team", team_id, {"operatorId": operator_id})


# --- Bridge settings ------------------------------------------------------------------------------------------


def _chat(stored: dict[str, Any], bridge: str) -> str | None:
    entry = stored.get(bridge) or {}
    return entry.get("chatId") or entry.get("channelId")


async def stored_bridges(conn: AsyncConnection, team_id: uuid.UUID) -> dict[str, Any] | None:
    """The team's stored bridge settings (secrets encrypted); None for a team that does not exist."""
    return await conn.scalar(sa.select(team_t.c.bridge_settings).where(team_t.c.id == team_id))  # type: ignore[no-any-return]


def public_bridges(stored: dict[str, Any]) -> BridgesPublic:
    """Stored bridge settings without their secrets: each secret becomes a ``<field>Configured`` flag."""
    out: dict[str, Any] = {}
    for bridge, settings in stored.items():
        entry = {k: v for k, v in settings.items() if not k.endswith("Encrypted")}
        for secret in BRIDGE_SECRETS[bridge]:
            entry[f"{secret}Configured"] = f"{secret}Encrypted" in settings
        out[bridge] = entry
    return BridgesPublic.model_validate(out)


def bridge_secret(secret_key: str, stored: dict[str, Any], bridge: str, field: str) -> str | None:
    """A bridge's decrypted secret (``botToken``, ``signingSecret``) for the code that runs the bridge."""
    token = stored.get(bridge, {}).get(f"{field}Encrypted")
    return None if token is None else decrypt_secret(secret_key, SECRET_PURPOSE, token)


def merge_bridges(stored: dict[str, Any], data: BridgesUpdate, secret_key: str) -> dict[str, Any]:
    """The new stored settings: named bridges replaced or removed, secrets kept unless given or cleared."""
    merged = dict(stored)
    for bridge in data.model_fields_set:
        update = getattr(data, bridge)
        if update is None:
            merged.pop(bridge, None)
            continue
        secrets = BRIDGE_SECRETS[bridge]
        given = update.model_dump(by_alias=True)
        entry = {k: v for k, v in given.items() if k not in secrets}
        for secret in secrets:
            stored_key = f"{secret}Encrypted"
            if secret not in {to_camel(name) for name in update.model_fields_set}:
                if stored_key in stored.get(bridge, {}):
                    entry[stored_key] = stored[bridge][stored_key]
            elif given[secret] is not None:
                entry[stored_key] = encrypt_secret(secret_key, SECRET_PURPOSE, given[secret])
        if entry["enabled"]:
            for needed in BRIDGE_REQUIRED[bridge]:
                if entry.get(needed) is None and f"{needed}Encrypted" not in entry:
                    raise field_invalid(f"{bridge}.{needed}", f"{needed} is required to enable the {bridge} bridge")
        merged[bridge] = entry
    return merged


async def update_bridges(
    conn: AsyncConnection, team_id: uuid.UUID, data: BridgesUpdate, actor: Principal, secret_key: str
) -> BridgesPublic:
    current = await _team_row(conn, team_id, lock=True)
    merged = merge_bridges(current.bridge_settings, data, secret_key)
    await conn.execute(sa.update(team_t).where(team_t.c.id == team_id).values(bridge_settings=merged))
    # Threads live in one chat: a bridge removed or pointed at another chat opens new ones there.
    moved = [b for b in data.model_fields_set if _chat(current.bridge_settings, b) != _chat(merged, b)]
    if moved:
        await conn.execute(sa.delete(thread_t).where(thread_t.c.team_id == team_id, thread_t.c.platform.in_(moved)))
    # The audit shows what changed as the API shows it: never the secrets themselves.
    changed = public_bridges({b: merged[b] for b in data.model_fields_set if b in merged})
    audit = changed.model_dump(by_alias=True, exclude_none=True) | {
        b: None for b in data.model_fields_set if b not in merged
    }
    await record_audit(conn, actor.operator_id, "team.bridges_updated", "team", team_id, audit)
    return public_bridges(merged)
