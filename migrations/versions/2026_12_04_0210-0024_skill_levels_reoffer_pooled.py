"""skill levels that relax with waiting time, expiring exclusions, the pooled policy, the rule in each decision

Revision ID: 0024
Revises: 0021
Create Date: 2026-12-04 02:10:00+00:00

A skill is still a string: ``fr`` holds (or asks for) level 1, ``fr:3`` level 3. ``skill_ladder`` expands a
member's skills into every level they cover (``fr:3`` -> ``fr``, ``fr:2``, ``fr:3``), so "has the required
skills" stays one array containment, ``skill_ladder(m.skills) @> c.required_skills``. Downgrading keeps each
skill at level 1 and turns pooled teams manual.
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel.sql.sqltypes
from alembic import op
from sqlalchemy.dialects.postgresql import ARRAY

revision: str = "0024"
down_revision: str | None = "0023"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

OLD_POLICIES = ("round_robin", "least_busy", "manual")
NEW_POLICIES = (*OLD_POLICIES, "pooled")
STEPS = ("exact", "relaxed", "any")

SKILL_LADDER = """
CREATE FUNCTION skill_ladder(skills text[]) RETURNS text[] LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT coalesce(array_agg(CASE WHEN n = 1 THEN split_part(s, ':', 1) ELSE split_part(s, ':', 1) || ':' || n END
                              ORDER BY s, n), '{}')
    FROM unnest(skills) AS s,
         generate_series(1, CASE WHEN position(':' IN s) > 0 THEN split_part(s, ':', 2)::int ELSE 1 END) AS n
$$
"""


def _in(column: str, values: tuple[str, ...]) -> str:
    return f"{column} IN (" + ", ".join(f"'{v}'" for v in values) + ")"


def _strip_levels(table: str, column: str) -> None:
    # "fr:3" -> "fr": what the previous schema can hold (a skill without a level).
    op.execute(
        f"UPDATE {table} SET {column} = ARRAY(SELECT DISTINCT split_part(s, ':', 1) FROM unnest({column}) AS s) "
        f"WHERE EXISTS (SELECT 1 FROM unnest({column}) AS s WHERE position(':' IN s) > 0)"
    )


def upgrade() -> None:
    op.execute(SKILL_LADDER)
    op.add_column("team", sa.Column("skill_relax_after_seconds", sa.Integer(), nullable=True))
    op.add_column("team", sa.Column("skill_any_member_after_seconds", sa.Integer(), nullable=True))
    op.add_column("team", sa.Column("reoffer_after_seconds", sa.Integer(), nullable=True))
    op.drop_constraint(op.f("ck_team_routing_policy"), "team", type_="check")
    op.create_check_constraint(op.f("ck_team_routing_policy"), "team", _in("routing_policy", NEW_POLICIES))
    op.add_column(
        "conversation",
        sa.Column("skill_requirement", ARRAY(sa.Text()), server_default="{}", nullable=False),
    )
    op.add_column(
        "conversation",
        sa.Column("skill_step", sqlmodel.sql.sqltypes.AutoString(), server_default="exact", nullable=False),
    )
    op.create_check_constraint(op.f("ck_conversation_skill_step"), "conversation", _in("skill_step", STEPS))
    # What waiting conversations asked for is what they ask for now (nothing was relaxed before).
    op.execute("UPDATE conversation SET skill_requirement = required_skills WHERE required_skills <> '{}'")
    op.add_column("routing_decision", sa.Column("skill_step", sqlmodel.sql.sqltypes.AutoString(), nullable=True))
    op.add_column("routing_decision", sa.Column("rule_id", sa.Uuid(), nullable=True))
    op.add_column("routing_decision", sa.Column("rule_name", sqlmodel.sql.sqltypes.AutoString(), nullable=True))


def downgrade() -> None:
    op.drop_column("routing_decision", "rule_name")
    op.drop_column("routing_decision", "rule_id")
    op.drop_column("routing_decision", "skill_step")
    # A relaxed requirement goes back to what was asked, at level 1.
    op.execute(
        "UPDATE conversation SET required_skills = skill_requirement "
        "WHERE skill_step <> 'exact' AND status IN ('new', 'queued')"
    )
    op.drop_constraint(op.f("ck_conversation_skill_step"), "conversation", type_="check")
    op.drop_column("conversation", "skill_step")
    op.drop_column("conversation", "skill_requirement")
    _strip_levels("conversation", "required_skills")
    _strip_levels("team_member", "skills")
    _strip_levels("routing_rule", "required_skills")
    op.execute("UPDATE team SET routing_policy = 'manual' WHERE routing_policy = 'pooled'")
    op.drop_constraint(op.f("ck_team_routing_policy"), "team", type_="check")
    op.create_check_constraint(op.f("ck_team_routing_policy"), "team", _in("routing_policy", OLD_POLICIES))
    op.drop_column("team", "reoffer_after_seconds")
    op.drop_column("team", "skill_any_member_after_seconds")
    op.drop_column("team", "skill_relax_after_seconds")
    op.execute("DROP FUNCTION skill_ladder(text[])")
