"""bench/sockets.py, bounded: 300 widget sockets on a real api, 300 messages a second, each received once."""

from __future__ import annotations

import asyncio
import subprocess
import sys

from service.settings import Settings
from tests.support.cli import ROOT


async def test_many_widget_sockets_each_receive_their_own_messages_once(settings: Settings) -> None:
    argv = [sys.executable, "bench/sockets.py", "--sockets", "300", "--rate", "300", "--duration", "2"]
    argv += ["--database", "switchboard_test_sockets", "--redis-url", settings.redis_url]
    done = await asyncio.to_thread(subprocess.run, argv, cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    lines = done.stdout.strip().splitlines()
    assert lines[0].startswith("300 sockets open in ")
    assert "to random sockets, each received once by its own socket" in lines[1]
    assert lines[-2].startswith("rss_mb: ") and lines[-1].startswith("p99_ms: ")
