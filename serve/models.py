"""The workflow's tables (SQLAlchemy 2): refurbishers, API keys, UI sessions, photos,
evaluations, justifications with their extra photos, reviews, returns and claims, and the photo
check's records (accepted photos' perceptual hashes, rejections).

Timestamps are timezone-aware UTC in Python; SQLite stores them as naive UTC text. Every schema
change goes through an Alembic migration (``serve/migrations``).
"""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    CheckConstraint,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

from fusion.policy import Decision
from vision.photocheck import RejectReason

ROLES = ("refurbisher", "platform", "reviewer", "admin")
STATUSES = ("awaiting_refurbisher", "awaiting_justification", "in_review", "listed")
DECISIONS = tuple(d.value for d in Decision)  # fusion.policy.Decision: the one definition
RESOLUTIONS = ("validated", "accepted", "kept", "approved", "overridden")
RETURN_KINDS = ("return", "claim")
REJECT_REASONS = tuple(r.value for r in RejectReason)  # vision.photocheck: the one definition
SLOTS = ("front", "back")


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def new_id() -> str:
    return uuid.uuid4().hex


class UTCDateTime(TypeDecorator):
    """A timezone-aware UTC datetime on every backend (SQLite has no time zones)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: dt.datetime | None, dialect: Any) -> dt.datetime | None:
        if value is None:
            return None
        value = value.astimezone(dt.UTC) if value.tzinfo else value.replace(tzinfo=dt.UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: dt.datetime | None, dialect: Any) -> dt.datetime | None:
        if value is not None and value.tzinfo is None:
            value = value.replace(tzinfo=dt.UTC)
        return value


def _in(column: str, values: tuple[str, ...]) -> str:
    return f"{column} IN ({', '.join(repr(v) for v in values)})"


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention={
        "ix": "ix_%(column_0_N_label)s", "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "ck": "ck_%(table_name)s_%(constraint_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s"})


class Refurbisher(Base):
    __tablename__ = "refurbishers"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    name: Mapped[str | None] = mapped_column(String(200))
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)


class ApiKey(Base):
    """An API key: the public id is the key's prefix; only the sha256 of the key is stored."""

    __tablename__ = "api_keys"
    __table_args__ = (
        CheckConstraint(_in("role", ROLES), name="role"),
        CheckConstraint("role != 'refurbisher' OR refurbisher_id IS NOT NULL",
                        name="refurbisher_key_has_tenant"),
    )

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    secret_sha256: Mapped[str] = mapped_column(String(64))
    role: Mapped[str] = mapped_column(String(16))
    refurbisher_id: Mapped[str | None] = mapped_column(ForeignKey("refurbishers.id"))
    name: Mapped[str | None] = mapped_column(String(200))
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    revoked_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)


class UiSession(Base):
    """A signed-in UI session: only the sha256 of its random id (the cookie's value) is stored,
    with its key; it ends on logout, when its key is revoked, or when idle or too old."""

    __tablename__ = "ui_sessions"

    id_sha256: Mapped[str] = mapped_column(String(64), primary_key=True)
    key_id: Mapped[str] = mapped_column(ForeignKey("api_keys.id"), index=True)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    last_seen_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)


class Photo(Base):
    """A stored photo; its bytes live in the photo store under their sha256."""

    __tablename__ = "photos"

    sha256: Mapped[str] = mapped_column(String(64), primary_key=True)
    size_bytes: Mapped[int] = mapped_column(Integer)
    media_type: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)


class Evaluation(Base):
    """One device submitted by a refurbisher: facts, grades, the model's prediction, the
    decision and where the workflow stands."""

    __tablename__ = "evaluations"
    __table_args__ = (
        UniqueConstraint("refurbisher_id", "idempotency_key"),
        Index("ix_evaluations_refurbisher_created", "refurbisher_id", "created_at"),
        CheckConstraint(_in("status", STATUSES), name="status"),
        CheckConstraint(_in("decision", DECISIONS), name="decision"),
    )

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    refurbisher_id: Mapped[str] = mapped_column(ForeignKey("refurbishers.id"))
    created_by_key_id: Mapped[str | None] = mapped_column(ForeignKey("api_keys.id"))
    idempotency_key: Mapped[str | None] = mapped_column(String(255))
    request_sha256: Mapped[str] = mapped_column(String(64))
    device_ref: Mapped[str | None] = mapped_column(String(128))
    brand: Mapped[str] = mapped_column(String(64))
    model: Mapped[str] = mapped_column(String(128))
    storage_gb: Mapped[int] = mapped_column(Integer)
    unlocked: Mapped[bool] = mapped_column(Boolean)
    battery_health_pct: Mapped[int | None] = mapped_column(Integer)
    checks: Mapped[dict[str, bool]] = mapped_column(JSON)
    declared_screen: Mapped[str | None] = mapped_column(String(32))
    declared_shell: Mapped[str | None] = mapped_column(String(32))
    refurbisher_grade: Mapped[str] = mapped_column(String(32))
    predicted_grade: Mapped[str] = mapped_column(String(32), index=True)
    confidence: Mapped[float] = mapped_column(Float)
    gap: Mapped[int] = mapped_column(Integer)
    decision: Mapped[str] = mapped_column(String(32))
    inconclusive_reason: Mapped[str | None] = mapped_column(Text)  # decision inconclusive: why
    agrees_screen: Mapped[bool] = mapped_column(Boolean)
    agrees_shell: Mapped[bool] = mapped_column(Boolean)
    agrees_functional: Mapped[bool] = mapped_column(Boolean)
    prediction: Mapped[dict[str, Any]] = mapped_column(JSON)
    bundle_version: Mapped[str] = mapped_column(String(64))
    grading: Mapped[str] = mapped_column(String(64))
    front_sha256: Mapped[str] = mapped_column(ForeignKey("photos.sha256"))
    back_sha256: Mapped[str] = mapped_column(ForeignKey("photos.sha256"))
    status: Mapped[str] = mapped_column(String(32), index=True)
    resolution: Mapped[str | None] = mapped_column(String(16))
    final_grade: Mapped[str | None] = mapped_column(String(32))
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow, index=True)
    updated_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    listed_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)

    justification: Mapped[Justification | None] = relationship(
        back_populates="evaluation", lazy="selectin")
    review: Mapped[Review | None] = relationship(lazy="selectin")
    returns: Mapped[list[ReturnReport]] = relationship(lazy="selectin",
                                                       order_by="ReturnReport.created_at")
    photo_hashes: Mapped[list[PhotoHash]] = relationship()  # written with it, never read


class Justification(Base):
    """The refurbisher's explanation for keeping a grade far from the model's."""

    __tablename__ = "justifications"

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    evaluation_id: Mapped[str] = mapped_column(ForeignKey("evaluations.id"), unique=True)
    text: Mapped[str] = mapped_column(Text)
    created_by_key_id: Mapped[str | None] = mapped_column(ForeignKey("api_keys.id"))
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)

    evaluation: Mapped[Evaluation] = relationship(back_populates="justification")
    photos: Mapped[list[JustificationPhoto]] = relationship(
        lazy="selectin", order_by="JustificationPhoto.position")


class JustificationPhoto(Base):
    __tablename__ = "justification_photos"

    justification_id: Mapped[str] = mapped_column(ForeignKey("justifications.id"),
                                                  primary_key=True)
    position: Mapped[int] = mapped_column(Integer, primary_key=True)
    photo_sha256: Mapped[str] = mapped_column(ForeignKey("photos.sha256"))


class Review(Base):
    """Quality staff's decision on a justified case: approve or override the grade."""

    __tablename__ = "reviews"
    __table_args__ = (CheckConstraint("action IN ('approve', 'override')", name="action"),)

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    evaluation_id: Mapped[str] = mapped_column(ForeignKey("evaluations.id"), unique=True)
    action: Mapped[str] = mapped_column(String(16))
    grade: Mapped[str] = mapped_column(String(32))
    comment: Mapped[str | None] = mapped_column(Text)
    reviewer_key_id: Mapped[str | None] = mapped_column(ForeignKey("api_keys.id"))
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)


class ReturnReport(Base):
    """A return or a claim reported by the platform for a listed device."""

    __tablename__ = "returns"
    __table_args__ = (CheckConstraint(_in("kind", RETURN_KINDS), name="kind"),)

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    evaluation_id: Mapped[str] = mapped_column(ForeignKey("evaluations.id"), index=True)
    kind: Mapped[str] = mapped_column(String(8))
    reason: Mapped[str] = mapped_column(String(64))
    comment: Mapped[str | None] = mapped_column(Text)
    occurred_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, index=True)
    idempotency_key: Mapped[str | None] = mapped_column(String(255), unique=True)
    created_by_key_id: Mapped[str | None] = mapped_column(ForeignKey("api_keys.id"))
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)


class PhotoHash(Base):
    """An accepted evaluation photo's perceptual hash (duplicates across devices). The 64-bit
    hash is also split in five bands of 13, 13, 13, 13 and 12 bits (``band0`` the highest),
    each indexed: two hashes within 4 bits (the default distance) differ in at most four
    bands, so they share one, and the candidates are the rows matching any band."""

    __tablename__ = "photo_hashes"
    __table_args__ = (CheckConstraint(_in("slot", SLOTS), name="slot"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    evaluation_id: Mapped[str] = mapped_column(ForeignKey("evaluations.id"), index=True)
    refurbisher_id: Mapped[str] = mapped_column(String(64))
    device_ref: Mapped[str | None] = mapped_column(String(128))
    slot: Mapped[str] = mapped_column(String(8))
    phash: Mapped[str] = mapped_column(String(16))
    band0: Mapped[int] = mapped_column(Integer, index=True)
    band1: Mapped[int] = mapped_column(Integer, index=True)
    band2: Mapped[int] = mapped_column(Integer, index=True)
    band3: Mapped[int] = mapped_column(Integer, index=True)
    band4: Mapped[int] = mapped_column(Integer, index=True)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)


class PhotoRejection(Base):
    """A photo the photo check refused: when, for whom (None: no refurbisher, e.g. a platform
    key's /v1/grade), on which route, which photo and why."""

    __tablename__ = "photo_rejections"
    __table_args__ = (CheckConstraint(_in("reason", REJECT_REASONS), name="reason"),
                      CheckConstraint(_in("slot", SLOTS), name="slot"))

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow, index=True)
    refurbisher_id: Mapped[str | None] = mapped_column(String(64))
    route: Mapped[str] = mapped_column(String(64))
    slot: Mapped[str] = mapped_column(String(8))
    reason: Mapped[str] = mapped_column(String(16))
