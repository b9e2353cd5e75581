"""model versions: registered bundles (active, shadow, retired) and the shadow's predictions

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

STATES = "state IN ('registered', 'active', 'shadow', 'retired')"
SERVING = "state IN ('active', 'shadow')"


def upgrade() -> None:
    op.create_table(
        "bundles",
        sa.Column("version", sa.String(length=64), nullable=False),
        sa.Column("directory", sa.Text(), nullable=False),
        sa.Column("model_name", sa.String(length=128), nullable=True),
        sa.Column("registered_by", sa.String(length=200), nullable=False),
        sa.Column("registered_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("backtest", sa.JSON(), nullable=True),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("activated_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("changed_by", sa.String(length=200), nullable=True),
        sa.Column("changed_at", sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint(STATES, name=op.f("ck_bundles_state")),
        sa.PrimaryKeyConstraint("version", name=op.f("pk_bundles")),
    )
    # at most one active and one shadow bundle, whatever writes the table
    op.create_index("ix_bundles_serving_state", "bundles", ["state"], unique=True,
                    sqlite_where=sa.text(SERVING), postgresql_where=sa.text(SERVING))
    op.create_table(
        "shadow_predictions",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("request_id", sa.String(length=64), nullable=True),
        sa.Column("item", sa.String(length=128), nullable=True),
        sa.Column("evaluation_id", sa.String(length=32), nullable=True),
        sa.Column("bundle_version", sa.String(length=64), nullable=False),
        sa.Column("grade", sa.String(length=32), nullable=False),
        sa.Column("confidence", sa.Float(), nullable=False),
        sa.Column("decision", sa.String(length=32), nullable=True),
        sa.Column("active_version", sa.String(length=64), nullable=False),
        sa.Column("active_grade", sa.String(length=32), nullable=False),
        sa.Column("active_decision", sa.String(length=32), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_shadow_predictions")),
    )
    for column in ("created_at", "request_id", "evaluation_id", "bundle_version"):
        op.create_index(op.f(f"ix_shadow_predictions_{column}"), "shadow_predictions",
                        [column])


def downgrade() -> None:
    op.drop_table("shadow_predictions")  # its indexes go with it
    op.drop_table("bundles")
