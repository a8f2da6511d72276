"""SCIM Users are operators and SCIM Groups are teams: reading, filtering and writing them (docs/scim.md).

Writes go through the operator and team services (their checks, audit and deactivation), so SCIM adds no
second way to change an operator or a team. Failures are scim2-models exceptions (SCIM error bodies).
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TypeVar

import sqlalchemy as sa
from pydantic import ValidationError
from scim2_models import (
    Context,
    Email,
    Group,
    GroupMember,
    GroupMembership,
    InvalidValueException,
    ListResponse,
    Meta,
    NotFoundException,
    PatchOp,
    Resource,
    ScimFilter,
    UniquenessException,
    User,
)
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from service.auth.principal import Principal
from service.auth.provisioning import PENDING_PREFIX, pending_subject
from service.db.tables import member_t, operator_t, team_t
from service.errors import unique_violation
from service.operators.schemas import OperatorUpdate
from service.operators.services import update_operator
from service.scim.schemas import MAX_RESULTS
from service.teams import services as teams
from service.teams.schemas import MemberCreate, TeamCreate, TeamUpdate

R = TypeVar("R", bound=Resource[Any])


def _uuid(value: str | None, what: str) -> uuid.UUID:
    try:
        return uuid.UUID(str(value))
    except ValueError:
        raise NotFoundException(detail=f"{what} {value} not found") from None


def page(
    resources: list[R], scim_filter: str | None, model: type[R], start_index: int | None, count: int | None
) -> ListResponse[R]:
    """The resources matching the filter, from ``startIndex`` (1-based), at most ``count`` of them."""
    if scim_filter:
        # Strict: an attribute the resource does not have is an invalidFilter, not an empty answer.
        compiled = ScimFilter[model](scim_filter)  # type: ignore[valid-type]
        compiled._validate_semantics(strict=True)
        resources = [resource for resource in resources if compiled.match(resource)]
    start = max(start_index or 1, 1)
    size = MAX_RESULTS if count is None else min(max(count, 0), MAX_RESULTS)
    chosen = resources[start - 1 : start - 1 + size]
    return ListResponse[model](  # type: ignore[valid-type]
        total_results=len(resources), start_index=start, items_per_page=len(chosen), resources=chosen
    )


def _meta(kind: str, location: str, created: datetime | None, modified: Any) -> Meta:
    last_modified = datetime.fromisoformat(modified) if isinstance(modified, str) else created
    return Meta(resource_type=kind, created=created, last_modified=last_modified, location=location)


def _now() -> str:
    return datetime.now(UTC).isoformat()


# --- Users ----------------------------------------------------------------------------------------------------

# Operators SCIM sees: those it provisioned or took over, and the active ones it never sent (so an IdP
# can find an operator who signed in before provisioning, by ``userName eq "<their email>"``, and link it).
# An operator SCIM deleted is deactivated and unlinked, so it is gone from here.
_VISIBLE = sa.or_(operator_t.c.scim.is_not(None), operator_t.c.deactivated_at.is_(None))
_USER_COLUMNS = (
    operator_t.c.id,
    operator_t.c.subject,
    operator_t.c.email,
    operator_t.c.display_name,
    operator_t.c.scim,
    operator_t.c.created_at,
    operator_t.c.deactivated_at,
)


def _user(row: Any, groups: list[GroupMembership], base: str) -> User:
    """The operator as a SCIM User: the document the IdP sent, with what Switchboard owns set from the row."""
    stored = dict(row.scim or {})
    modified = stored.pop("lastModified", None)
    if stored:
        user: User[Any] = User.model_validate(stored, scim_ctx=None)
    else:  # never provisioned: what the operator's sign-in told Switchboard
        user = User(user_name=row.email or row.subject, display_name=row.display_name, active=True)
        try:
            user.emails = [Email(value=row.email, primary=True)] if row.email else None
        except ValidationError:  # an address the IdP accepted but the SCIM model does not: left out
            pass
    user.id = str(row.id)
    # A User without ``active`` is active (docs/scim.md); deactivation in Switchboard always shows.
    user.active = False if row.deactivated_at else (True if user.active is not None else None)
    user.groups = groups or None
    user.meta = _meta("User", f"{base}/Users/{row.id}", row.created_at, modified)
    return user


async def _groups_of(conn: AsyncConnection, operator_ids: Iterable[uuid.UUID], base: str) -> dict[Any, list[Any]]:
    rows = await conn.execute(
        sa.select(member_t.c.operator_id, team_t.c.id, team_t.c.name)
        .join(team_t, team_t.c.id == member_t.c.team_id)
        .where(member_t.c.operator_id.in_(list(operator_ids)))
        .order_by(team_t.c.name)
    )
    groups: dict[Any, list[Any]] = {}
    for row in rows:
        membership = GroupMembership.model_validate(
            {"value": str(row.id), "display": row.name, "$ref": f"{base}/Groups/{row.id}", "type": "direct"}
        )
        groups.setdefault(row.operator_id, []).append(membership)
    return groups


async def list_users(
    conn: AsyncConnection, base: str, scim_filter: str | None, start_index: int | None, count: int | None
) -> ListResponse[User]:
    """Filtered in memory: an installation has a few thousand operators at most, and filters may name any attribute."""
    rows = (
        await conn.execute(sa.select(*_USER_COLUMNS).where(_VISIBLE).order_by(operator_t.c.created_at, operator_t.c.id))
    ).all()
    groups = await _groups_of(conn, [row.id for row in rows], base)
    return page([_user(row, groups.get(row.id, []), base) for row in rows], scim_filter, User, start_index, count)


async def get_user(conn: AsyncConnection, user_id: str, base: str, *, lock: bool = False) -> User:
    operator_id = _uuid(user_id, "User")
    query = sa.select(*_USER_COLUMNS).where(operator_t.c.id == operator_id, _VISIBLE)
    row = (await conn.execute(query.with_for_update() if lock else query)).first()
    if row is None:
        raise NotFoundException(detail=f"User {user_id} not found")
    groups = await _groups_of(conn, [operator_id], base)
    return _user(row, groups.get(operator_id, []), base)


def _email_of(user: User) -> str | None:
    """The primary email, else the first, else a userName that is an address (how the operator signs in)."""
    emails = sorted(user.emails or [], key=lambda email: not email.primary)
    for candidate in [email.value for email in emails] + [user.user_name]:
        if candidate and "@" in candidate:
            return str(candidate)
    return None


def _placeholder_subject(email: str | None, operator_id: uuid.UUID) -> str:
    """Until their first sign-in: found by email then, or never when the IdP gave no address."""
    return pending_subject(email) if email else f"{PENDING_PREFIX}scim:{operator_id}"


def _display_name_of(user: User) -> str:
    name = user.name
    parts = [name.given_name, name.family_name] if name else []
    for candidate in (user.display_name, name.formatted if name else None, " ".join(p for p in parts if p)):
        if candidate and candidate.strip():
            return candidate.strip()[:100]
    return str(user.user_name)[:100]


async def _check_user_name(conn: AsyncConnection, user_name: str, operator_id: uuid.UUID | None) -> None:
    """userName is unique (case-insensitively), also against the email of an active operator SCIM never sent."""
    key = user_name.lower()
    taken = await conn.scalar(
        sa.select(operator_t.c.id).where(
            sa.or_(
                operator_t.c.scim_user_name == key,
                sa.and_(
                    operator_t.c.scim.is_(None),
                    operator_t.c.deactivated_at.is_(None),
                    sa.func.lower(operator_t.c.email) == key,
                ),
            ),
            operator_t.c.id != operator_id if operator_id else sa.true(),
        )
    )
    if taken is not None:
        raise UniquenessException(detail=f"userName: '{user_name}' is already taken")


def _document(user: User) -> dict[str, Any]:
    """What is kept of the IdP's User: everything it sent but the password (nobody signs in with one)."""
    stored: dict[str, Any] = user.model_dump(
        scim_ctx=None, by_alias=True, exclude_none=True, mode="json", exclude={"id", "meta", "password", "groups"}
    )
    stored["lastModified"] = _now()
    return stored


async def _store_user(
    conn: AsyncConnection, operator_id: uuid.UUID, user: User, actor: Principal, *, subject: str
) -> None:
    """Write the User onto the operator: email, display name, the document, and ``active`` when it is given."""
    email = _email_of(user)
    await _check_user_name(conn, str(user.user_name), operator_id)
    values: dict[str, Any] = {"email": email, "scim": _document(user), "scim_user_name": str(user.user_name).lower()}
    if subject.startswith(PENDING_PREFIX):  # their first sign-in takes the operator over by this email
        values["subject"] = _placeholder_subject(email, operator_id)
    await _write_operator(
        conn,
        sa.update(operator_t).where(operator_t.c.id == operator_id).values(**values).returning(operator_t.c.id),
        user,
    )
    change = OperatorUpdate(display_name=_display_name_of(user), deactivated=user.active is False)
    await update_operator(conn, operator_id, change, actor)


async def _write_operator(conn: AsyncConnection, statement: Any, user: User) -> Any:
    """Run the INSERT/UPDATE; a taken email or userName (a concurrent request won the check) is a 409."""
    try:
        async with conn.begin_nested():
            return await conn.scalar(statement)
    except IntegrityError as exc:
        if unique_violation(exc) == "uq_operator_subject":
            raise UniquenessException(detail="emails: another provisioned operator has this email") from None
        if unique_violation(exc) == "uq_operator_scim_user_name":
            raise UniquenessException(detail=f"userName: '{user.user_name}' is already taken") from None
        raise


async def create_user(conn: AsyncConnection, payload: Any, actor: Principal, base: str) -> User:
    """A new operator, awaiting their first sign-in (which takes it over by email), usable at once."""
    user: User[Any] = User.model_validate(payload, scim_ctx=Context.RESOURCE_CREATION_REQUEST)
    operator_id = uuid.uuid4()
    subject = _placeholder_subject(_email_of(user), operator_id)
    await _check_user_name(conn, str(user.user_name), None)
    insert = sa.insert(operator_t).values(id=operator_id, subject=subject, display_name=_display_name_of(user))
    operator_id = await _write_operator(conn, insert.returning(operator_t.c.id), user)
    await _store_user(conn, operator_id, user, actor, subject=subject)
    return await get_user(conn, str(operator_id), base)


async def replace_user(conn: AsyncConnection, user_id: str, payload: Any, actor: Principal, base: str) -> User:
    current = await get_user(conn, user_id, base, lock=True)
    user: User[Any] = User.model_validate(payload, scim_ctx=Context.RESOURCE_REPLACEMENT_REQUEST)
    user.replace(current)  # read-only attributes kept, immutable ones checked (RFC 7644 section 3.5.1)
    return await _save_user(conn, current, user, actor, base)


async def patch_user(conn: AsyncConnection, user_id: str, payload: Any, actor: Principal, base: str) -> User:
    user = await get_user(conn, user_id, base, lock=True)
    original = user.model_copy(deep=True)
    PatchOp[User].model_validate(payload, scim_ctx=Context.RESOURCE_PATCH_REQUEST).patch(user)
    return await _save_user(conn, original, user, actor, base)


async def _save_user(conn: AsyncConnection, current: User, user: User, actor: Principal, base: str) -> User:
    subject = await conn.scalar(sa.select(operator_t.c.subject).where(operator_t.c.id == uuid.UUID(str(current.id))))
    await _store_user(conn, uuid.UUID(str(current.id)), user, actor, subject=str(subject))
    return await get_user(conn, str(current.id), base)


async def delete_user(conn: AsyncConnection, user_id: str, actor: Principal) -> uuid.UUID:
    """Operators are never deleted (their history stays): the operator is deactivated and unlinked from SCIM."""
    operator_id = uuid.UUID(str((await get_user(conn, user_id, "", lock=True)).id))
    await update_operator(conn, operator_id, OperatorUpdate(deactivated=True), actor)
    # Never signed in: their email is freed too, so a later sign-in takes over only a newly provisioned operator.
    subject = sa.case(
        (operator_t.c.subject.startswith(PENDING_PREFIX), _placeholder_subject(None, operator_id)),
        else_=operator_t.c.subject,
    )
    await conn.execute(
        sa.update(operator_t)
        .where(operator_t.c.id == operator_id)
        .values(scim=sa.null(), scim_user_name=None, subject=subject)
    )
    return operator_id


# --- Groups ---------------------------------------------------------------------------------------------------

_TEAM_COLUMNS = (team_t.c.id, team_t.c.name, team_t.c.scim_external_id, team_t.c.created_at)


async def _members_of(conn: AsyncConnection, team_ids: Iterable[uuid.UUID], base: str) -> dict[Any, list[Any]]:
    rows = await conn.execute(
        sa.select(member_t.c.team_id, operator_t.c.id, operator_t.c.display_name)
        .join(operator_t, operator_t.c.id == member_t.c.operator_id)
        .where(member_t.c.team_id.in_(list(team_ids)))
        .order_by(operator_t.c.display_name, operator_t.c.id)
    )
    members: dict[Any, list[Any]] = {}
    for row in rows:
        member = GroupMember.model_validate(
            {"value": str(row.id), "display": row.display_name, "$ref": f"{base}/Users/{row.id}", "type": "User"}
        )
        members.setdefault(row.team_id, []).append(member)
    return members


def _group(row: Any, members: list[GroupMember], base: str) -> Group:
    group = Group(id=str(row.id), display_name=row.name, external_id=row.scim_external_id, members=members or None)
    group.meta = _meta("Group", f"{base}/Groups/{row.id}", row.created_at, None)
    return group


async def list_groups(
    conn: AsyncConnection, base: str, scim_filter: str | None, start_index: int | None, count: int | None
) -> ListResponse[Group]:
    rows = (await conn.execute(sa.select(*_TEAM_COLUMNS).order_by(team_t.c.created_at, team_t.c.id))).all()
    members = await _members_of(conn, [row.id for row in rows], base)
    return page([_group(row, members.get(row.id, []), base) for row in rows], scim_filter, Group, start_index, count)


async def get_group(conn: AsyncConnection, group_id: str, base: str) -> Group:
    team_id = _uuid(group_id, "Group")
    row = (await conn.execute(sa.select(*_TEAM_COLUMNS).where(team_t.c.id == team_id))).first()
    if row is None:
        raise NotFoundException(detail=f"Group {group_id} not found")
    return _group(row, (await _members_of(conn, [team_id], base)).get(team_id, []), base)


async def _set_members(conn: AsyncConnection, team_id: uuid.UUID, group: Group, actor: Principal) -> None:
    """The team's members become exactly the group's (joining as ``operator``; leads stay leads)."""
    wanted: set[uuid.UUID] = set()
    for member in group.members or []:
        if member.type not in (None, "User"):
            raise InvalidValueException(detail="members: only Users can be members; groups do not nest")
        try:
            wanted.add(uuid.UUID(str(member.value)))
        except ValueError:
            raise InvalidValueException(detail=f"members: no User has the id {member.value}") from None
    current = set(await conn.scalars(sa.select(member_t.c.operator_id).where(member_t.c.team_id == team_id)))
    for operator_id in sorted(current - wanted):
        await teams.remove_member(conn, team_id, operator_id, actor)
    for operator_id in sorted(wanted - current):
        await teams.add_member(conn, team_id, MemberCreate(operator_id=operator_id), actor)


async def _store_group(conn: AsyncConnection, team_id: uuid.UUID, group: Group, actor: Principal) -> None:
    await teams.update_team(conn, team_id, TeamUpdate(name=group.display_name), actor)
    await conn.execute(sa.update(team_t).where(team_t.c.id == team_id).values(scim_external_id=group.external_id))
    await _set_members(conn, team_id, group, actor)


async def create_group(conn: AsyncConnection, payload: Any, actor: Principal, base: str) -> Group:
    """A new team with these members."""
    group = Group.model_validate(payload, scim_ctx=Context.RESOURCE_CREATION_REQUEST)
    team = await teams.create_team(conn, TeamCreate(name=group.display_name or ""), actor)
    await _store_group(conn, team.id, group, actor)
    return await get_group(conn, str(team.id), base)


async def replace_group(conn: AsyncConnection, group_id: str, payload: Any, actor: Principal, base: str) -> Group:
    current = await get_group(conn, group_id, base)
    group = Group.model_validate(payload, scim_ctx=Context.RESOURCE_REPLACEMENT_REQUEST)
    group.replace(current)
    await _store_group(conn, uuid.UUID(group_id), group, actor)
    return await get_group(conn, group_id, base)


async def patch_group(conn: AsyncConnection, group_id: str, payload: Any, actor: Principal, base: str) -> Group:
    group = await get_group(conn, group_id, base)
    PatchOp[Group].model_validate(payload, scim_ctx=Context.RESOURCE_PATCH_REQUEST).patch(group)
    await _store_group(conn, uuid.UUID(group_id), group, actor)
    return await get_group(conn, group_id, base)


async def delete_group(conn: AsyncConnection, group_id: str, actor: Principal) -> uuid.UUID:
    """The team is deleted as ``DELETE /api/v1/teams/{id}`` does (refused while it holds open conversations)."""
    team_id = uuid.UUID(str((await get_group(conn, group_id, "")).id))
    await teams.delete_team(conn, team_id, actor)
    return team_id


@dataclass(frozen=True)
class Endpoint:
    """What one resource endpoint (``/Users``, ``/Groups``) serves and the services behind it."""

    model: type[User[Any]] | type[Group]
    list: Callable[[AsyncConnection, str, str | None, int | None, int | None], Awaitable[ListResponse[Any]]]
    get: Callable[[AsyncConnection, str, str], Awaitable[Any]]
    create: Callable[[AsyncConnection, Any, Principal, str], Awaitable[Any]]
    replace: Callable[[AsyncConnection, str, Any, Principal, str], Awaitable[Any]]
    patch: Callable[[AsyncConnection, str, Any, Principal, str], Awaitable[Any]]
    delete: Callable[[AsyncConnection, str, Principal], Awaitable[uuid.UUID]]


ENDPOINTS = {
    "Users": Endpoint(User, list_users, get_user, create_user, replace_user, patch_user, delete_user),
    "Groups": Endpoint(Group, list_groups, get_group, create_group, replace_group, patch_group, delete_group),
}
