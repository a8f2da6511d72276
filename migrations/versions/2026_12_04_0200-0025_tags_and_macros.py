"""tags and macros: team tags on conversations, rules that set them, one-click macros

Revision ID: 0025
Revises: 0021
Create Date: 2026-12-04 02:00:00+00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0025"
down_revision: str | None = "0024"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "tag",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("team_id", sa.Uuid(), nullable=False),
        sa.Column("name", sa.String(), nullable=False),
        sa.Column("color", sa.String(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.ForeignKeyConstraint(["team_id"], ["team.id"], name=op.f("fk_tag_team_id_team"), ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_tag")),
    )
    op.create_index("uq_tag_team_name", "tag", ["team_id", sa.text("lower(name)")], unique=True)
    op.create_table(
        "conversation_tag",
        sa.Column("conversation_id", sa.String(), nullable=False),
        sa.Column("tag_id", sa.Uuid(), nullable=False),
        sa.Column("added_by", sa.Uuid(), nullable=True),
        sa.Column("source", sa.String(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.CheckConstraint("source IN ('operator', 'rule', 'macro')", name=op.f("ck_conversation_tag_source")),
        sa.ForeignKeyConstraint(
            ["conversation_id"],
            ["conversation.id"],
            name=op.f("fk_conversation_tag_conversation_id_conversation"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["tag_id"], ["tag.id"], name=op.f("fk_conversation_tag_tag_id_tag"), ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["added_by"], ["operator.id"], name=op.f("fk_conversation_tag_added_by_operator"), ondelete="SET NULL"
        ),
        sa.PrimaryKeyConstraint("conversation_id", "tag_id", name=op.f("pk_conversation_tag")),
    )
    op.create_index(op.f("ix_conversation_tag_tag_id"), "conversation_tag", ["tag_id"], unique=False)
    op.add_column(
        "routing_rule",
        sa.Column("set_tags", postgresql.ARRAY(sa.Uuid()), server_default="{}", nullable=False),
    )
    op.create_table(
        "macro",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("team_id", sa.Uuid(), nullable=False),
        sa.Column("name", sa.String(), nullable=False),
        sa.Column("canned_id", sa.Uuid(), nullable=True),
        sa.Column("add_tags", postgresql.ARRAY(sa.Uuid()), server_default="{}", nullable=False),
        sa.Column("remove_tags", postgresql.ARRAY(sa.Uuid()), server_default="{}", nullable=False),
        sa.Column("action", sa.String(), server_default="none", nullable=False),
        sa.Column("transfer_team_id", sa.Uuid(), nullable=True),
        sa.Column("transfer_operator_id", sa.Uuid(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.CheckConstraint("action IN ('none', 'assign', 'transfer', 'close')", name=op.f("ck_macro_action")),
        sa.ForeignKeyConstraint(["team_id"], ["team.id"], name=op.f("fk_macro_team_id_team"), ondelete="CASCADE"),
        sa.ForeignKeyConstraint(
            ["canned_id"], ["canned_response.id"], name=op.f("fk_macro_canned_id_canned_response")
        ),
        sa.ForeignKeyConstraint(
            ["transfer_team_id"], ["team.id"], name=op.f("fk_macro_transfer_team_id_team"), ondelete="SET NULL"
        ),
        sa.ForeignKeyConstraint(
            ["transfer_operator_id"],
            ["operator.id"],
            name=op.f("fk_macro_transfer_operator_id_operator"),
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_macro")),
    )
    op.create_index(op.f("ix_macro_team_id"), "macro", ["team_id"], unique=False)
    op.create_index("uq_macro_team_name", "macro", ["team_id", sa.text("lower(name)")], unique=True)


def downgrade() -> None:
    op.drop_index("uq_macro_team_name", table_name="macro")
    op.drop_index(op.f("ix_macro_team_id"), table_name="macro")
    op.drop_table("macro")
    op.drop_column("routing_rule", "set_tags")
    op.drop_index(op.f("ix_conversation_tag_tag_id"), table_name="conversation_tag")
    op.drop_table("conversation_tag")
    op.drop_index("uq_tag_team_name", table_name="tag")
    op.drop_table("tag")
