"""bench/connect.py, bounded: the customer app with and without the connector; every message checked in Switchboard."""

from __future__ import annotations

import asyncio
import subprocess
import sys

import pytest

from service.settings import Settings
from tests.support.cli import ROOT


@pytest.mark.timeout(300)
async def test_the_connector_benchmark_runs_and_checks_every_message_arrived_once_in_order(settings: Settings) -> None:
    argv = [sys.executable, "bench/connect.py", "--rounds", "1", "--duration", "2", "--warmup", "1"]
    argv += ["--sessions", "5", "--connections", "8", "--database", "switchboard_test_connect_bench"]
    argv += ["--redis-url", settings.redis_url]
    done = await asyncio.to_thread(subprocess.run, argv, cwd=ROOT, capture_output=True, text=True, timeout=280)
    assert done.returncode == 0, done.stdout + done.stderr
    lines = done.stdout.strip().splitlines()
    assert any(line.startswith("checked: all ") and "once each, in order per session" in line for line in lines)
    assert lines[-1].startswith("ratio: ")
    assert float(lines[-1].removeprefix("ratio: ")) > 0
