"""conversation search: full-text index over message content

Revision ID: 0006
Revises: 0003
Create Date: 2026-11-25 23:33:04.141070+00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index(
        "ix_message_content_fts",
        "message",
        [sa.literal_column("to_tsvector('simple', content)")],
        unique=False,
        postgresql_using="gin",
    )


def downgrade() -> None:
    op.drop_index("ix_message_content_fts", table_name="message", postgresql_using="gin")
