"""What the photo check keeps in the database: each accepted evaluation photo's perceptual
hash (to refuse the same photo for another device) and each rejected photo (the dashboard).

A :class:`Screen` is one request's side of the check, given to
:meth:`serve.grading.Service.grade`: it finds duplicates among the stored hashes, records a
rejection, and keeps the verdicts an evaluation stores with itself (:func:`hash_rows`).
"""

from __future__ import annotations

import functools
import logging
from typing import Any

from fastapi.concurrency import run_in_threadpool
from sqlalchemy import Select, bindparam, or_, select
from sqlalchemy.exc import SQLAlchemyError

from serve.db import Database
from serve.models import PhotoHash, PhotoRejection
from vision.photocheck import PhotoVerdict, RejectReason, Slot, hamming

log = logging.getLogger("photograde.serve")
#: Bits of each band of the 64-bit hash, highest first: five bands, so that two hashes within
#: 4 bits (the default ``duplicate_max_distance``) always share one (pigeonhole). A larger
#: distance setting still finds every pair that shares a band, most of them.
BAND_BITS = (13, 13, 13, 13, 12)


def bands(phash: str) -> tuple[int, ...]:
    """The 64-bit hash cut into :data:`BAND_BITS` integers, the highest bits first."""
    h, shift, out = int(phash, 16), 64, []
    for bits in BAND_BITS:
        shift -= bits
        out.append((h >> shift) & ((1 << bits) - 1))
    return tuple(out)


def _band_columns() -> tuple[Any, ...]:
    return tuple(getattr(PhotoHash, f"band{i}") for i in range(len(BAND_BITS)))


def hash_rows(verdicts: list[PhotoVerdict], refurbisher_id: str,
              device_ref: str | None) -> list[PhotoHash]:
    """The rows an evaluation stores for its accepted photos."""
    rows = []
    for v in verdicts:
        b = {f"band{i}": band for i, band in enumerate(bands(v.stats.phash))}
        rows.append(PhotoHash(refurbisher_id=refurbisher_id, device_ref=device_ref,
                              slot=v.slot, phash=v.stats.phash, **b))
    return rows


@functools.cache
def _duplicate_query(photos: int) -> Select[str, str | None]:
    """The stored (hash, device_ref) sharing a band with any of ``photos`` hashes (every
    photo within 4 bits of one does), its bands bound as ``b{photo}_{band}``: built once per
    count (building the expression costs more than running it)."""
    cols = _band_columns()
    return select(PhotoHash.phash, PhotoHash.device_ref).where(or_(
        *(c == bindparam(f"b{p}_{i}") for p in range(photos) for i, c in enumerate(cols))))


def another_device(device_ref: str | None, stored_ref: str | None) -> bool:
    """Whether a stored photo (of ``stored_ref``) belongs to another device than a new
    evaluation's: another ``device_ref``, or, when either has none, another evaluation (any,
    as this one is new)."""
    return device_ref is None or stored_ref is None or stored_ref != device_ref


def first_duplicate(db: Database, verdicts: list[PhotoVerdict], max_distance: int, *,
                    device_ref: str | None = None, any_device: bool = False) -> Slot | None:
    """The slot of the first photo already stored for another device than ``device_ref``
    (``any_device``: for any evaluation), or None. One query for all the photos: the rows
    sharing a band with any of them, then their exact distances."""
    if not verdicts:
        return None
    params = {f"b{p}_{i}": band for p, v in enumerate(verdicts)
              for i, band in enumerate(bands(v.stats.phash))}
    with db.read() as s:
        rows = [(phash, ref) for phash, ref in s.execute(_duplicate_query(len(verdicts)), params)
                if any_device or another_device(device_ref, ref)]
    for v in verdicts:
        if any(hamming(phash, v.stats.phash) <= max_distance for phash, _ in rows):
            return v.slot
    return None


def record_rejection(db: Database, refurbisher_id: str | None, route: str, slot: Slot,
                     reason: RejectReason) -> None:
    """Store one rejected photo; a database failure is logged, never the caller's error."""
    try:
        with db.write() as s:
            s.add(PhotoRejection(refurbisher_id=refurbisher_id, route=route, slot=slot,
                                 reason=reason.value))
    except SQLAlchemyError:
        log.exception("could not record a photo rejection (%s, %s)", slot, reason.value)


class Screen:
    """One request's side of the photo check: where it comes from (``route``, the
    refurbisher, for the rejection record) and which stored photos it must not repeat: those
    of another device (``device_ref``, an evaluation) or, ``any_device``, any stored one."""

    def __init__(self, db: Database, route: str, refurbisher_id: str | None = None, *,
                 device_ref: str | None = None, any_device: bool = False):
        self.db, self.route, self.refurbisher_id = db, route, refurbisher_id
        self.device_ref, self.any_device = device_ref, any_device
        self.verdicts: list[PhotoVerdict] = []

    async def duplicate(self, verdicts: list[PhotoVerdict], max_distance: int) -> Slot | None:
        """Keep the verdicts (accepted so far); the slot of the first duplicate, or None."""
        self.verdicts = verdicts
        return await run_in_threadpool(first_duplicate, self.db, verdicts, max_distance,
                                       device_ref=self.device_ref, any_device=self.any_device)

    async def rejected(self, slot: Slot, reason: RejectReason) -> None:
        await run_in_threadpool(record_rejection, self.db, self.refurbisher_id, self.route,
                                slot, reason)
