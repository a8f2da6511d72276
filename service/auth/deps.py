"""``provide_principal``: turns the request's credential into a ``Principal`` or answers 401."""

from __future__ import annotations

import uuid
from typing import Any

import sqlalchemy as sa
from litestar import Request
from litestar.exceptions import NotAuthorizedException, PermissionDeniedException
from sqlalchemy.ext.asyncio import AsyncEngine

from service.auth.principal import TOKEN_PREFIX, Principal, hash_token
from service.db.models import ApiToken, Operator, TeamMember

token_t = ApiToken.__table__  # type: ignore[attr-defined]
operator_t = Operator.__table__  # type: ignore[attr-defined]
member_t = TeamMember.__table__  # type: ignore[attr-defined]

# Personal access token scopes: reading, changing, and administration (operators, all teams).
SCOPES = ("read", "write", "admin")
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
UNAUTHORIZED_HEADERS = {"WWW-Authenticate": 'Bearer realm="switchboard"'}


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
                .where(
                    token_t.c.token_hash == hash_token(secret),
                    token_t.c.revoked_at.is_(None),
                    sa.or_(token_t.c.expires_at.is_(None), token_t.c.expires_at > sa.func.now()),
                )
                .values(last_used_at=sa.func.now())
                .returning(token_t.c.operator_id, token_t.c.scopes)
            )
        ).first()
        if row is None:
            return None
        return await load_principal(conn, row.operator_id, "token", frozenset(row.scopes))


def check_token_scope(request: Request[Any, Any, Any], principal: Principal) -> None:
    """Tokens need ``read`` for safe methods, ``write`` for the rest, and ``admin`` on admin routes."""
    if principal.scopes is None:
        return
    needed = ["read" if request.method in SAFE_METHODS else "write"]
    if request.route_handler.opt.get("admin"):
        needed.append("admin")
    for scope in needed:
        if scope not in principal.scopes:
            raise PermissionDeniedException(f"This token lacks the '{scope}' scope")


async def provide_principal(request: Request[Any, Any, Any]) -> Principal:
    """The caller, from ``Authorization: Bearer`` (personal access token); 401 when absent or invalid."""
    engine: AsyncEngine = request.app.state.engine
    header = request.headers.get("authorization", "")
    scheme, _, credential = header.partition(" ")
    principal: Principal | None = None
    if scheme.lower() == "bearer" and credential.startswith(TOKEN_PREFIX):
        principal = await principal_from_personal_token(engine, credential.strip())
    if principal is None:
        raise NotAuthorizedException("Sign in or send a valid bearer token", headers=UNAUTHORIZED_HEADERS)
    check_token_scope(request, principal)
    return principal
