"""Which unexpected errors the API reports as the database being away (503) and which as its own fault (500)."""

from __future__ import annotations

import pytest
from litestar import Litestar, get
from litestar.testing import TestClient

from service.problems import EXCEPTION_HANDLERS


@pytest.mark.parametrize(
    ("error", "status"),
    [
        (ConnectionRefusedError(111, "Connect call failed"), 503),
        (TimeoutError(), 503),
        (PermissionError(13, "Permission denied"), 500),
        (OSError(28, "No space left on device"), 500),
    ],
)
def test_only_connection_failures_read_as_the_database_being_unavailable(error: OSError, status: int) -> None:
    @get("/fails", sync_to_thread=False)
    def fails() -> None:
        raise error

    with TestClient(Litestar([fails], exception_handlers=EXCEPTION_HANDLERS)) as client:
        response = client.get("/fails")
    assert response.status_code == status
    assert response.headers["content-type"] == "application/problem+json"
    assert ("Retry-After" in response.headers) is (status == 503)
