"""photo check: accepted photos' perceptual hashes (duplicates) and rejected photos

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-30
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

REASONS = ("reason IN ('too_small', 'too_dark', 'overexposed', 'blurry', 'not_a_phone', "
           "'wrong_side', 'duplicate')")
SLOTS = "slot IN ('front', 'back')"
BANDS = ("band0", "band1", "band2", "band3", "band4")


def upgrade() -> None:
    op.create_table(
        "photo_hashes",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("evaluation_id", sa.String(length=32), nullable=False),
        sa.Column("refurbisher_id", sa.String(length=64), nullable=False),
        sa.Column("device_ref", sa.String(length=128), nullable=True),
        sa.Column("slot", sa.String(length=8), nullable=False),
        sa.Column("phash", sa.String(length=16), nullable=False),
        *(sa.Column(band, sa.Integer(), nullable=False) for band in BANDS),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint(SLOTS, name=op.f("ck_photo_hashes_slot")),
        sa.ForeignKeyConstraint(["evaluation_id"], ["evaluations.id"],
                                name=op.f("fk_photo_hashes_evaluation_id_evaluations")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_photo_hashes")),
    )
    for column in (*BANDS, "evaluation_id"):
        op.create_index(op.f(f"ix_photo_hashes_{column}"), "photo_hashes", [column])
    op.create_table(
        "photo_rejections",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("refurbisher_id", sa.String(length=64), nullable=True),
        sa.Column("route", sa.String(length=64), nullable=False),
        sa.Column("slot", sa.String(length=8), nullable=False),
        sa.Column("reason", sa.String(length=16), nullable=False),
        sa.CheckConstraint(REASONS, name=op.f("ck_photo_rejections_reason")),
        sa.CheckConstraint(SLOTS, name=op.f("ck_photo_rejections_slot")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_photo_rejections")),
    )
    op.create_index(op.f("ix_photo_rejections_created_at"), "photo_rejections", ["created_at"])


def downgrade() -> None:
    op.drop_table("photo_rejections")  # its indexes go with it
    op.drop_table("photo_hashes")
