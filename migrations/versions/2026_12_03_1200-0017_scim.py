"""scim: the identity provider's user document and userName on operators, a group's externalId on teams

Revision ID: 0017
Revises: 0016
Create Date: 2026-12-03 12:00:00+00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0017"
down_revision: str | None = "0016"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("operator", sa.Column("scim", postgresql.JSONB(astext_type=sa.Text()), nullable=True))
    op.add_column("operator", sa.Column("scim_user_name", sa.String(), nullable=True))
    op.create_unique_constraint(op.f("uq_operator_scim_user_name"), "operator", ["scim_user_name"])
    op.add_column("team", sa.Column("scim_external_id", sa.String(), nullable=True))


def downgrade() -> None:
    op.drop_column("team", "scim_external_id")
    op.drop_constraint(op.f("uq_operator_scim_user_name"), "operator", type_="unique")
    op.drop_column("operator", "scim_user_name")
    op.drop_column("operator", "scim")
