"""A FastAPI shop with Switchboard inside it, under /support (docs/embedding.md).

Run it with ``uvicorn embed_fastapi:app`` and the worker with ``switchboard worker --app embed_fastapi:switchboard``,
both with the same environment: DATABASE_URL, REDIS_URL, SECRET_KEY, PUBLIC_URL (this app's address),
PATH_PREFIX=/support and the OIDC_* settings of your identity provider.
"""

from __future__ import annotations

from fastapi import FastAPI
from order_desk import OrderDesk

from service.embed import asgi
from service.settings import load_settings

order_desk = OrderDesk()
switchboard = asgi(load_settings(), bridges=[order_desk])

# FastAPI runs no lifespan of a mounted app: Switchboard's is the shop's.
app = FastAPI(lifespan=switchboard.lifespan)
app.mount(switchboard.path_prefix, switchboard)


@app.get("/")
async def shop() -> dict[str, str]:
    return {"shop": "open"}
