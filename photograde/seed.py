"""Seed a database with a synthetic history (refurbishers, evaluations, returns) for demos.

Each manifest row with both photos, complete device facts, a refurbisher and its grade becomes
one evaluation. The prediction stored is the model's: ``grade_row(row)`` when given, else
``grader.grade`` on the row's photos and facts (the manifest's true grade is never used as a
prediction). Then the workflow is played out deterministically (a hash of the device id): a
suggestion is accepted (60%) or kept, a justification is approved (50%) or overridden with the
model's grade; cases submitted in the last ``open_days`` days stay open (awaiting the
refurbisher, the justification or the review) so the queues are not empty. Rows marked
``returned`` get a return with their reason once listed. Dates are shifted so that the latest
listing is ``today``. Re-seeding the same manifest adds nothing (idempotency key
``seed:<device_id>``).
"""

from __future__ import annotations

import datetime as dt
import hashlib
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

from tqdm import tqdm

from fusion.grade import GradeResult
from fusion.policy import GradingPolicy
from serve.db import Database
from serve.evaluations import TRANSITIONS, build_evaluation, find_idempotent, store_photos
from serve.models import (
    Justification,
    JustificationPhoto,
    Refurbisher,
    ReturnReport,
    Review,
)
from serve.photostore import PhotoStore, sha256
from tabular.schema import DeviceInfo
from training.manifest import ManifestRow, load_manifest

if TYPE_CHECKING:
    from serve.runtime import Grader

GradeRow = Callable[[ManifestRow], GradeResult]
SEED_TEXT = "Seeded history (synthetic): the grade was checked again on the device."


def _unit(device_id: str, salt: str) -> float:
    """A deterministic number in [0, 1) for a device."""
    h = hashlib.sha256(f"{salt}:{device_id}".encode()).digest()
    return int.from_bytes(h[:8], "big") / 2**64


class _Seed(NamedTuple):
    """What seeding needs of a manifest row, all of it known."""

    front: Path
    back: Path
    info: DeviceInfo
    refurbisher_id: str
    refurbisher_grade: str


def _seed_of(row: ManifestRow) -> _Seed | None:
    """The row's photos, device facts, refurbisher and its grade; None when one is missing."""
    info = row.device_info()
    if not (row.front_path and row.back_path and row.refurbisher_id and row.refurbisher_grade
            and info is not None):
        return None
    return _Seed(row.front_path, row.back_path, info, row.refurbisher_id, row.refurbisher_grade)


def seed_history(db: Database, photos: PhotoStore, manifest_path: str | Path, *,
                 grader: Grader | None = None, grade_row: GradeRow | None = None,
                 policy: GradingPolicy | None = None, n_refurbishers: int | None = None,
                 today: dt.date | None = None, open_days: int = 3,
                 progress: bool = False) -> dict[str, int]:
    """Turn a synthetic manifest into stored history; returns counts of what was added.

    ``n_refurbishers`` keeps the rows of that many refurbishers (the busiest ones);
    ``progress``: a progress bar (stderr) while the rows are graded and stored."""
    if grade_row is None:
        if grader is None:
            raise ValueError("seed_history needs a grader or a grade_row callable: it stores "
                             "the model's predictions, never the manifest's true grades")
        def grade_row(row: ManifestRow) -> GradeResult:
            seed = _seed_of(row)
            if seed is None:  # not reached: only usable rows are graded
                raise ValueError(f"{row.device_id}: missing a photo, a fact or a grade")
            return grader.grade(seed.front, seed.back, seed.info, seed.refurbisher_grade)
    policy = policy or (grader.policy if grader is not None else None)
    if policy is None:
        from fusion.policy import load_policy
        policy = load_policy()
    rows = [(r, seed) for r in load_manifest(manifest_path, policy).rows
            if (seed := _seed_of(r)) is not None]
    if n_refurbishers is not None:
        busiest = Counter(seed.refurbisher_id for _, seed in rows).most_common(n_refurbishers)
        keep = {rid for rid, _ in busiest}
        rows = [(r, seed) for r, seed in rows if seed.refurbisher_id in keep]
    today = today or dt.datetime.now(dt.UTC).date()
    dates = [r.listed_at for r, _ in rows if r.listed_at]
    shift = (today - max(dates)) if dates else dt.timedelta(0)
    now = dt.datetime.now(dt.UTC)
    counts: Counter = Counter()
    for i, (row, seed) in enumerate(tqdm(rows, desc="grading the history", unit="device",
                                         disable=not progress)):
        key = f"seed:{row.device_id}"
        with db.read() as s:
            if find_idempotent(s, seed.refurbisher_id, key) is not None:
                counts["skipped"] += 1
                continue
        result = grade_row(row)
        listed = (row.listed_at or today) + shift
        created = min(now, dt.datetime.combine(listed, dt.time(9), dt.UTC)
                      + dt.timedelta(minutes=(i * 37) % 480))
        front, back = seed.front.read_bytes(), seed.back.read_bytes()
        info = seed.info.model_dump(mode="json")
        ev = build_evaluation(
            policy, result, refurbisher_id=seed.refurbisher_id,
            refurbisher_grade=seed.refurbisher_grade, info=info, front_sha256=sha256(front),
            back_sha256=sha256(back), request_sha256=sha256(key.encode()), idempotency_key=key,
            device_ref=row.device_id, now=created)
        recent = (now - created) < dt.timedelta(days=open_days)
        with db.write() as s:
            if s.get(Refurbisher, seed.refurbisher_id) is None:
                s.add(Refurbisher(id=seed.refurbisher_id, created_at=created))
                s.flush()
            store_photos(s, photos, (front, back))
            s.add(ev)
            s.flush()
            _play(s, ev, row, created, recent)
            if row.returned and ev.status == "listed" and ev.listed_at is not None:
                occurred = min(now, ev.listed_at + dt.timedelta(
                    days=3 + int(_unit(row.device_id, "return-day") * 20)))
                s.add(ReturnReport(evaluation_id=ev.id, kind="return",
                                   reason=row.return_reason or "other", occurred_at=occurred,
                                   created_at=occurred))
                counts["returns"] += 1
        counts["evaluations"] += 1
        counts[ev.status] += 1
    return dict(counts)


def _play(s: Any, ev: Any, row: ManifestRow, created: dt.datetime, recent: bool) -> None:
    """Play out the workflow after submission (deterministic per device)."""
    later = created + dt.timedelta(hours=2)
    u = _unit(row.device_id, "workflow")

    def move(action: str, final: str | None = None) -> None:
        _, to, resolution = TRANSITIONS[action]
        ev.status, ev.resolution, ev.updated_at = to, resolution, later
        if to == "listed":
            ev.final_grade, ev.listed_at = final, later

    if ev.status == "awaiting_refurbisher" and not recent:
        if u < 0.6:
            move("accept-suggestion", ev.predicted_grade)
        else:
            move("keep-grade", ev.refurbisher_grade)
    elif ev.status == "awaiting_justification" and (not recent or u < 0.5):
        j = Justification(evaluation_id=ev.id, text=SEED_TEXT, created_at=later)
        s.add(j)
        s.flush()
        s.add(JustificationPhoto(justification_id=j.id, position=1,
                                 photo_sha256=ev.back_sha256))
        move("justification")
        if not recent:
            approve = _unit(row.device_id, "review") < 0.5
            final = ev.refurbisher_grade if approve else ev.predicted_grade
            s.add(Review(evaluation_id=ev.id, action="approve" if approve else "override",
                         grade=final, created_at=later))
            move("approve" if approve else "override", final)
