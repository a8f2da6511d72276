"""A customer's own FastAPI backend with PocketPing, connected to Switchboard (docs/connect.md).

Run it:  SWITCHBOARD_URL=https://switchboard.example.com SWITCHBOARD_SITE_KEY=sbk_... PORT=8000 \
         python docs/examples/connect_app.py
Without SWITCHBOARD_URL it runs the same app unconnected (the benchmark's baseline).

The widget talks to this app only. Set the site's callback URL (PATCH /api/v1/sites/{id}) to
``http://<this app>/switchboard/callbacks``: operator replies arrive there and reach the visitor's socket.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from pocketping import PocketPing
from pocketping.fastapi import create_router
from pocketping.models import IdentifyRequest, Sender, TypingRequest
from pocketping.storage import MemoryStorage

from service.connect import SwitchboardBridge


def create_app(url: str | None = None, site_key: str | None = None) -> FastAPI:
    """The customer's app; connected when a Switchboard URL and site key are given (else read from the
    environment: SWITCHBOARD_URL, SWITCHBOARD_SITE_KEY)."""
    url = url or os.environ.get("SWITCHBOARD_URL")
    site_key = site_key or os.environ.get("SWITCHBOARD_SITE_KEY")
    # Events kept in memory while Switchboard is unreachable or behind (beyond it, new ones are dropped).
    max_buffer = int(os.environ.get("SWITCHBOARD_MAX_BUFFER", "10000"))
    bridge = SwitchboardBridge(url, site_key, max_buffer=max_buffer) if url and site_key else None
    pp = PocketPing(storage=MemoryStorage(), bridges=[bridge] if bridge else [])

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await pp.start()  # starts the connector's background sender
        yield
        await pp.stop()  # sends what is buffered (briefly), then stops

    app = FastAPI(lifespan=lifespan)
    app.state.pocketping = pp
    app.state.bridge = bridge

    # The widget calls the SDK router lacks (identify, disconnect), and typing, whose SDK handler tells no bridge.
    # Declared before the router, so these win.
    @app.post("/pocketping/typing")
    async def typing(body: TypingRequest) -> dict[str, bool]:
        await pp.handle_typing(body)
        if bridge and body.sender is Sender.VISITOR:
            await bridge.typing(body.session_id, body.is_typing)
        return {"ok": True}

    @app.post("/pocketping/identify")
    async def identify(body: IdentifyRequest) -> dict[str, bool]:
        return (await pp.handle_identify(body)).model_dump(by_alias=True)

    @app.post("/pocketping/disconnect")
    async def disconnect(request: Request) -> dict[str, bool]:
        body = await request.json()  # sent with navigator.sendBeacon
        if bridge:
            await bridge.visitor_left(body["sessionId"], body.get("duration"), body.get("reason"))
        return {"ok": True}

    app.include_router(create_router(pp), prefix="/pocketping")

    if bridge:

        @app.post("/switchboard/callbacks")
        async def switchboard_callback(request: Request) -> JSONResponse:
            # Signature and timestamp checked, duplicates skipped, then applied to this app's PocketPing.
            status, answer = await bridge.handle_callback(request.headers, await request.body())
            return JSONResponse(answer, status_code=status)

    return app


if __name__ == "__main__":
    uvicorn.run(create_app(), host="127.0.0.1", port=int(os.environ.get("PORT", "8000")), log_level="warning")
