"""Helpers shared by the workflow tests: database URLs (SQLite, PostgreSQL), photos, devices."""

from __future__ import annotations

import io
import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from PIL import Image

from tabular.schema import CHECKS

PG_ENV = "PHOTOGRADE_TEST_POSTGRES_URL"
INFO = {"brand": "Apple", "model": "iPhone 12", "storage_gb": 128, "unlocked": True,
        "battery_health_pct": 91, "checks": dict.fromkeys(CHECKS, True)}
#: Database kinds every storage test runs on; PostgreSQL only when PHOTOGRADE_TEST_POSTGRES_URL
#: names a server (CI starts one: scripts/test-postgres).
DB_KINDS = [pytest.param("sqlite", id="sqlite"),
            pytest.param("postgresql", id="postgresql", marks=pytest.mark.skipif(
                not os.environ.get(PG_ENV), reason=f"{PG_ENV} is not set"))]


@contextmanager
def database_url(kind: str, tmp: Path) -> Iterator[str]:
    """A URL to an empty database: a SQLite file under ``tmp``, or a new PostgreSQL database
    (created on the server of PHOTOGRADE_TEST_POSTGRES_URL, dropped afterwards)."""
    if kind == "sqlite":
        yield f"sqlite:///{tmp / 'photograde.db'}"
        return
    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url

    base = make_url(os.environ[PG_ENV])
    name = f"photograde_t_{uuid.uuid4().hex[:12]}"
    admin = create_engine(base, isolation_level="AUTOCOMMIT")
    with admin.connect() as c:
        c.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield base.set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as c:
            c.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def small_photos(synth_dir: Path, n: int, size: int = 160) -> list[tuple[bytes, bytes]]:
    """``n`` distinct (front, back) JPEG pairs from the synthetic set, ``size`` px, each
    stamped with its index so that no two requests share a photo."""
    from training.manifest import load_manifest

    rows = load_manifest(synth_dir / "manifest.csv").rows
    bases = []
    for row in rows:
        pair = []
        for path in (row.front_path, row.back_path):
            im = Image.open(path).convert("RGB")
            im.thumbnail((size, size))
            pair.append(im)
        bases.append(pair)
    out = []
    for i in range(n):
        pair = []
        for k, im in enumerate(bases[i % len(bases)]):
            im = im.copy()
            for bit in range(16):  # the index, as a row of black/white pixels
                im.putpixel((bit, k), (255, 255, 255) if (i >> bit) & 1 else (0, 0, 0))
            buf = io.BytesIO()
            im.save(buf, "JPEG", quality=90)
            pair.append(buf.getvalue())
        out.append((pair[0], pair[1]))
    return out


def grade_at_gap(grades: list[str] | tuple[str, ...], predicted: str, gap: int) -> str:
    """A refurbisher grade ``gap`` steps from ``predicted`` (worse if possible, else better)."""
    i = grades.index(predicted)
    return grades[i + gap] if i + gap < len(grades) else grades[i - gap]
