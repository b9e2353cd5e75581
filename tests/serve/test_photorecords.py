"""The duplicate lookup of the photo check (serve/photorecords.py) on a real database: one
query for all the photos, then the exact distance and the device rule."""

from __future__ import annotations

import sqlite3

import pytest

from serve.db import Database
from serve.photorecords import bands, first_duplicate
from vision.photocheck import PhotoStats, PhotoVerdict

STORED = "a1b2c3d4e5f60718"


def verdict(slot: str, phash: str) -> PhotoVerdict:
    stats = PhotoStats(width=1, height=1, brightness_p90=0.5, saturated_centre=0.0,
                       sharpness=1.0, phash=phash)
    return PhotoVerdict(slot=slot, stats=stats)  # type: ignore[arg-type]


def flip(phash: str, bits: int) -> str:
    """``phash`` with its ``bits`` lowest bits flipped."""
    return f"{int(phash, 16) ^ ((1 << bits) - 1):016x}"


@pytest.fixture
def db(tmp_path) -> Database:
    db = Database(f"sqlite:///{tmp_path / 'hashes.db'}")
    db.migrate()
    with sqlite3.connect(tmp_path / "hashes.db") as c:  # a hash alone, no evaluation behind
        row = {"evaluation_id": "ev-1", "refurbisher_id": "R1", "device_ref": "dev-A",
               "slot": "front", "phash": STORED, "created_at": "2026-11-30 00:00:00",
               **{f"band{i}": b for i, b in enumerate(bands(STORED))}}
        c.execute(f"INSERT INTO photo_hashes ({', '.join(row)}) "
                  f"VALUES ({', '.join('?' * len(row))})", list(row.values()))
    return db


def test_a_stored_photo_is_a_duplicate_for_another_device_only(db):
    new = [verdict("front", "0f1e2d3c4b5a6978"), verdict("back", flip(STORED, 3))]
    assert first_duplicate(db, new, 4, device_ref="dev-B") == "back"
    assert first_duplicate(db, new, 4, device_ref="dev-A") is None
    assert first_duplicate(db, new, 4, device_ref="dev-A", any_device=True) == "back"
    assert first_duplicate(db, new, 4) == "back"  # no device_ref: any other evaluation


def test_the_first_slot_is_named_and_the_distance_is_exact(db):
    both = [verdict("front", flip(STORED, 1)), verdict("back", STORED)]
    assert first_duplicate(db, both, 4, device_ref="dev-B") == "front"
    far = [verdict("front", flip(STORED, 5)), verdict("back", "0f1e2d3c4b5a6978")]
    assert first_duplicate(db, far, 4, device_ref="dev-B") is None  # shares a band, 5 bits
    assert first_duplicate(db, far, 5, device_ref="dev-B") == "front"
    assert first_duplicate(db, [], 4) is None
