"""The shop's own PocketPing bridge in the embedding examples: it keeps the conversation; yours might open a ticket."""

from __future__ import annotations

from pocketping.bridges import Bridge
from pocketping.models import Message, Session


class OrderDesk(Bridge):
    """Hears visitors and operators, as any PocketPing bridge does."""

    def __init__(self) -> None:
        self.heard: list[str] = []

    @property
    def name(self) -> str:
        return "order-desk"

    async def on_visitor_message(self, message: Message, session: Session) -> None:
        self.heard.append(f"visitor: {message.content}")

    async def on_operator_message(
        self, message: Message, session: Session, source_bridge: str | None = None, operator_name: str | None = None
    ) -> None:
        self.heard.append(f"{operator_name}: {message.content}")
