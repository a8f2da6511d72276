"""Operators' chat accounts: one-time link codes (Redis, short-lived, single use) and the ``bridge_link`` rows."""

from __future__ import annotations

import hashlib
import secrets
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa
from redis.asyncio import Redis
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncConnection

from service.audit import record_audit
from service.bridges.schemas import BridgeLinkPublic, LinkCodePublic
from service.db.tables import link_t, operator_t
from service.errors import NotFound
from service.settings import Settings

LINK_CODE_TTL_SECONDS = 600
# No 0/O, 1/I/L: codes are typed from one screen into another.
_ALPHABET = "ABCDEFGHJKMNPQRSTUVWXYZ23456789"
LINK_CODE_LENGTH = 10  # 31**10 ≈ 2**49 codes, each alive for ten minutes


def normalize_code(text: str) -> str:
    """Codes are read case-insensitively, with spaces and dashes ignored."""
    return "".join(text.split()).replace("-", "").upper()


def _code_key(settings: Settings, code: str) -> str:
    # Only the code's hash is a key, so a Redis dump holds no usable code.
    return f"{settings.redis_prefix}:bridge-link-code:{hashlib.sha256(normalize_code(code).encode()).hexdigest()}"


async def new_link_code(redis: Redis, settings: Settings, operator_id: uuid.UUID) -> LinkCodePublic:
    """A fresh code for the operator, valid for ``LINK_CODE_TTL_SECONDS`` and for one ``/link``."""
    code = "".join(secrets.choice(_ALPHABET) for _ in range(LINK_CODE_LENGTH))
    await redis.set(_code_key(settings, code), str(operator_id), ex=LINK_CODE_TTL_SECONDS)
    expires_at = datetime.now(UTC) + timedelta(seconds=LINK_CODE_TTL_SECONDS)
    return LinkCodePublic(code=code, command=f"/link {code}", expires_at=expires_at)


async def take_link_code(redis: Redis, settings: Settings, code: str) -> uuid.UUID | None:
    """The operator the code was made for, once: the code is gone afterwards (GETDEL is atomic)."""
    value = await redis.getdel(_code_key(settings, code))
    return None if value is None else uuid.UUID(value.decode() if isinstance(value, bytes) else value)


async def link_account(
    conn: AsyncConnection,
    operator_id: uuid.UUID,
    platform: str,
    external_user_id: str,
    external_name: str | None,
    direct_chat_id: str | None,
) -> bool:
    """Link the platform account to the operator (False if the operator is gone or deactivated).

    The code proves the operator and the message proves the account, so both older links give
    way: the account's link to someone else, and the operator's link to another account.
    """
    active = await conn.scalar(
        sa.select(operator_t.c.id).where(operator_t.c.id == operator_id, operator_t.c.deactivated_at.is_(None))
    )
    if active is None:
        return False
    await conn.execute(
        sa.delete(link_t).where(
            link_t.c.platform == platform,
            link_t.c.external_user_id == external_user_id,
            link_t.c.operator_id != operator_id,
        )
    )
    statement = insert(link_t).values(
        operator_id=operator_id,
        platform=platform,
        external_user_id=external_user_id,
        external_name=external_name,
        direct_chat_id=direct_chat_id,
    )
    same_account = link_t.c.external_user_id == statement.excluded.external_user_id
    await conn.execute(
        statement.on_conflict_do_update(
            index_elements=[link_t.c.operator_id, link_t.c.platform],
            set_={
                "external_user_id": statement.excluded.external_user_id,
                "external_name": statement.excluded.external_name,
                # A link made in a group keeps the DM the bot already knew for the same account.
                "direct_chat_id": sa.func.coalesce(
                    statement.excluded.direct_chat_id, sa.case((same_account, link_t.c.direct_chat_id))
                ),
                "created_at": sa.func.now(),
            },
        )
    )
    audit = {"platform": platform, "externalUserId": external_user_id}
    await record_audit(conn, operator_id, "bridge_link.created", "operator", operator_id, audit)
    return True


async def linked_operator(conn: AsyncConnection, platform: str, external_user_id: str) -> uuid.UUID | None:
    """The operator the platform account is linked to, if any."""
    return await conn.scalar(  # type: ignore[no-any-return]
        sa.select(link_t.c.operator_id).where(
            link_t.c.platform == platform, link_t.c.external_user_id == external_user_id
        )
    )


def _public(row: Any) -> BridgeLinkPublic:
    return BridgeLinkPublic.model_validate({**row._mapping, "direct_chat": row.direct_chat_id is not None})


async def list_links(conn: AsyncConnection, operator_id: uuid.UUID) -> list[BridgeLinkPublic]:
    rows = await conn.execute(sa.select(link_t).where(link_t.c.operator_id == operator_id).order_by(link_t.c.platform))
    return [_public(row) for row in rows]


async def remove_link(conn: AsyncConnection, operator_id: uuid.UUID, link_id: uuid.UUID) -> None:
    """Unlink one of the operator's accounts (404 for anyone else's): its messages are no longer theirs."""
    removed = await conn.scalar(
        sa.delete(link_t)
        .where(link_t.c.id == link_id, link_t.c.operator_id == operator_id)
        .returning(link_t.c.platform)
    )
    if removed is None:
        raise NotFound("Bridge link not found")
    await record_audit(conn, operator_id, "bridge_link.removed", "operator", operator_id, {"platform": removed})
