"""Migration 0002: the inconclusive decision and its reason, on SQLite (batch mode) and
PostgreSQL, upgraded over stored evaluations and downgraded back."""

from __future__ import annotations

import pytest
from alembic import command
from sqlalchemy import text
from sqlalchemy.exc import IntegrityError

from serve.db import Database, alembic_config
from tests.support import DB_KINDS, database_url

COLUMNS = ("id, refurbisher_id, request_sha256, brand, model, storage_gb, unlocked, checks, "
           "refurbisher_grade, predicted_grade, confidence, gap, decision, agrees_screen, "
           "agrees_shell, agrees_functional, prediction, bundle_version, grading, front_sha256, "
           "back_sha256, status, created_at, updated_at")


def _insert(conn, ev_id: str, decision: str) -> None:
    conn.execute(text(f"INSERT INTO evaluations ({COLUMNS}) VALUES (:id, 'r1', 'x', 'b', 'm', "
                      f"64, true, '{{}}', 'good', 'good', 0.5, 0, :decision, true, true, true, "
                      f"'{{}}', 'v', 'marketplace', 'f', 'k', 'in_review', "
                      f"'2026-11-30 00:00:00', '2026-11-30 00:00:00')"),
                 {"id": ev_id, "decision": decision})


def _seed(conn) -> None:
    conn.execute(text("INSERT INTO refurbishers (id, created_at) VALUES "
                      "('r1', '2026-11-30 00:00:00')"))
    conn.execute(text("INSERT INTO photos (sha256, size_bytes, media_type, created_at) VALUES "
                      "('f', 1, 'image/jpeg', '2026-11-30 00:00:00'), "
                      "('k', 1, 'image/jpeg', '2026-11-30 00:00:00')"))


@pytest.mark.parametrize("kind", DB_KINDS)
def test_migration_widens_the_decisions_and_keeps_rows(kind, tmp_path):
    with database_url(kind, tmp_path) as url:
        cfg = alembic_config(url)
        command.upgrade(cfg, "0001")
        d = Database(url)
        with d.engine.begin() as conn:
            _seed(conn)
            _insert(conn, "old", "justification_required")
            with pytest.raises(IntegrityError), conn.begin_nested():
                _insert(conn, "early", "inconclusive")
        d.migrate()
        with d.engine.begin() as conn:
            _insert(conn, "new", "inconclusive")
            conn.execute(text("UPDATE evaluations SET inconclusive_reason = 'weak' "
                              "WHERE id = 'new'"))
            with pytest.raises(IntegrityError), conn.begin_nested():
                _insert(conn, "bad", "maybe")
            rows = dict(conn.execute(text("SELECT id, decision FROM evaluations")).all())
        assert rows == {"old": "justification_required", "new": "inconclusive"}
        command.downgrade(cfg, "0001")
        with d.engine.begin() as conn:
            rows = dict(conn.execute(text("SELECT id, decision FROM evaluations")).all())
        assert rows == {"old": "justification_required", "new": "justification_required"}
        d.dispose()
