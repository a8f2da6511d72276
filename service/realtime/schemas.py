"""What operators receive on the event stream (and webhook receivers in the body)."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from pydantic import Field

from service.schemas import ApiModel


class EventPublic(ApiModel):
    """One domain event; ``id`` grows with every event and is the stream's resume cursor."""

    id: int
    kind: str = Field(description="conversation.queued|assigned|transferred|closed|reopened, message.created, ...")
    team_id: uuid.UUID | None
    conversation_id: str | None
    operator_ids: list[uuid.UUID] = Field(description="Operators who see the event outside the team's audience")
    data: dict[str, Any]
    created_at: datetime
