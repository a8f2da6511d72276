"""The real ``switchboard`` command, as a subprocess, against a test's database and Redis."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path

from service.settings import Settings

ROOT = Path(__file__).resolve().parents[2]


async def switchboard(settings: Settings, *args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    """``python -m service.cli ARGS`` in ``cwd``, with this test's database, Redis and secret in its environment."""
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "DATABASE_URL": settings.database_url,
        "REDIS_URL": settings.redis_url,
        "SECRET_KEY": settings.secret_key,
    }
    argv = [sys.executable, "-m", "service.cli", *args]
    return await asyncio.to_thread(subprocess.run, argv, cwd=cwd, env=env, capture_output=True, text=True, timeout=120)
