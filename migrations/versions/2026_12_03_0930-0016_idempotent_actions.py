"""idempotent actions: the answer a claim, transfer or close gave under an operator's Idempotency-Key

Revision ID: 0016
Revises: 0015
Create Date: 2026-12-03 09:30:00+00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0016"
down_revision: str | None = "0015"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "idempotent_action",
        sa.Column("operator_id", sa.Uuid(), nullable=False),
        sa.Column("key", sa.String(length=255), nullable=False),
        sa.Column("request_hash", sa.String(length=64), nullable=False),
        sa.Column("response", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.ForeignKeyConstraint(
            ["operator_id"], ["operator.id"], name=op.f("fk_idempotent_action_operator_id_operator"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("operator_id", "key", name=op.f("pk_idempotent_action")),
    )


def downgrade() -> None:
    op.drop_table("idempotent_action")
