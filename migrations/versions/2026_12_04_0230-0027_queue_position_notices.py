"""team setting for queue position notices; assignments readable by team and time

Revision ID: 0027
Revises: 0021
Create Date: 2026-12-04 02:30:00+00:00

A queued visitor is told their position and an estimated wait, estimated from the team's
assignments of the last 30 minutes: the index serves that count.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0027"
down_revision: str | None = "0025"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("team", sa.Column("queue_notices", sa.Boolean(), server_default=sa.true(), nullable=False))
    op.create_index("ix_assignment_team_started", "assignment", ["team_id", "started_at"])


def downgrade() -> None:
    op.drop_index("ix_assignment_team_started", table_name="assignment")
    op.drop_column("team", "queue_notices")
