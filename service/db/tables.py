"""Typed SQLAlchemy Core handles of the table models, defined once for hand-written SQL."""

from __future__ import annotations

from typing import cast

import sqlalchemy as sa
from sqlmodel import SQLModel

from service.db import models


def _table(model: type[SQLModel]) -> sa.Table:
    # SQLModel declares __table__ only on table=True classes, which mypy cannot see.
    return cast(sa.Table, model.__table__)  # type: ignore[attr-defined]


operator_t = _table(models.Operator)
client_t = _table(models.PresenceClient)
team_t = _table(models.Team)
member_t = _table(models.TeamMember)
rule_t = _table(models.RoutingRule)
conversation_t = _table(models.Conversation)
message_t = _table(models.Message)
attachment_t = _table(models.Attachment)
screenshot_t = _table(models.Screenshot)
assignment_t = _table(models.Assignment)
decision_t = _table(models.RoutingDecision)
canned_t = _table(models.CannedResponse)
tag_t = _table(models.Tag)
conversation_tag_t = _table(models.ConversationTag)
macro_t = _table(models.Macro)
note_t = _table(models.InternalNote)
idempotent_action_t = _table(models.IdempotentAction)
timer_t = _table(models.Timer)
outbox_t = _table(models.Outbox)
token_t = _table(models.ApiToken)
endpoint_t = _table(models.WebhookEndpoint)
audit_t = _table(models.AuditEvent)
event_t = _table(models.Event)
cursor_t = _table(models.EventCursor)
link_t = _table(models.BridgeLink)
thread_t = _table(models.BridgeThread)
oauth_grant_t = _table(models.OAuthGrant)
oauth_token_t = _table(models.OAuthToken)
device_t = _table(models.PushDevice)
sla_policy_t = _table(models.SlaPolicy)
sla_clock_t = _table(models.SlaClock)
site_t = _table(models.Site)
site_event_t = _table(models.SiteEvent)
