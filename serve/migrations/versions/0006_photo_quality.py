"""photo check: the compressed and noisy reasons a photo is refused

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-01
"""

from __future__ import annotations

from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

OLD = ("reason IN ('too_small', 'too_dark', 'overexposed', 'blurry', 'not_a_phone', "
       "'wrong_side', 'duplicate')")
NEW = ("reason IN ('too_small', 'too_dark', 'overexposed', 'blurry', 'compressed', 'noisy', "
       "'not_a_phone', 'wrong_side', 'duplicate')")


def _constraint(check: str) -> None:
    # batch mode: SQLite rebuilds the table (it cannot alter a CHECK constraint), PostgreSQL
    # alters it in place
    with op.batch_alter_table("photo_rejections") as batch:
        batch.drop_constraint(op.f("ck_photo_rejections_reason"), type_="check")
        batch.create_check_constraint(op.f("ck_photo_rejections_reason"), check)


def upgrade() -> None:
    _constraint(NEW)


def downgrade() -> None:
    # before 0006 a photo was never refused for these reasons: their counts go, the rest stays
    op.execute("DELETE FROM photo_rejections WHERE reason IN ('compressed', 'noisy')")
    _constraint(OLD)
