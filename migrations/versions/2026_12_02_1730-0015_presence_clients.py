"""presence clients: one row per dashboard tab, mobile app, bridge account or script; chosen status; auto-away

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-02 17:00:00+00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel.sql.sqltypes  # noqa: F401  (autogenerate may emit AutoString)
from alembic import op

revision: str = "0015"
down_revision: str | None = "0014"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

OLD_KINDS = "kind IN ('first_response', 'offline_grace', 'ai_takeover', 'csat_request')"
NEW_KINDS = "kind IN ('first_response', 'offline_grace', 'ai_takeover', 'csat_request', 'presence_lapse')"


def upgrade() -> None:
    op.create_table(
        "presence_client",
        sa.Column("operator_id", sa.Uuid(), nullable=False),
        sa.Column("client_id", sa.String(length=100), nullable=False),
        sa.Column("kind", sa.String(), nullable=False),
        sa.Column("status", sa.String(), nullable=False),
        sa.Column("session_key", sa.String(), nullable=True),
        sa.Column("connection_id", sa.String(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.Column("last_seen_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.Column("last_active_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint("kind IN ('web', 'mobile', 'bridge', 'api')", name=op.f("ck_presence_client_kind")),
        sa.CheckConstraint("status IN ('online', 'away')", name=op.f("ck_presence_client_status")),
        sa.ForeignKeyConstraint(
            ["operator_id"], ["operator.id"], name=op.f("fk_presence_client_operator_id_operator"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("operator_id", "client_id", name=op.f("pk_presence_client")),
    )
    op.create_index(op.f("ix_presence_client_expires_at"), "presence_client", ["expires_at"], unique=False)
    op.add_column("operator", sa.Column("chosen_status", sa.String(), nullable=True))
    op.create_check_constraint(op.f("ck_operator_chosen_status"), "operator", "chosen_status IN ('away', 'offline')")
    op.add_column("team", sa.Column("auto_away_minutes", sa.Integer(), nullable=True))
    op.drop_constraint(op.f("ck_timer_kind"), "timer", type_="check")
    op.create_check_constraint(op.f("ck_timer_kind"), "timer", NEW_KINDS)


def downgrade() -> None:
    op.execute("DELETE FROM timer WHERE kind = 'presence_lapse'")
    op.drop_constraint(op.f("ck_timer_kind"), "timer", type_="check")
    op.create_check_constraint(op.f("ck_timer_kind"), "timer", OLD_KINDS)
    op.drop_column("team", "auto_away_minutes")
    op.drop_constraint(op.f("ck_operator_chosen_status"), "operator", type_="check")
    op.drop_column("operator", "chosen_status")
    op.drop_index(op.f("ix_presence_client_expires_at"), table_name="presence_client")
    op.drop_table("presence_client")
