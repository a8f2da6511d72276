"""A Litestar shop with Switchboard inside it, under /support (docs/embedding.md).

Run it with ``uvicorn embed_litestar:app`` and the worker with ``switchboard worker --app embed_litestar:switchboard``,
both with the same environment: DATABASE_URL, REDIS_URL, SECRET_KEY, PUBLIC_URL (this app's address),
PATH_PREFIX=/support and the OIDC_* settings of your identity provider.
"""

from __future__ import annotations

from litestar import Litestar, get
from order_desk import OrderDesk

from service.embed import SwitchboardPlugin
from service.settings import load_settings


@get("/")
async def shop() -> dict[str, str]:
    return {"shop": "open"}


order_desk = OrderDesk()
# The plugin mounts Switchboard at PATH_PREFIX and starts it with the app.
switchboard = SwitchboardPlugin(load_settings(), bridges=[order_desk])
app = Litestar(route_handlers=[shop], plugins=[switchboard])
