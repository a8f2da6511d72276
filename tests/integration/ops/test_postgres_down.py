"""PostgreSQL out of reach: the widget and the API answer 503 with Retry-After, and recover without a restart."""

from __future__ import annotations

import asyncio
from urllib.parse import urlsplit

from sqlalchemy.ext.asyncio import create_async_engine

from service.settings import Settings
from tests.conftest import run_api
from tests.factories import bearer, make_operator, personal_token


class CuttableProxy:
    """A TCP relay to PostgreSQL on a loopback port that the test can cut (every connection) and restore."""

    def __init__(self, host: str, port: int) -> None:
        self.target = (host, port)
        self.port = 0
        self.server: asyncio.Server | None = None
        self.writers: set[asyncio.StreamWriter] = set()

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            writer.close()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        upstream_reader, upstream_writer = await asyncio.open_connection(*self.target)
        self.writers |= {writer, upstream_writer}
        await asyncio.gather(self._pipe(reader, upstream_writer), self._pipe(upstream_reader, writer))

    async def start(self) -> None:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", self.port)
        self.port = self.server.sockets[0].getsockname()[1]

    async def cut(self) -> None:
        assert self.server is not None
        self.server.close()
        for writer in self.writers:
            writer.close()
        self.writers.clear()
        await self.server.wait_closed()


async def test_widget_and_api_answer_503_while_postgres_is_down(settings: Settings) -> None:
    url = urlsplit(settings.database_url)
    proxy = CuttableProxy(url.hostname or "127.0.0.1", url.port or 5432)
    await proxy.start()
    operator = await make_operator_via(settings)
    proxied = settings.model_copy(
        update={"database_url": url._replace(netloc=f"postgres@127.0.0.1:{proxy.port}").geturl()}
    )
    async with run_api(proxied) as api, api.client() as http:
        headers = bearer(operator)
        assert (await http.post("/pocketping/connect", json={"visitorId": "v-1"})).status_code == 200
        assert (await http.get("/api/v1/conversations", headers=headers)).status_code == 200
        await proxy.cut()
        for response in (
            await http.post("/pocketping/connect", json={"visitorId": "v-2"}),
            await http.get("/api/v1/conversations", headers=headers),
        ):
            assert response.status_code == 503, response.text
            assert response.headers["Retry-After"] == "5"
            assert response.headers["content-type"] == "application/problem+json"
            assert response.json()["detail"] == "The database is unavailable; try again shortly."
        await proxy.start()  # back on the same port; the api is not restarted
        # Pooled connections cut with the server are found dead once each (503), then replaced.
        statuses = [(await http.get("/api/v1/conversations", headers=headers)).status_code for _ in range(8)]
        assert statuses[-1] == 200
        assert set(statuses) <= {200, 503}
        assert (await http.post("/pocketping/connect", json={"visitorId": "v-3"})).status_code == 200
    await proxy.cut()


async def make_operator_via(settings: Settings) -> str:
    """An admin's token, written directly (not through the proxy)."""
    engine = create_async_engine(settings.database_url.replace("postgresql://", "postgresql+asyncpg://"))
    try:
        return await personal_token(engine, await make_operator(engine, "Root", is_admin=True))
    finally:
        await engine.dispose()
