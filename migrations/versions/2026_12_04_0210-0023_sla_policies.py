"""SLA policies per team and priority, and each conversation's SLA clocks

Revision ID: 0023
Revises: 0022
Create Date: 2026-12-04 02:10:00+00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0023"
down_revision: str | None = "0022"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "sla_policy",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("team_id", sa.Uuid(), nullable=False),
        sa.Column("priority", sa.Integer(), nullable=True),
        sa.Column("first_response_seconds", sa.Integer(), nullable=True),
        sa.Column("next_response_seconds", sa.Integer(), nullable=True),
        sa.Column("resolution_seconds", sa.Integer(), nullable=True),
        sa.Column("at_risk_share", sa.Float(), nullable=True),
        sa.Column("escalation", postgresql.JSONB(astext_type=sa.Text()), server_default="[]", nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.CheckConstraint(
            "at_risk_share IS NULL OR (at_risk_share > 0 AND at_risk_share < 1)",
            name=op.f("ck_sla_policy_at_risk_share"),
        ),
        sa.ForeignKeyConstraint(["team_id"], ["team.id"], name=op.f("fk_sla_policy_team_id_team"), ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_sla_policy")),
    )
    op.create_index(
        "uq_sla_policy_team_priority",
        "sla_policy",
        ["team_id", "priority"],
        unique=True,
        postgresql_nulls_not_distinct=True,
    )
    op.create_table(
        "sla_clock",
        sa.Column("conversation_id", sa.String(), nullable=False),
        sa.Column("target", sa.String(), nullable=False),
        sa.Column("team_id", sa.Uuid(), nullable=True),
        sa.Column("policy_id", sa.Uuid(), nullable=True),
        sa.Column("target_seconds", sa.Integer(), nullable=True),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("at_risk_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("due_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("stopped_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("at_risk_reported_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("breached_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("ever_breached", sa.Boolean(), server_default=sa.false(), nullable=False),
        sa.Column("cycles", sa.Integer(), server_default="1", nullable=False),
        sa.CheckConstraint(
            "target IN ('first_response', 'next_response', 'resolution')", name=op.f("ck_sla_clock_target")
        ),
        sa.ForeignKeyConstraint(
            ["conversation_id"],
            ["conversation.id"],
            name=op.f("fk_sla_clock_conversation_id_conversation"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["policy_id"], ["sla_policy.id"], name=op.f("fk_sla_clock_policy_id_sla_policy"), ondelete="SET NULL"
        ),
        sa.ForeignKeyConstraint(["team_id"], ["team.id"], name=op.f("fk_sla_clock_team_id_team"), ondelete="SET NULL"),
        sa.PrimaryKeyConstraint("conversation_id", "target", name=op.f("pk_sla_clock")),
    )
    op.create_index(op.f("ix_sla_clock_team_id"), "sla_clock", ["team_id"], unique=False)


def downgrade() -> None:
    op.drop_index(op.f("ix_sla_clock_team_id"), table_name="sla_clock")
    op.drop_table("sla_clock")
    op.drop_index("uq_sla_policy_team_priority", table_name="sla_policy", postgresql_nulls_not_distinct=True)
    op.drop_table("sla_policy")
