"""webhook dead letter: outbox rows given up or held, endpoints failing since and disabled with a reason

Revision ID: 0019
Revises: 0017
Create Date: 2026-12-03 12:00:00+00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel.sql.sqltypes  # noqa: F401  (autogenerate may emit AutoString)
from alembic import op

revision: str = "0019"
down_revision: str | None = "0017"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("outbox", sa.Column("dead_at", sa.DateTime(timezone=True), nullable=True))
    op.add_column("outbox", sa.Column("held_at", sa.DateTime(timezone=True), nullable=True))
    op.add_column("webhook_endpoint", sa.Column("failing_since", sa.DateTime(timezone=True), nullable=True))
    op.add_column("webhook_endpoint", sa.Column("disabled_at", sa.DateTime(timezone=True), nullable=True))
    op.add_column("webhook_endpoint", sa.Column("disabled_reason", sqlmodel.sql.sqltypes.AutoString(), nullable=True))


def downgrade() -> None:
    op.drop_column("webhook_endpoint", "disabled_reason")
    op.drop_column("webhook_endpoint", "disabled_at")
    op.drop_column("webhook_endpoint", "failing_since")
    op.drop_column("outbox", "held_at")
    op.drop_column("outbox", "dead_at")
