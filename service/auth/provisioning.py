"""Sign-in side effects: the operator is created on first sign-in, and IdP groups set teams and roles every time."""

from __future__ import annotations

import uuid
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncConnection

from service.db.tables import member_t, operator_t, team_t
from service.errors import Conflict, Forbidden
from service.settings import GroupGrant


def display_name(claims: dict[str, Any]) -> str:
    for claim in ("name", "preferred_username", "email"):
        if isinstance(claims.get(claim), str) and claims[claim].strip():
            return str(claims[claim]).strip()
    return str(claims["sub"])


def groups_of(claims: dict[str, Any], claim: str) -> set[str]:
    """The user's IdP groups; a single string counts as one group, anything else as none."""
    value = claims.get(claim)
    if isinstance(value, str):
        return {value}
    if isinstance(value, list):
        return {item for item in value if isinstance(item, str)}
    return set()


PENDING_PREFIX = "pending:"

# A first sign-in whose verified email matches an admin made by ``switchboard operators create-admin``
# takes that operator over (unless the IdP subject already has one).
_ADOPT = sa.text(
    "UPDATE operator SET subject = :sub WHERE subject = :pending "
    "AND NOT EXISTS (SELECT 1 FROM operator o WHERE o.subject = :sub)"
)


def pending_subject(email: str) -> str:
    """The placeholder subject of an operator made before their first sign-in."""
    return PENDING_PREFIX + email.strip().lower()


async def make_admin(conn: AsyncConnection, email: str) -> tuple[uuid.UUID, bool]:
    """The active operator with this email made an admin, else a new admin awaiting their first sign-in.

    Returns (operator id, whether it was created). Idempotent: running it twice changes nothing more.
    """
    address = email.strip()
    existing = (
        (
            await conn.execute(
                sa.update(operator_t)
                .where(sa.func.lower(operator_t.c.email) == address.lower(), operator_t.c.deactivated_at.is_(None))
                .values(is_admin=True)
                .returning(operator_t.c.id)
            )
        )
        .scalars()
        .all()
    )
    if len(existing) > 1:
        raise Conflict(f"{len(existing)} operators have the email {address}", field="email")
    if existing:
        return existing[0], False
    created = await conn.scalar(
        insert(operator_t)
        .values(subject=pending_subject(address), email=address, display_name=address, is_admin=True)
        .returning(operator_t.c.id)
    )
    return created, True


NO_MAPPED_GROUP = "none of your identity provider groups is mapped to Switchboard"
DEACTIVATED = "this operator has been deactivated"


async def sign_in_operator(
    conn: AsyncConnection,
    claims: dict[str, Any],
    group_map: dict[str, GroupGrant],
    groups_claim: str,
    *,
    require_mapped_group: bool = False,
) -> tuple[uuid.UUID, set[uuid.UUID]]:
    """Create or refresh the operator for verified id_token claims; returns (operator id, teams they joined).

    Deactivated operators are refused (403), and so are users none of whose groups is mapped when
    ``require_mapped_group`` is set (the caller's transaction rolls back: nothing is stored).
    """
    email = claims.get("email") if isinstance(claims.get("email"), str) else None
    if email and claims.get("email_verified") is not False:
        await conn.execute(_ADOPT, {"sub": claims["sub"], "pending": pending_subject(email)})
    row = (
        await conn.execute(
            insert(operator_t)
            .values(subject=claims["sub"], email=email, display_name=display_name(claims))
            .on_conflict_do_update(
                index_elements=[operator_t.c.subject],
                set_={"email": email, "display_name": display_name(claims)},
            )
            .returning(operator_t.c.id, operator_t.c.deactivated_at)
        )
    ).one()
    if row.deactivated_at is not None:
        raise Forbidden(DEACTIVATED)
    groups = groups_of(claims, groups_claim)
    if require_mapped_group and group_map and not groups & group_map.keys():
        raise Forbidden(NO_MAPPED_GROUP)
    joined = await apply_group_map(conn, row.id, groups, group_map)
    return row.id, joined


async def apply_group_map(
    conn: AsyncConnection, operator_id: uuid.UUID, groups: set[str], group_map: dict[str, GroupGrant]
) -> set[uuid.UUID]:
    """Memberships of mapped teams become exactly what the groups grant (lead wins over operator).

    Teams no group maps to are left alone, so memberships managed in Switchboard survive; a mapped
    team that does not exist yet is created. Admin is set only when some group grants admin.
    Returns the teams the operator joined or changed role in (their queues may now drain).
    """
    if not group_map:
        return set()
    if any(grant.admin for grant in group_map.values()):
        is_admin = any(group_map[group].admin for group in groups if group in group_map)
        await conn.execute(sa.update(operator_t).where(operator_t.c.id == operator_id).values(is_admin=is_admin))

    team_names = {grant.team for grant in group_map.values() if grant.team}
    if team_names:  # a map of admin grants only names no team (and an empty VALUES list is not SQL)
        rows = [{"name": name} for name in sorted(team_names)]
        await conn.execute(insert(team_t).values(rows).on_conflict_do_nothing())
    team_ids: dict[str, uuid.UUID] = dict(
        (await conn.execute(sa.select(team_t.c.name, team_t.c.id).where(team_t.c.name.in_(team_names)))).all()
    )

    wanted: dict[uuid.UUID, str] = {}
    for group in groups & group_map.keys():
        grant = group_map[group]
        if grant.team:
            team_id = team_ids[grant.team]
            wanted[team_id] = "lead" if "lead" in (grant.role, wanted.get(team_id)) else grant.role
    current: dict[uuid.UUID, str] = dict(
        (
            await conn.execute(
                sa.select(member_t.c.team_id, member_t.c.role).where(
                    member_t.c.operator_id == operator_id, member_t.c.team_id.in_(team_ids.values())
                )
            )
        ).all()
    )
    gone = current.keys() - wanted.keys()
    if gone:
        await conn.execute(
            sa.delete(member_t).where(member_t.c.operator_id == operator_id, member_t.c.team_id.in_(gone))
        )
    changed = {team_id for team_id, role in wanted.items() if current.get(team_id) != role}
    if changed:
        statement = insert(member_t).values(
            [{"team_id": team_id, "operator_id": operator_id, "role": wanted[team_id]} for team_id in changed]
        )
        await conn.execute(
            statement.on_conflict_do_update(
                index_elements=[member_t.c.team_id, member_t.c.operator_id], set_={"role": statement.excluded.role}
            )
        )
    return changed
