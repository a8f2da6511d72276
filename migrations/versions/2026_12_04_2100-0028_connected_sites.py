"""connected sites: customer backends that mirror their own PocketPing into Switchboard

Revision ID: 0028
Revises: 0027
Create Date: 2026-12-04 21:00:00+00:00

A site holds the SHA-256 of its key (never the key), the encrypted secret its callbacks are signed with, and
the team it routes to; ``site_event`` remembers the event ids applied, so a re-sent event is applied once;
a conversation names the site whose PocketPing holds its visitor.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0028"
down_revision: str | None = "0027"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "site",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("name", sa.String(), nullable=False),
        sa.Column("key_hash", sa.String(length=64), nullable=False),
        sa.Column("key_prefix", sa.String(length=16), nullable=False),
        sa.Column("scopes", postgresql.ARRAY(sa.Text()), server_default="{ingest}", nullable=False),
        sa.Column("callback_url", sa.String(), nullable=True),
        sa.Column("callback_secret_encrypted", sa.String(), nullable=False),
        sa.Column("team_id", sa.Uuid(), nullable=True),
        sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("key_rotated_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.ForeignKeyConstraint(["team_id"], ["team.id"], name=op.f("fk_site_team_id_team"), ondelete="SET NULL"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_site")),
        sa.UniqueConstraint("key_hash", name=op.f("uq_site_key_hash")),
    )
    op.create_table(
        "site_event",
        sa.Column("site_id", sa.Uuid(), nullable=False),
        sa.Column("event_id", sa.String(length=64), nullable=False),
        sa.Column("applied_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.ForeignKeyConstraint(
            ["site_id"], ["site.id"], name=op.f("fk_site_event_site_id_site"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("site_id", "event_id", name=op.f("pk_site_event")),
    )
    op.add_column("conversation", sa.Column("site_id", sa.Uuid(), nullable=True))
    op.create_foreign_key(
        op.f("fk_conversation_site_id_site"), "conversation", "site", ["site_id"], ["id"], ondelete="SET NULL"
    )
    op.create_index(op.f("ix_conversation_site_id"), "conversation", ["site_id"], unique=False)


def downgrade() -> None:
    op.drop_index(op.f("ix_conversation_site_id"), table_name="conversation")
    op.drop_constraint(op.f("fk_conversation_site_id_site"), "conversation", type_="foreignkey")
    op.drop_column("conversation", "site_id")
    op.drop_table("site_event")
    op.drop_table("site")
