"""abstention: the inconclusive decision and its reason

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-30
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

OLD = "decision IN ('validated', 'suggestion', 'justification_required')"
NEW = "decision IN ('validated', 'suggestion', 'justification_required', 'inconclusive')"


def upgrade() -> None:
    # batch mode: SQLite rebuilds the table (it cannot alter a CHECK constraint), PostgreSQL
    # alters it in place
    with op.batch_alter_table("evaluations") as batch:
        batch.add_column(sa.Column("inconclusive_reason", sa.Text(), nullable=True))
        batch.drop_constraint(op.f("ck_evaluations_decision"), type_="check")
        batch.create_check_constraint(op.f("ck_evaluations_decision"), NEW)


def downgrade() -> None:
    # before 0002 there was no inconclusive decision: such evaluations went to review like
    # justified ones, the closest earlier decision
    op.execute("UPDATE evaluations SET decision = 'justification_required' "
               "WHERE decision = 'inconclusive'")
    with op.batch_alter_table("evaluations") as batch:
        batch.drop_constraint(op.f("ck_evaluations_decision"), type_="check")
        batch.create_check_constraint(op.f("ck_evaluations_decision"), OLD)
        batch.drop_column("inconclusive_reason")
