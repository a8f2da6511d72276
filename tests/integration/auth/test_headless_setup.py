"""Headless set-up: the real ``switchboard`` command, as a subprocess, against the test database."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import httpx
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from service.settings import Settings
from tests.conftest import RunningApi, run_api
from tests.factories import make_operator, make_team
from tests.support.cli import switchboard
from tests.support.oidc import oidc_settings, set_user, sign_in


async def test_create_admin_then_a_token_that_calls_the_api_with_its_scope_and_expiry(
    settings: Settings, api: RunningApi, clean_db: AsyncEngine
) -> None:
    made = await switchboard(settings, "operators", "create-admin", "Root@Example.test")
    again = await switchboard(settings, "operators", "create-admin", "root@example.test")
    assert (made.returncode, again.returncode) == (0, 0), made.stderr + again.stderr
    operator_id = made.stdout.split()[0]
    assert (
        made.stdout == f"{operator_id} Root@Example.test: created as an admin; they take it over at their first "
        "sign-in with this email\n"
    )
    assert again.stdout == f"{operator_id} root@example.test: now an admin\n"

    read_only = await switchboard(
        settings, "tokens", "create", "root@example.test", "--scope", "read", "--expires", "7d"
    )
    admin = await switchboard(
        settings, "tokens", "create", "root@example.test", "--scope", "read", "--scope", "admin", "--name", "setup"
    )
    assert (read_only.returncode, admin.returncode) == (0, 0), read_only.stderr + admin.stderr
    secret = read_only.stdout.strip()
    assert secret.startswith("sbp_") and "\n" not in secret
    assert read_only.stderr.startswith(f"token {secret[:12]}… for root@example.test: scopes read, expires 20")

    async with httpx.AsyncClient(base_url=api.url) as program:
        me = await program.get("/api/v1/me", headers={"Authorization": f"Bearer {secret}"})
        write = await program.put(
            "/api/v1/me/presence", json={"status": "online"}, headers={"Authorization": f"Bearer {secret}"}
        )
        admin_secret = admin.stdout.strip()
        operators = await program.get("/api/v1/operators", headers={"Authorization": f"Bearer {admin_secret}"})
        not_admin = await program.get("/api/v1/operators", headers={"Authorization": f"Bearer {secret}"})
    assert me.status_code == 200 and me.json()["isAdmin"] is True
    assert (write.status_code, write.json()["detail"]) == (403, "This token lacks the 'write' scope")
    assert operators.status_code == 200
    assert (not_admin.status_code, not_admin.json()["detail"]) == (403, "This token lacks the 'admin' scope")

    async with clean_db.connect() as conn:
        rows = (await conn.execute(sa.text("SELECT name, scopes, expires_at FROM api_token ORDER BY created_at"))).all()
    assert [(row.name, row.scopes) for row in rows] == [("command line", ["read"]), ("setup", ["admin", "read"])]
    expected = datetime.now(UTC) + timedelta(days=7)
    assert expected - timedelta(minutes=5) < rows[0].expires_at < expected
    assert rows[1].expires_at is None


async def test_cli_refusals_are_one_line_and_exit_1(settings: Settings, clean_db: AsyncEngine) -> None:
    await make_operator(clean_db, "Olga", email="olga@example.test")
    unknown = await switchboard(settings, "tokens", "create", "nobody@example.test")
    not_admin = await switchboard(settings, "tokens", "create", "olga@example.test", "--scope", "admin")
    past = await switchboard(settings, "tokens", "create", "olga@example.test", "--expires", "2001-01-01T00:00:00Z")
    garbled = await switchboard(settings, "tokens", "create", "olga@example.test", "--expires", "soon")

    assert (unknown.returncode, unknown.stdout) == (1, "")
    assert unknown.stderr == "Error: No active operator has the email nobody@example.test\n"
    assert (not_admin.returncode, not_admin.stderr) == (
        1,
        "Error: Only administrators may create tokens with the 'admin' scope\n",
    )
    assert past.returncode == 2 and "must be a future time with a timezone" in past.stderr
    assert garbled.returncode == 2 and "give a duration (30d, 12h, 90m, 2w)" in garbled.stderr
    async with clean_db.connect() as conn:
        assert (await conn.execute(sa.text("SELECT count(*) FROM api_token"))).scalar_one() == 0


async def test_the_admin_made_headless_is_taken_over_at_first_sign_in(
    settings: Settings, oidc_issuer: str, clean_db: AsyncEngine
) -> None:
    await make_team(clean_db, "Support")
    assert (await switchboard(settings, "operators", "create-admin", "boss@example.test")).returncode == 0
    await set_user(oidc_issuer, "boss-sub", email="boss@example.test", name="The Boss")

    async with run_api(oidc_settings(settings, oidc_issuer, oidc_group_map={})) as running, running.client() as b:
        assert (await sign_in(b, "boss-sub")).status_code == 303
        me = (await b.get("/api/v1/me")).json()

    assert (me["displayName"], me["isAdmin"]) == ("The Boss", True)
    async with clean_db.connect() as conn:
        subjects = (await conn.execute(sa.text("SELECT subject FROM operator"))).scalars().all()
    assert subjects == ["boss-sub"]
