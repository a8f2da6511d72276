"""Retention: the daily cron deletes old events, finished outbox rows, audit rows, idempotency answers and sites'
event ids, and keeps recent ones, work still to do and events a relay has not read."""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from service.settings import Settings
from tests.factories import make_operator
from tests.integration.workers.test_worker import rows
from workers import jobs
from workers.settings import worker_settings

OLD, RECENT = "now() - interval '31 days'", "now() - interval '29 days'"


async def test_old_rows_go_and_recent_ones_and_unread_events_stay(settings: Settings, clean_db: AsyncEngine) -> None:
    operator = await make_operator(clean_db, "Ida")
    async with clean_db.begin() as conn:
        for event_id, age in ((1, OLD), (2, OLD), (3, OLD), (4, RECENT)):
            await conn.execute(sa.text(f"INSERT INTO event (id, kind, created_at) VALUES ({event_id}, 'x', {age})"))
        # Every relay has read event 2; the bridge relay no further.
        cursors = "('relay', 4), ('bridges', 2), ('widget-availability', 3), ('site_callbacks', 4)"
        await conn.execute(sa.text(f"INSERT INTO event_cursor VALUES {cursors}"))
        outbox = [
            (1, OLD, "delivered_at = now()"),
            (2, OLD, "dead_at = now()"),
            (3, OLD, "held_at = now()"),  # waits for its endpoint: still work to do
            (4, OLD, "attempts = 3"),  # still retried
            (5, RECENT, "delivered_at = now()"),
        ]
        for outbox_id, age, state in outbox:
            await conn.execute(
                sa.text(
                    f"INSERT INTO outbox (id, kind, payload, created_at) VALUES ({outbox_id}, 'webhook', '{{}}', {age})"
                )
            )
            await conn.execute(sa.text(f"UPDATE outbox SET {state} WHERE id = {outbox_id}"))
        for audit_id, age in ((1, OLD), (2, RECENT)):
            await conn.execute(
                sa.text(
                    "INSERT INTO audit_event (id, action, subject_type, subject_id, created_at) "
                    f"VALUES ({audit_id}, 'team.updated', 'team', 't', {age})"
                )
            )
        for key, age in (("old", OLD), ("recent", RECENT)):
            await conn.execute(
                sa.text(
                    "INSERT INTO idempotent_action (operator_id, key, request_hash, response, created_at) "
                    f"VALUES (:operator, :key, 'h', '{{}}', {age})"
                ),
                {"operator": operator, "key": key},
            )

        await conn.execute(
            sa.text(
                "INSERT INTO site (id, name, key_hash, key_prefix, callback_secret_encrypted) "
                "VALUES ('00000000-0000-0000-0000-000000000001', 's', 'h', 'sbk_', 'x')"
            )
        )
        for event_id, age in (("old", OLD), ("recent", RECENT)):
            await conn.execute(
                sa.text(
                    "INSERT INTO site_event (site_id, event_id, applied_at) "
                    f"VALUES ('00000000-0000-0000-0000-000000000001', :id, {age})"
                ),
                {"id": event_id},
            )

    deleted = await jobs.prune_old_rows({"engine": clean_db, "settings": settings})

    assert deleted == {"event": 2, "outbox": 2, "audit_event": 1, "idempotent_action": 1, "site_event": 1}
    assert [r["id"] for r in await rows(clean_db, "SELECT id FROM event ORDER BY id")] == [3, 4]
    assert [r["id"] for r in await rows(clean_db, "SELECT id FROM outbox ORDER BY id")] == [3, 4, 5]
    assert [r["id"] for r in await rows(clean_db, "SELECT id FROM audit_event")] == [2]
    assert [r["key"] for r in await rows(clean_db, "SELECT key FROM idempotent_action")] == ["recent"]
    assert [r["event_id"] for r in await rows(clean_db, "SELECT event_id FROM site_event")] == ["recent"]
    # A second run finds nothing more.
    assert await jobs.prune_old_rows({"engine": clean_db, "settings": settings}) == dict.fromkeys(deleted, 0)


async def test_events_stay_while_a_relay_has_no_cursor_yet(settings: Settings, clean_db: AsyncEngine) -> None:
    async with clean_db.begin() as conn:
        await conn.execute(sa.text(f"INSERT INTO event (id, kind, created_at) VALUES (1, 'x', {OLD})"))
        await conn.execute(
            sa.text("INSERT INTO event_cursor VALUES ('relay', 1), ('bridges', 1), ('site_callbacks', 1)")
        )
    assert (await jobs.prune_old_rows({"engine": clean_db, "settings": settings}))["event"] == 0


def test_the_worker_runs_it_daily(settings: Settings) -> None:
    [retention] = [c for c in worker_settings(settings)["cron_jobs"] if c.name.endswith(":retention")]
    assert (retention.coroutine, retention.hour, retention.minute, retention.unique) == (
        jobs.prune_old_rows,
        3,
        30,
        True,
    )
