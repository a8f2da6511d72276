"""Who an operator is (their principal, from a token or a subject) and their personal access tokens."""

from __future__ import annotations

import uuid
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from service.auth.principal import ADMIN_ONLY_SCOPES, Principal, hash_token, new_personal_token, requires_admin_network
from service.auth.schemas import TokenCreate, TokenCreated, TokenList, TokenPublic
from service.db.tables import member_t, oauth_grant_t, operator_t, token_t
from service.errors import Conflict, Forbidden, NotFound

MAX_LIVE_TOKENS = 50


async def load_principal(
    conn: Any, operator_id: uuid.UUID, via: str, scopes: frozenset[str] | None = None
) -> Principal | None:
    """The operator with their team roles, or None when they do not exist or were deactivated."""
    operator = (
        await conn.execute(
            sa.select(operator_t.c.display_name, operator_t.c.is_admin).where(
                operator_t.c.id == operator_id, operator_t.c.deactivated_at.is_(None)
            )
        )
    ).first()
    if operator is None:
        return None
    teams = await conn.execute(
        sa.select(member_t.c.team_id, member_t.c.role).where(member_t.c.operator_id == operator_id)
    )
    return Principal(
        operator_id=operator_id,
        display_name=operator.display_name,
        is_admin=operator.is_admin,
        teams={row.team_id: row.role for row in teams},
        via=via,  # type: ignore[arg-type]
        scopes=scopes,
    )


async def principal_from_personal_token(engine: AsyncEngine, secret: str) -> Principal | None:
    """A live (not revoked, not expired) personal access token's owner; records its last use."""
    async with engine.begin() as conn:
        row = (
            await conn.execute(
                sa.update(token_t)
                .where(token_t.c.token_hash == hash_token(secret), *_live())
                .values(last_used_at=sa.func.now())
                .returning(token_t.c.operator_id, token_t.c.scopes)
            )
        ).first()
        if row is None:
            return None
        return await load_principal(conn, row.operator_id, "token", frozenset(row.scopes))


async def principal_of_subject(conn: AsyncConnection, subject: str, via: str) -> Principal | None:
    """The operator the IdP knows by ``subject`` (they signed in once in a browser), if any."""
    operator_id = (
        await conn.execute(sa.select(operator_t.c.id).where(operator_t.c.subject == subject))
    ).scalar_one_or_none()
    return None if operator_id is None else await load_principal(conn, operator_id, via)


async def principal_by_email(conn: AsyncConnection, email: str) -> Principal:
    """The active operator with this email, as the command line acts for them (full rights, no scopes)."""
    ids = (
        (
            await conn.execute(
                sa.select(operator_t.c.id).where(
                    sa.func.lower(operator_t.c.email) == email.strip().lower(), operator_t.c.deactivated_at.is_(None)
                )
            )
        )
        .scalars()
        .all()
    )
    if len(ids) > 1:
        raise Conflict(f"{len(ids)} operators have the email {email}", field="email")
    principal = await load_principal(conn, ids[0], "cli") if ids else None
    if principal is None:
        raise NotFound(f"No active operator has the email {email}", field="email")
    return principal


async def revoke_credentials(conn: AsyncConnection, operator_id: uuid.UUID) -> None:
    """Every stored credential of the operator stops working now (deactivation): personal access tokens and
    native-app sign-ins (their access and refresh tokens). Their push devices are removed beside it
    (``service.operators.services``).

    Browser sessions live in Redis: ``sessions.end_operator_sessions`` ends them after the commit.
    """
    await conn.execute(
        sa.update(token_t)
        .where(token_t.c.operator_id == operator_id, token_t.c.revoked_at.is_(None))
        .values(revoked_at=sa.func.now())
    )
    await conn.execute(
        sa.update(oauth_grant_t)
        .where(oauth_grant_t.c.operator_id == operator_id, oauth_grant_t.c.revoked_at.is_(None))
        .values(revoked_at=sa.func.now(), revoked_reason="deactivated")
    )


# --- Personal access tokens -----------------------------------------------------------------------------------


async def live_tokens(conn: AsyncConnection, operator_id: uuid.UUID) -> TokenList:
    """The operator's tokens that still work, newest first."""
    rows = await conn.execute(
        sa.select(token_t)
        .where(token_t.c.operator_id == operator_id, *_live())
        .order_by(token_t.c.created_at.desc(), token_t.c.id)
    )
    return TokenList(items=[TokenPublic.model_validate(row._mapping) for row in rows])


async def create_token(conn: AsyncConnection, principal: Principal, data: TokenCreate) -> TokenCreated:
    """A new token for the caller, never with more than the caller has; at most ``MAX_LIVE_TOKENS`` live ones."""
    scopes = sorted(set(data.scopes))
    for scope in ADMIN_ONLY_SCOPES:
        if scope in scopes:
            if not principal.is_admin:
                raise Forbidden(f"Only administrators may create tokens with the '{scope}' scope")
            requires_admin_network(principal)
    if principal.scopes is not None and not set(scopes) <= principal.scopes:
        raise Forbidden("A token cannot create a token with scopes it does not have")
    secret, digest, prefix = new_personal_token()
    # Lock the operator row so two creations cannot both pass the limit.
    await conn.execute(sa.text("SELECT 1 FROM operator WHERE id = :id FOR UPDATE"), {"id": principal.operator_id})
    live = (
        await conn.execute(sa.select(sa.func.count()).where(token_t.c.operator_id == principal.operator_id, *_live()))
    ).scalar_one()
    if live >= MAX_LIVE_TOKENS:
        raise Conflict(f"You already have {MAX_LIVE_TOKENS} live tokens; revoke one first")
    row = (
        await conn.execute(
            sa.insert(token_t)
            .values(
                operator_id=principal.operator_id,
                name=data.name,
                token_hash=digest,
                prefix=prefix,
                scopes=scopes,
                expires_at=data.expires_at,
            )
            .returning(token_t)
        )
    ).one()
    return TokenCreated.model_validate({**row._mapping, "token": secret})


async def revoke_token(conn: AsyncConnection, operator_id: uuid.UUID, token_id: uuid.UUID) -> None:
    """The operator's live token stops working; someone else's, or one already revoked, is not found."""
    revoked = await conn.execute(
        sa.update(token_t)
        .where(token_t.c.id == token_id, token_t.c.operator_id == operator_id, token_t.c.revoked_at.is_(None))
        .values(revoked_at=sa.func.now())
    )
    if revoked.rowcount == 0:
        raise NotFound("Token not found")


def _live() -> tuple[Any, ...]:
    return (
        token_t.c.revoked_at.is_(None),
        sa.or_(token_t.c.expires_at.is_(None), token_t.c.expires_at > sa.func.now()),
    )
