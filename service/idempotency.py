"""``Idempotency-Key`` for actions that change state without producing a row of their own (claim, transfer, close).

Replies and notes derive their row's id from the key instead (``service.conversations.services``). Here the
action's answer is stored under (operator, key) in the action's own transaction: a repeat waits for the first
on a transaction-scoped advisory lock, then gets the stored answer; the key used for another request is a 409.
"""

from __future__ import annotations

import hashlib
import json
import re
import uuid
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from service.db.tables import idempotent_action_t
from service.errors import Conflict, field_malformed

IDEMPOTENCY_KEY = re.compile(r"[\x21-\x7e]{1,255}")


def check_key(key: str | None) -> None:
    """400 naming the header for a key that is not 1 to 255 printable ASCII characters."""
    if key is not None and not IDEMPOTENCY_KEY.fullmatch(key):
        raise field_malformed("Idempotency-Key", "1 to 255 printable ASCII characters without spaces")


def request_hash(operation: str, subject: str, body: Any = None) -> str:
    """What the key is bound to: the operation, its subject and its body."""
    return hashlib.sha256(json.dumps([operation, subject, body], sort_keys=True, default=str).encode()).hexdigest()


async def advisory_lock(conn: AsyncConnection, name: str) -> None:
    """Wait for, then hold until the transaction ends, the advisory lock named ``name`` (a key's first use)."""
    lock_id = int.from_bytes(hashlib.sha256(name.encode()).digest()[:8], "big", signed=True)
    await conn.execute(sa.select(sa.func.pg_advisory_xact_lock(lock_id)))


async def replayed(conn: AsyncConnection, operator_id: uuid.UUID, key: str, bound_to: str) -> dict[str, Any] | None:
    """The stored answer for this key, or None to act now; waits for a concurrent first use to commit."""
    await advisory_lock(conn, f"action\n{operator_id}\n{key}")
    row = (
        await conn.execute(
            sa.select(idempotent_action_t.c.request_hash, idempotent_action_t.c.response).where(
                idempotent_action_t.c.operator_id == operator_id, idempotent_action_t.c.key == key
            )
        )
    ).one_or_none()
    if row is None:
        return None
    if row.request_hash != bound_to:
        raise Conflict("This Idempotency-Key was used for a different request")
    return dict(row.response)


async def remember(
    conn: AsyncConnection, operator_id: uuid.UUID, key: str, bound_to: str, response: dict[str, Any]
) -> None:
    """Store the answer in the action's transaction (under the lock ``replayed`` took)."""
    await conn.execute(
        sa.insert(idempotent_action_t).values(
            operator_id=operator_id, key=key, request_hash=bound_to, response=response
        )
    )
