"""attachments stored: files kept by Switchboard, per-team limits

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-02 17:00:00.000000+00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel.sql.sqltypes  # noqa: F401  (autogenerate may emit AutoString)
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0013"
down_revision: str | None = "0012"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TYPES = "{image/jpeg,image/png,image/gif,image/webp,application/pdf,text/plain}"


def upgrade() -> None:
    op.add_column("team", sa.Column("attachment_max_bytes", sa.Integer(), server_default="10485760", nullable=False))
    op.add_column(
        "team",
        sa.Column("attachment_types", postgresql.ARRAY(sa.Text()), server_default=TYPES, nullable=False),
    )
    op.add_column("attachment", sa.Column("conversation_id", sa.String(), nullable=True))
    op.add_column("attachment", sa.Column("storage_key", sa.String(), nullable=True))
    op.add_column("attachment", sa.Column("operator_id", sa.Uuid(), nullable=True))
    op.add_column("attachment", sa.Column("expires_at", sa.DateTime(timezone=True), nullable=True))
    op.alter_column("attachment", "url", existing_type=sa.String(), nullable=True)
    # Attachments of messages whose conversation is gone: nothing can show them any more.
    op.execute("UPDATE attachment a SET conversation_id = m.conversation_id FROM message m WHERE m.id = a.message_id")
    op.create_foreign_key(
        op.f("fk_attachment_conversation_id_conversation"),
        "attachment",
        "conversation",
        ["conversation_id"],
        ["id"],
        ondelete="CASCADE",
    )
    op.create_foreign_key(
        op.f("fk_attachment_operator_id_operator"),
        "attachment",
        "operator",
        ["operator_id"],
        ["id"],
        ondelete="SET NULL",
    )
    op.create_index(op.f("ix_attachment_conversation_id"), "attachment", ["conversation_id"], unique=False)
    op.create_index(
        "ix_attachment_unfinished",
        "attachment",
        ["expires_at"],
        unique=False,
        postgresql_where=sa.text("message_id IS NULL"),
    )
    op.execute(
        "UPDATE attachment SET status = 'failed' WHERE status NOT IN ('pending', 'uploading', 'ready', 'failed')"
    )
    op.create_check_constraint(
        op.f("ck_attachment_status"), "attachment", "status IN ('pending', 'uploading', 'ready', 'failed')"
    )


def downgrade() -> None:
    op.drop_constraint(op.f("ck_attachment_status"), "attachment", type_="check")
    op.drop_index("ix_attachment_unfinished", table_name="attachment")
    op.drop_index(op.f("ix_attachment_conversation_id"), table_name="attachment")
    op.drop_constraint(op.f("fk_attachment_operator_id_operator"), "attachment", type_="foreignkey")
    op.drop_constraint(op.f("fk_attachment_conversation_id_conversation"), "attachment", type_="foreignkey")
    op.execute("UPDATE attachment SET url = '' WHERE url IS NULL")
    op.alter_column("attachment", "url", existing_type=sa.String(), nullable=False)
    op.drop_column("attachment", "expires_at")
    op.drop_column("attachment", "operator_id")
    op.drop_column("attachment", "storage_key")
    op.drop_column("attachment", "conversation_id")
    op.drop_column("team", "attachment_types")
    op.drop_column("team", "attachment_max_bytes")
