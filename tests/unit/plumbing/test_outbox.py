"""The outbox's one backoff rule, which every kind (widget messages, webhooks, bridge work) is retried by."""

from __future__ import annotations

import pytest

from service.outbox import retry_delay
from service.settings import Settings

BASE = {"database_url": "postgresql://postgres@127.0.0.1:5432/test", "redis_url": "redis://h", "secret_key": "k" * 40}


def test_retries_double_from_the_base_and_stop_growing_at_1024_times_it() -> None:
    settings = Settings(**BASE)
    assert [retry_delay(settings, attempts) for attempts in range(1, 13)] == [
        5.0 * 2**n for n in (0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 10)
    ]


@pytest.mark.parametrize("variable", ["OUTBOX_RETRY_BASE_SECONDS", "WEBHOOK_RETRY_BASE_SECONDS"])
def test_the_base_is_read_under_its_name_and_its_earlier_one(variable: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(variable, "0.5")
    assert retry_delay(Settings(**BASE), 3) == 2.0
