"""business hours per team: weekly schedule with holidays, what happens outside them, the offline message

Revision ID: 0022
Revises: 0021
Create Date: 2026-12-04 02:05:00+00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0022"
down_revision: str | None = "0021"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("team", sa.Column("business_hours", postgresql.JSONB(astext_type=sa.Text()), nullable=True))
    op.add_column("team", sa.Column("outside_hours", sa.String(), server_default="wait", nullable=False))
    op.add_column("team", sa.Column("outside_hours_team_id", sa.Uuid(), nullable=True))
    op.add_column("team", sa.Column("offline_message", sa.String(), nullable=True))
    op.create_check_constraint(op.f("ck_team_outside_hours"), "team", "outside_hours IN ('wait', 'overflow', 'ai')")
    op.create_foreign_key(
        op.f("fk_team_outside_hours_team_id_team"),
        "team",
        "team",
        ["outside_hours_team_id"],
        ["id"],
        ondelete="SET NULL",
    )


def downgrade() -> None:
    op.drop_constraint(op.f("fk_team_outside_hours_team_id_team"), "team", type_="foreignkey")
    op.drop_constraint(op.f("ck_team_outside_hours"), "team", type_="check")
    op.drop_column("team", "offline_message")
    op.drop_column("team", "outside_hours_team_id")
    op.drop_column("team", "outside_hours")
    op.drop_column("team", "business_hours")
