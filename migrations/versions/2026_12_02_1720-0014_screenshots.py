"""screenshots: captures of the visitor's page that operators ask the widget for

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-02 17:00:00+00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel.sql.sqltypes
from alembic import op

revision: str = "0014"
down_revision: str | None = "0013"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "screenshot",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("conversation_id", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("requested_by", sa.Uuid(), nullable=True),
        sa.Column("requested_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("status", sqlmodel.sql.sqltypes.AutoString(), server_default="pending", nullable=False),
        sa.Column("offered_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("upload_key", sqlmodel.sql.sqltypes.AutoString(), nullable=True),
        sa.Column("mime_type", sqlmodel.sql.sqltypes.AutoString(), nullable=True),
        sa.Column("size", sa.Integer(), nullable=True),
        sa.Column("content", sa.LargeBinary(), nullable=True),
        sa.Column("captured_at", sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint("status IN ('pending', 'uploading', 'done')", name=op.f("ck_screenshot_status")),
        sa.CheckConstraint("(status = 'done') = (content IS NOT NULL)", name=op.f("ck_screenshot_content_when_done")),
        sa.ForeignKeyConstraint(
            ["conversation_id"],
            ["conversation.id"],
            name=op.f("fk_screenshot_conversation_id_conversation"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["requested_by"], ["operator.id"], name=op.f("fk_screenshot_requested_by_operator"), ondelete="SET NULL"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_screenshot")),
    )
    op.create_index("ix_screenshot_conversation", "screenshot", ["conversation_id", "requested_at"])
    op.create_index(
        "ix_screenshot_upload_key",
        "screenshot",
        ["upload_key"],
        unique=True,
        postgresql_where=sa.text("upload_key IS NOT NULL"),
    )


def downgrade() -> None:
    op.drop_index("ix_screenshot_upload_key", table_name="screenshot")
    op.drop_index("ix_screenshot_conversation", table_name="screenshot")
    op.drop_table("screenshot")
