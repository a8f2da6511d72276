"""Settings: a missing or malformed variable stops start-up with one line naming it."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from service.resources import redis_settings
from service.settings import Settings, SettingsError, load_settings

GOOD = {
    "DATABASE_URL": "postgresql://postgres@127.0.0.1:5432/test",
    "REDIS_URL": "redis://127.0.0.1:6379/0",
    "SECRET_KEY": "k" * 40,
}


def run_cli(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if k not in GOOD}
    return subprocess.run(
        [sys.executable, "-c", "from service.cli import main; main()", "db", "upgrade"],
        env={**clean, **env},
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.mark.parametrize(
    ("env", "line"),
    [
        ({k: v for k, v in GOOD.items() if k != "REDIS_URL"}, "REDIS_URL is required but not set"),
        ({**GOOD, "DATABASE_URL": "mysql://db/x"}, "DATABASE_URL must be a postgresql:// URL"),
        ({**GOOD, "SECRET_KEY": "short"}, "SECRET_KEY String should have at least 32 characters"),
        (
            {**GOOD, "WIDGET_SIGNAL_LIMIT_PER_IP": "lots"},
            "WIDGET_SIGNAL_LIMIT_PER_IP Input should be a valid integer, unable to parse string as an integer",
        ),
    ],
)
def test_bad_configuration_is_one_clear_line(env: dict[str, str], line: str) -> None:
    result = run_cli(env)
    assert result.returncode == 2
    assert result.stderr == f"switchboard: configuration error: {line}\n"


def test_load_settings_raises_settings_error(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in GOOD:
        monkeypatch.delenv(name, raising=False)
    with pytest.raises(SettingsError):
        load_settings()


def test_widget_origins_are_comma_separated(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in GOOD.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("WIDGET_ORIGINS", "https://a.example, https://b.example")
    settings = load_settings()
    assert settings.widget_origins == ["https://a.example", "https://b.example"]
    assert settings.async_database_url == "postgresql+asyncpg://postgres@127.0.0.1:5432/test"
    assert settings.queue_name == "switchboard:queue"


def test_redis_settings_accept_tcp_and_unix_urls() -> None:
    base = {k.lower(): v for k, v in GOOD.items() if k != "REDIS_URL"}
    tcp = redis_settings(Settings(**base, redis_url="redis://h:6390/3"))
    assert (tcp.host, tcp.port, tcp.database) == ("h", 6390, 3)
    unix = redis_settings(Settings(**base, redis_url="unix:///tmp/r.sock?db=2"))
    assert (unix.unix_socket_path, unix.database) == ("/tmp/r.sock", 2)
