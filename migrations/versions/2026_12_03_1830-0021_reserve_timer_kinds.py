"""timer kinds for business hours, SLA clocks, expiring exclusions and relaxing skills

Revision ID: 0021
Revises: 0020
Create Date: 2026-12-03 18:30:00+00:00

The kinds are added in one place so that the features using them each add only their own tables.
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0021"
down_revision: str | None = "0020"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

OLD = ("first_response", "offline_grace", "ai_takeover", "csat_request", "presence_lapse")
NEW = (*OLD, "hours_open", "sla", "reoffer", "skill_relax")


def _check(kinds: tuple[str, ...]) -> str:
    return "kind IN (" + ", ".join(f"'{k}'" for k in kinds) + ")"


def upgrade() -> None:
    op.drop_constraint(op.f("ck_timer_kind"), "timer", type_="check")
    op.create_check_constraint(op.f("ck_timer_kind"), "timer", _check(NEW))


def downgrade() -> None:
    op.execute("DELETE FROM timer WHERE kind NOT IN (" + ", ".join(f"'{k}'" for k in OLD) + ")")
    op.drop_constraint(op.f("ck_timer_kind"), "timer", type_="check")
    op.create_check_constraint(op.f("ck_timer_kind"), "timer", _check(OLD))
