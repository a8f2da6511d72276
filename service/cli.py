"""The ``switchboard`` command: api, worker, database migrations and the all-in-one dev runner."""

from __future__ import annotations

import sys

import click

from service.settings import load_settings


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

    load_settings()  # fail fast, with one clear line, before uvicorn starts
    uvicorn.run(
        "service.app:create_app",
        factory=True,
        host=host,
        port=port,
        workers=workers,
        proxy_headers=True,
        log_config=None,
        timeout_graceful_shutdown=10,
    )


@main.command()
@click.option("--check", is_flag=True, help="Exit 0 if a worker reported healthy recently, else 1.")
def worker(check: bool) -> None:
    """Run the arq worker (routing, timers, outbox delivery, sweeps)."""
    from arq.worker import check_health, run_worker

    from workers.settings import worker_settings

    options = worker_settings(load_settings())
    if check:
        sys.exit(check_health(options))  # type: ignore[arg-type]
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


@main.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8000, show_default=True, type=int)
def dev(host: str, port: int) -> None:
    """Everything on one machine: embedded PostgreSQL/Redis/OIDC when no URLs are set, api and worker."""
    from service.dev import run_dev

    sys.exit(run_dev(host=host, port=port))
