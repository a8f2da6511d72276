"""PocketPing's own FastAPI backend, as its README shows it: the baseline for bench/ingest.py.

Served by ``uvicorn --app-dir bench pocketping_reference:app``: the SDK's router under
``/pocketping``, in-memory storage, no bridges, no AI.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from pocketping import PocketPing
from pocketping.fastapi import create_router, lifespan_handler
from pocketping.storage import MemoryStorage

pp = PocketPing(storage=MemoryStorage())


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    async with lifespan_handler(pp):
        yield


app = FastAPI(lifespan=lifespan)
app.include_router(create_router(pp), prefix="/pocketping")
