"""Backup and restore as docs/operations.md tells it: pg_dump -Fc, pg_restore into a new database, upgrade, start."""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from service.db.migrate import alembic_config
from service.settings import Settings
from tests.conftest import RunningApi, run_api, scratch_database
from tests.factories import bearer, make_operator, personal_token
from tests.integration.gateway.test_gateway import connect, send

pytestmark = pytest.mark.skipif(shutil.which("pg_dump") is None, reason="pg_dump and pg_restore are not installed")


async def _revision(url: str) -> str | None:
    engine = create_async_engine(url.replace("postgresql://", "postgresql+asyncpg://"))
    async with engine.connect() as conn:
        current = await conn.run_sync(lambda sync: MigrationContext.configure(sync).get_current_revision())
    await engine.dispose()
    return current


async def _run(*argv: str, env: dict[str, str] | None = None) -> None:
    await asyncio.to_thread(subprocess.run, argv, check=True, env=env)


def _head() -> str | None:
    return ScriptDirectory.from_config(alembic_config("postgresql://unused/unused")).get_current_head()


async def test_a_restored_dump_serves_the_same_data(
    api: RunningApi, settings: Settings, clean_db: AsyncEngine, tmp_path: Path
) -> None:
    # The first admin is made in the database (as `switchboard operators create-admin` does); the rest over the API.
    admin = await make_operator(clean_db, "Root", is_admin=True)
    bootstrap = bearer(await personal_token(clean_db, admin))
    async with api.client() as http:
        team = await http.post("/api/v1/teams", json={"name": "Support", "isDefault": True}, headers=bootstrap)
        assert team.status_code == 201, team.text
        created = await http.post("/api/v1/me/tokens", json={"name": "ops laptop"}, headers=bootstrap)
        assert created.status_code == 201, created.text
        token = bearer(created.json()["token"])
        session_id = await connect(http, "v-backup")
        sent = await send(http, session_id, "Is my order on its way?")
        assert sent.status_code == 200, sent.text
        message_id = sent.json()["messageId"]
        before = await http.get(f"/api/v1/conversations/{session_id}", headers=token)
        assert before.status_code == 200, before.text

    dump = tmp_path / "switchboard.dump"
    await _run("pg_dump", "-Fc", "-f", str(dump), "-d", settings.database_url)
    async with scratch_database("restore") as restored:
        await _run("pg_restore", "--no-owner", "-d", restored, str(dump))
        # The dump carries alembic_version: `switchboard db upgrade` on the restored database finds nothing to do.
        assert await _revision(restored) == _head()
        environment = {
            **os.environ,
            "DATABASE_URL": restored,
            "REDIS_URL": settings.redis_url,
            "SECRET_KEY": settings.secret_key,
        }
        await _run(sys.executable, "-m", "service.cli", "db", "upgrade", env=environment)
        assert await _revision(restored) == _head()

        async with run_api(settings.model_copy(update={"database_url": restored})) as second, second.client() as http:
            me = await http.get("/api/v1/me", headers=token)
            assert me.status_code == 200, me.text
            assert me.json()["id"] == str(admin)
            teams = await http.get("/api/v1/teams", headers=token)
            assert [(t["id"], t["name"]) for t in teams.json()["items"]] == [(team.json()["id"], "Support")]
            conversation = await http.get(f"/api/v1/conversations/{session_id}", headers=token)
            assert conversation.status_code == 200, conversation.text
            assert conversation.json()["id"] == session_id
            assert conversation.json() == before.json()
            after = await http.get(f"/api/v1/conversations/{session_id}/messages", headers=token)
            assert after.status_code == 200, after.text
            assert [(m["id"], m["sender"], m["content"]) for m in after.json()["items"]] == [
                (message_id, "visitor", "Is my order on its way?")
            ]
