"""initial schema: refurbisher workflow

Revision ID: 0001
Revises:
Create Date: 2026-11-23
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


# long: one create_table per table, as alembic writes a migration; split, the schema would
# no longer read as one piece, and a migration is never edited after it ships
def upgrade() -> None:
    op.create_table(
        "photos",
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("size_bytes", sa.Integer(), nullable=False),
        sa.Column("media_type", sa.String(length=64), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("sha256", name=op.f("pk_photos")),
    )
    op.create_table(
        "refurbishers",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_refurbishers")),
    )
    op.create_table(
        "api_keys",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("secret_sha256", sa.String(length=64), nullable=False),
        sa.Column("role", sa.String(length=16), nullable=False),
        sa.Column("refurbisher_id", sa.String(length=64), nullable=True),
        sa.Column("name", sa.String(length=200), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint(
            "role != 'refurbisher' OR refurbisher_id IS NOT NULL",
            name=op.f("ck_api_keys_refurbisher_key_has_tenant"),
        ),
        sa.CheckConstraint(
            "role IN ('refurbisher', 'platform', 'reviewer', 'admin')",
            name=op.f("ck_api_keys_role"),
        ),
        sa.ForeignKeyConstraint(
            ["refurbisher_id"],
            ["refurbishers.id"],
            name=op.f("fk_api_keys_refurbisher_id_refurbishers"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_api_keys")),
    )
    op.create_table(
        "evaluations",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("refurbisher_id", sa.String(length=64), nullable=False),
        sa.Column("created_by_key_id", sa.String(length=32), nullable=True),
        sa.Column("idempotency_key", sa.String(length=255), nullable=True),
        sa.Column("request_sha256", sa.String(length=64), nullable=False),
        sa.Column("device_ref", sa.String(length=128), nullable=True),
        sa.Column("brand", sa.String(length=64), nullable=False),
        sa.Column("model", sa.String(length=128), nullable=False),
        sa.Column("storage_gb", sa.Integer(), nullable=False),
        sa.Column("unlocked", sa.Boolean(), nullable=False),
        sa.Column("battery_health_pct", sa.Integer(), nullable=True),
        sa.Column("checks", sa.JSON(), nullable=False),
        sa.Column("declared_screen", sa.String(length=32), nullable=True),
        sa.Column("declared_shell", sa.String(length=32), nullable=True),
        sa.Column("refurbisher_grade", sa.String(length=32), nullable=False),
        sa.Column("predicted_grade", sa.String(length=32), nullable=False),
        sa.Column("confidence", sa.Float(), nullable=False),
        sa.Column("gap", sa.Integer(), nullable=False),
        sa.Column("decision", sa.String(length=32), nullable=False),
        sa.Column("agrees_screen", sa.Boolean(), nullable=False),
        sa.Column("agrees_shell", sa.Boolean(), nullable=False),
        sa.Column("agrees_functional", sa.Boolean(), nullable=False),
        sa.Column("prediction", sa.JSON(), nullable=False),
        sa.Column("bundle_version", sa.String(length=64), nullable=False),
        sa.Column("grading", sa.String(length=64), nullable=False),
        sa.Column("front_sha256", sa.String(length=64), nullable=False),
        sa.Column("back_sha256", sa.String(length=64), nullable=False),
        sa.Column("status", sa.String(length=32), nullable=False),
        sa.Column("resolution", sa.String(length=16), nullable=True),
        sa.Column("final_grade", sa.String(length=32), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("listed_at", sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint(
            "decision IN ('validated', 'suggestion', 'justification_required')",
            name=op.f("ck_evaluations_decision"),
        ),
        sa.CheckConstraint(
            "status IN ('awaiting_refurbisher', 'awaiting_justification', 'in_review', 'listed')",
            name=op.f("ck_evaluations_status"),
        ),
        sa.ForeignKeyConstraint(
            ["back_sha256"], ["photos.sha256"], name=op.f("fk_evaluations_back_sha256_photos")
        ),
        sa.ForeignKeyConstraint(
            ["created_by_key_id"],
            ["api_keys.id"],
            name=op.f("fk_evaluations_created_by_key_id_api_keys"),
        ),
        sa.ForeignKeyConstraint(
            ["front_sha256"], ["photos.sha256"], name=op.f("fk_evaluations_front_sha256_photos")
        ),
        sa.ForeignKeyConstraint(
            ["refurbisher_id"],
            ["refurbishers.id"],
            name=op.f("fk_evaluations_refurbisher_id_refurbishers"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_evaluations")),
        sa.UniqueConstraint(
            "refurbisher_id",
            "idempotency_key",
            name=op.f("uq_evaluations_refurbisher_id_idempotency_key"),
        ),
    )
    with op.batch_alter_table("evaluations", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_evaluations_created_at"), ["created_at"], unique=False)
        batch_op.create_index(
            batch_op.f("ix_evaluations_predicted_grade"), ["predicted_grade"], unique=False
        )
        batch_op.create_index(
            "ix_evaluations_refurbisher_created", ["refurbisher_id", "created_at"], unique=False
        )
        batch_op.create_index(batch_op.f("ix_evaluations_status"), ["status"], unique=False)

    op.create_table(
        "justifications",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("evaluation_id", sa.String(length=32), nullable=False),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("created_by_key_id", sa.String(length=32), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["created_by_key_id"],
            ["api_keys.id"],
            name=op.f("fk_justifications_created_by_key_id_api_keys"),
        ),
        sa.ForeignKeyConstraint(
            ["evaluation_id"],
            ["evaluations.id"],
            name=op.f("fk_justifications_evaluation_id_evaluations"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_justifications")),
        sa.UniqueConstraint("evaluation_id", name=op.f("uq_justifications_evaluation_id")),
    )
    op.create_table(
        "returns",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("evaluation_id", sa.String(length=32), nullable=False),
        sa.Column("kind", sa.String(length=8), nullable=False),
        sa.Column("reason", sa.String(length=64), nullable=False),
        sa.Column("comment", sa.Text(), nullable=True),
        sa.Column("occurred_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("idempotency_key", sa.String(length=255), nullable=True),
        sa.Column("created_by_key_id", sa.String(length=32), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint("kind IN ('return', 'claim')", name=op.f("ck_returns_kind")),
        sa.ForeignKeyConstraint(
            ["created_by_key_id"],
            ["api_keys.id"],
            name=op.f("fk_returns_created_by_key_id_api_keys"),
        ),
        sa.ForeignKeyConstraint(
            ["evaluation_id"], ["evaluations.id"], name=op.f("fk_returns_evaluation_id_evaluations")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_returns")),
        sa.UniqueConstraint("idempotency_key", name=op.f("uq_returns_idempotency_key")),
    )
    with op.batch_alter_table("returns", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_returns_evaluation_id"), ["evaluation_id"], unique=False
        )
        batch_op.create_index(batch_op.f("ix_returns_occurred_at"), ["occurred_at"], unique=False)

    op.create_table(
        "reviews",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("evaluation_id", sa.String(length=32), nullable=False),
        sa.Column("action", sa.String(length=16), nullable=False),
        sa.Column("grade", sa.String(length=32), nullable=False),
        sa.Column("comment", sa.Text(), nullable=True),
        sa.Column("reviewer_key_id", sa.String(length=32), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint("action IN ('approve', 'override')", name=op.f("ck_reviews_action")),
        sa.ForeignKeyConstraint(
            ["evaluation_id"], ["evaluations.id"], name=op.f("fk_reviews_evaluation_id_evaluations")
        ),
        sa.ForeignKeyConstraint(
            ["reviewer_key_id"], ["api_keys.id"], name=op.f("fk_reviews_reviewer_key_id_api_keys")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_reviews")),
        sa.UniqueConstraint("evaluation_id", name=op.f("uq_reviews_evaluation_id")),
    )
    op.create_table(
        "justification_photos",
        sa.Column("justification_id", sa.String(length=32), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("photo_sha256", sa.String(length=64), nullable=False),
        sa.ForeignKeyConstraint(
            ["justification_id"],
            ["justifications.id"],
            name=op.f("fk_justification_photos_justification_id_justifications"),
        ),
        sa.ForeignKeyConstraint(
            ["photo_sha256"],
            ["photos.sha256"],
            name=op.f("fk_justification_photos_photo_sha256_photos"),
        ),
        sa.PrimaryKeyConstraint(
            "justification_id", "position", name=op.f("pk_justification_photos")
        ),
    )


def downgrade() -> None:
    op.drop_table("justification_photos")
    op.drop_table("reviews")
    with op.batch_alter_table("returns", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_returns_occurred_at"))
        batch_op.drop_index(batch_op.f("ix_returns_evaluation_id"))

    op.drop_table("returns")
    op.drop_table("justifications")
    with op.batch_alter_table("evaluations", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_evaluations_status"))
        batch_op.drop_index("ix_evaluations_refurbisher_created")
        batch_op.drop_index(batch_op.f("ix_evaluations_predicted_grade"))
        batch_op.drop_index(batch_op.f("ix_evaluations_created_at"))

    op.drop_table("evaluations")
    op.drop_table("api_keys")
    op.drop_table("refurbishers")
    op.drop_table("photos")
