"""csat and message edits

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-02 09:00:00.000000+00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel.sql.sqltypes  # noqa: F401  (autogenerate may emit AutoString)
from alembic import op


revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

OLD_KINDS = "kind IN ('first_response', 'offline_grace', 'ai_takeover')"
NEW_KINDS = "kind IN ('first_response', 'offline_grace', 'ai_takeover', 'csat_request')"


def upgrade() -> None:
    op.add_column("team", sa.Column("message_edit_window_seconds", sa.Integer(), server_default="900", nullable=False))
    op.add_column("team", sa.Column("csat_enabled", sa.Boolean(), server_default=sa.false(), nullable=False))
    op.add_column("conversation", sa.Column("csat_operator_id", sa.Uuid(), nullable=True))
    op.create_foreign_key(
        op.f("fk_conversation_csat_operator_id_operator"),
        "conversation",
        "operator",
        ["csat_operator_id"],
        ["id"],
        ondelete="SET NULL",
    )
    op.drop_constraint(op.f("ck_timer_kind"), "timer", type_="check")
    op.create_check_constraint(op.f("ck_timer_kind"), "timer", NEW_KINDS)


def downgrade() -> None:
    op.execute("DELETE FROM timer WHERE kind = 'csat_request'")
    op.drop_constraint(op.f("ck_timer_kind"), "timer", type_="check")
    op.create_check_constraint(op.f("ck_timer_kind"), "timer", OLD_KINDS)
    op.drop_constraint(op.f("fk_conversation_csat_operator_id_operator"), "conversation", type_="foreignkey")
    op.drop_column("conversation", "csat_operator_id")
    op.drop_column("team", "csat_enabled")
    op.drop_column("team", "message_edit_window_seconds")
