"""team chosen at connect: the routing rules' choice for a conversation not placed yet

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-02 10:00:00+00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0011"
down_revision: str | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("conversation", sa.Column("selected_team_id", sa.Uuid(), nullable=True))
    op.create_foreign_key(
        op.f("fk_conversation_selected_team_id_team"),
        "conversation",
        "team",
        ["selected_team_id"],
        ["id"],
        ondelete="SET NULL",
    )
    # The widgets' availability relay starts from now, not from every presence change ever recorded.
    op.execute(
        "INSERT INTO event_cursor (name, last_id) SELECT 'widget-availability', coalesce(max(id), 0) FROM event "
        "ON CONFLICT (name) DO NOTHING"
    )


def downgrade() -> None:
    op.execute("DELETE FROM event_cursor WHERE name = 'widget-availability'")
    op.drop_constraint(op.f("fk_conversation_selected_team_id_team"), "conversation", type_="foreignkey")
    op.drop_column("conversation", "selected_team_id")
