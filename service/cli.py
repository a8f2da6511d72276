"""The ``switchboard`` command: api, worker, database migrations, headless set-up and the all-in-one dev runner."""

from __future__ import annotations

import asyncio
import importlib
import inspect
import os
import re
import sys
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

import click
from pydantic import ValidationError
from sqlalchemy.ext.asyncio import AsyncConnection

from service.errors import DomainError
from service.settings import load_settings

T = TypeVar("T")
DURATION = re.compile(r"^(\d+)([mhdw])$")
UNITS = {"m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


@click.group()
def main() -> None:
    """Switchboard: team routing for PocketPing."""


@main.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8000, show_default=True, type=int)
@click.option("--workers", default=1, show_default=True, type=int, help="Processes to run (the api is stateless).")
def api(host: str, port: int, workers: int) -> None:
    """Run the HTTP api (widget gateway, REST API, dashboard)."""
    import uvicorn

    settings = load_settings()  # fail fast, with one clear line, before uvicorn starts
    uvicorn.run(
        "service.app:create_app",
        factory=True,
        host=host,
        port=port,
        workers=workers,
        proxy_headers=True,
        # Behind a proxy that serves Switchboard under PATH_PREFIX and strips it (docs/embedding.md).
        root_path=settings.path_prefix,
        log_config=None,
        timeout_graceful_shutdown=10,
    )


@main.command()
@click.option("--check", is_flag=True, help="Exit 0 if a worker reported healthy recently, else 1.")
@click.option(
    "--app",
    "embedded",
    default=None,
    help="module:attribute of the Switchboard your app embeds (service.embed): its settings, bridges and hooks.",
)
def worker(check: bool, embedded: str | None) -> None:
    """Run the arq worker (routing, timers, outbox delivery, sweeps)."""
    from arq.worker import check_health, run_worker

    from service.embed import Switchboard
    from service.resources import redis_settings
    from workers.settings import worker_settings

    if embedded is None:
        settings, host = load_settings(), None
    else:
        switchboard = _load(embedded, "--app", "myapp.main:switchboard")
        switchboard = getattr(switchboard, "switchboard", switchboard)  # the Litestar plugin holds one
        if not isinstance(switchboard, Switchboard):
            raise click.BadParameter(f"{embedded} is not a service.embed.Switchboard", param_hint="--app")
        settings, host = switchboard.settings, switchboard.host
    options = worker_settings(settings, host)
    if check:
        # Without the worker's waiting for Redis: the check must answer 1 when Redis is gone, not wait.
        sys.exit(check_health({**options, "redis_settings": redis_settings(settings)}))  # type: ignore[arg-type]
    run_worker(options)  # type: ignore[arg-type]


@main.group()
def db() -> None:
    """Database migrations."""


@db.command()
@click.argument("revision", default="head")
def upgrade(revision: str) -> None:
    """Migrate up to REVISION (default: head)."""
    settings = load_settings()
    from service.db.migrate import upgrade as run_upgrade

    run_upgrade(settings.database_url, revision)


@db.command()
@click.argument("revision", default="base")
def downgrade(revision: str) -> None:
    """Migrate down to REVISION (default: base, which drops every table)."""
    settings = load_settings()
    from service.db.migrate import downgrade as run_downgrade

    run_downgrade(settings.database_url, revision)


def _in_database(work: Callable[[AsyncConnection], Awaitable[T]]) -> T:
    """Run ``work`` in one transaction on the configured database; a domain refusal exits 1 with its reason."""
    from service.db.engine import create_engine

    async def run() -> T:
        engine = create_engine(load_settings())
        try:
            async with engine.begin() as conn:
                return await work(conn)
        finally:
            await engine.dispose()

    try:
        return asyncio.run(run())
    except DomainError as exc:
        raise click.ClickException(exc.detail) from exc


@main.group()
def operators() -> None:
    """Operators, for setting up without a browser."""


@operators.command("create-admin")
@click.argument("email")
def create_admin(email: str) -> None:
    """Make the operator with EMAIL an admin, or create one who takes over at their first sign-in with it."""
    from service.auth.provisioning import make_admin

    operator_id, created = _in_database(lambda conn: make_admin(conn, email))
    taken_over = "they take it over at their first sign-in with this email"
    what = f"created as an admin; {taken_over}" if created else "now an admin"
    click.echo(f"{operator_id} {email}: {what}")


def _expiry(value: str | None) -> datetime | None:
    """``30d``, ``12h``, ``90m``, ``2w`` from now, or an ISO 8601 time with a timezone; ``never`` or nothing: none."""
    if value is None or value == "never":
        return None
    if match := DURATION.match(value):
        return datetime.now(UTC) + timedelta(**{UNITS[match[2]]: int(match[1])})
    try:
        return datetime.fromisoformat(value)
    except ValueError:
        raise click.BadParameter("give a duration (30d, 12h, 90m, 2w), an ISO 8601 time or 'never'") from None


@main.group()
def tokens() -> None:
    """Personal access tokens, for scripts and set-up."""


@tokens.command("create")
@click.argument("email")
@click.option(
    "--scope",
    "scopes",
    multiple=True,
    default=("read", "write"),
    show_default=True,
    type=click.Choice(["read", "write", "admin", "scim"]),
    help="Repeat for several scopes.",
)
@click.option("--expires", default=None, help="30d, 12h, 90m, 2w, an ISO 8601 time, or never (the default).")
@click.option("--name", default="command line", show_default=True, help="What the token is for.")
def create_token(email: str, scopes: tuple[str, ...], expires: str | None, name: str) -> None:
    """Create a token for the operator with EMAIL; the secret is printed once, on standard output."""
    from service.auth import services
    from service.auth.schemas import TokenCreate

    try:
        data = TokenCreate(name=name, scopes=list(scopes), expires_at=_expiry(expires))  # type: ignore[arg-type]
    except ValidationError as exc:
        raise click.BadParameter(exc.errors()[0]["msg"].removeprefix("Value error, "), param_hint="--expires") from None

    async def create(conn: AsyncConnection) -> str:
        created = await services.create_token(conn, await services.principal_by_email(conn, email), data)
        expiry = created.expires_at.isoformat() if created.expires_at else "never"
        scopes = " ".join(created.scopes)
        click.echo(f"token {created.prefix}… for {email}: scopes {scopes}, expires {expiry}", err=True)
        return created.token

    click.echo(_in_database(create))


@main.group("import")
def import_() -> None:
    """Load data from elsewhere into Switchboard."""


def _load(spec: str, option: str, example: str, what: str = "attribute") -> Any:
    """``module:attribute`` named by a command-line option, imported as ``python -m`` would (cwd first)."""
    module_name, _, attribute = spec.partition(":")
    if not module_name or not attribute:
        raise click.BadParameter(f"give module:{what}, e.g. {example}", param_hint=option)
    sys.path.insert(0, os.getcwd())
    try:
        return getattr(importlib.import_module(module_name), attribute)
    except (ImportError, AttributeError) as exc:
        raise click.BadParameter(f"cannot load {spec}: {exc}", param_hint=option) from None


async def _load_storage(spec: str) -> Any:
    """``module:attribute``: a ``Storage``, or a callable (sync or async) that returns one."""
    target = _load(spec, "--storage", "myapp.chat:make_storage", "factory")
    # Opened in the loop that uses it: an async storage's connections belong to one event loop.
    storage = target() if callable(target) and not hasattr(target, "get_messages") else target
    storage = await storage if inspect.isawaitable(storage) else storage
    if not all(hasattr(storage, name) for name in ("list_sessions", "get_messages")):
        what = type(storage).__name__
        raise click.BadParameter(f"{spec} gave {what}, not a pocketping Storage", param_hint="--storage")
    return storage


@import_.command("pocketping")
@click.option("--storage", "spec", required=True, help="module:factory giving your PocketPing Storage.")
@click.option("--team", default=None, help="Name of the team the imported conversations belong to (default: none).")
def import_pocketping(spec: str, team: str | None) -> None:
    """Copy the sessions and messages of a PocketPing storage; a second run adds only what is new."""
    from service.db.engine import create_engine
    from service.gateway.importer import import_storage
    from service.teams.services import team_id_by_name

    async def run() -> str:
        storage = await _load_storage(spec)
        engine = create_engine(load_settings())
        try:
            team_id = None
            if team is not None:
                async with engine.connect() as conn:
                    team_id = await team_id_by_name(conn, team)
            r = await import_storage(engine, storage, team_id=team_id)
        finally:
            await engine.dispose()
        return (
            f"sessions: {r.sessions_read} read, {r.sessions_added} added; "
            f"messages: {r.messages_read} read, {r.messages_added} added; attachments: {r.attachments_added} added"
        )

    try:
        click.echo(asyncio.run(run()))
    except DomainError as exc:
        raise click.ClickException(exc.detail) from exc


@main.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8000, show_default=True, type=int)
def dev(host: str, port: int) -> None:
    """Everything on one machine: embedded PostgreSQL/Redis/OIDC when no URLs are set, api and worker."""
    from service.dev import run_dev

    sys.exit(run_dev(host=host, port=port))


if __name__ == "__main__":
    main()
