"""Factories for operators, teams, memberships and tokens, written straight to PostgreSQL."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from service.auth.principal import hash_token, new_personal_token
from service.db.models import ApiToken, Operator, Team, TeamMember
from service.db.tables import oauth_grant_t, oauth_token_t


async def make_operator(engine: AsyncEngine, name: str = "Ada", **values: Any) -> uuid.UUID:
    operator_id = values.pop("id", uuid.uuid4())
    async with engine.begin() as conn:
        await conn.execute(
            sa.insert(Operator.__table__).values(  # type: ignore[attr-defined]
                id=operator_id,
                subject=values.pop("subject", f"sub-{operator_id}"),
                email=values.pop("email", f"{name.lower()}-{operator_id.hex[:6]}@example.test"),
                display_name=name,
                **values,
            )
        )
    return operator_id


async def make_team(engine: AsyncEngine, name: str | None = None, **values: Any) -> uuid.UUID:
    """A team row; queue position notices are off unless asked for, so a test's widget hears only its own story
    (teams made through the API get the product's default, on)."""
    team_id = values.pop("id", uuid.uuid4())
    values.setdefault("queue_notices", False)
    async with engine.begin() as conn:
        await conn.execute(
            sa.insert(Team.__table__).values(id=team_id, name=name or f"team-{team_id.hex[:8]}", **values)  # type: ignore[attr-defined]
        )
    return team_id


async def add_member(
    engine: AsyncEngine, team_id: uuid.UUID, operator_id: uuid.UUID, role: str = "operator", **values: Any
) -> None:
    async with engine.begin() as conn:
        await conn.execute(
            sa.insert(TeamMember.__table__).values(team_id=team_id, operator_id=operator_id, role=role, **values)  # type: ignore[attr-defined]
        )


async def personal_token(
    engine: AsyncEngine, operator_id: uuid.UUID, scopes: tuple[str, ...] = ("read", "write", "admin"), **values: Any
) -> str:
    """A personal access token for the operator; returns the secret to send as ``Bearer``."""
    secret, digest, prefix = new_personal_token()
    async with engine.begin() as conn:
        await conn.execute(
            sa.insert(ApiToken.__table__).values(  # type: ignore[attr-defined]
                operator_id=operator_id, name="test", token_hash=digest, prefix=prefix, scopes=list(scopes), **values
            )
        )
    return secret


async def app_access_token(engine: AsyncEngine, operator_id: uuid.UUID, client_id: str = "switchboard-mobile") -> str:
    """A native app's access token (as /oauth/token issues them) for the operator, with every scope."""
    secret = "sba_" + uuid.uuid4().hex
    async with engine.begin() as conn:
        grant_id = await conn.scalar(
            sa.insert(oauth_grant_t)
            .values(operator_id=operator_id, client_id=client_id, scopes=["admin", "read", "write"])
            .returning(oauth_grant_t.c.id)
        )
        await conn.execute(
            sa.insert(oauth_token_t).values(
                grant_id=grant_id,
                kind="access",
                token_hash=hash_token(secret),
                expires_at=datetime.now(UTC) + timedelta(minutes=15),
            )
        )
    return secret


def bearer(secret: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {secret}"}
