"""``photograde dataset export``: the workflow's history as a training manifest.

One row per listed evaluation of the period (``device_id``: the evaluation id; ``source``: the
refurbisher, so ``cv vision --by-source`` holds each one out), its two photos hard-linked (or
copied) from the photo store into ``images/<sha256>.<ext>``, the checklist, the refurbisher,
the grade it was listed at (``refurbisher_grade``, what buyers saw: the return-risk model's
announced grade), its return and the final grade used as truth (``grade``; see
:mod:`photograde.history` for which final grades count and why).

Part labels: the refurbisher's declared conditions where present and consistent with the final
grade; else, for rows with a final grade, the coarse label the grading policy implies. The
policy is the worst of caps, so a final grade G means every part's condition allows at least G:
``screen_condition`` is the set of conditions whose cap is G or better (unknown when that is
every condition), and exactly the conditions capping at G when nothing else (the other part's
declared condition, a failed check, the battery) can explain G.

``manifest.csv`` is written to a temporary file and renamed, so a reader never sees half of it;
``export.json`` holds the summary (rows, per source of truth, skipped with reasons).
"""

from __future__ import annotations

import datetime as dt
import os
import shutil
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from pydantic import BaseModel
from sqlalchemy import func, select
from tqdm import tqdm

from fusion.policy import BUILTIN_CONFIGS, GradingPolicy, load_policy
from photograde import history
from serve.db import Database
from serve.models import Evaluation
from serve.photostore import PhotoStore, media_type
from tabular.schema import CHECKS
from training.manifest import write_manifest
from vision.conditions import CONDITIONS, PARTS, format_condition_set
from vision.errors import PhotogradeError

EXTENSIONS = {"image/jpeg": ".jpg", "image/png": ".png", "image/webp": ".webp",
              "image/heic": ".heic"}


class ExportError(PhotogradeError):
    """The export cannot be made as asked (several grading scales, a bad output folder)."""


class ExportSummary(BaseModel):
    """What an export wrote and left out (``export.json``)."""

    manifest: str
    database: str
    since: str | None
    until: str | None
    as_of: str
    return_window_days: int
    grading: str | None
    implied_part_labels: bool
    evaluations: int
    rows: int
    truth: dict[str, int]
    returned: dict[str, int]
    skipped: dict[str, int]
    part_labels: dict[str, dict[str, int]]
    declared_conflicts: int
    photos: dict[str, int]


def export_policy(db: Database, since: dt.datetime | None, until: dt.datetime | None,
                  grading: str | Path | None) -> GradingPolicy | None:
    """The grading config of the period's evaluations: ``grading`` when given, else the
    built-in config of their one scale (None: a custom scale, no implied part labels)."""
    with db.read() as s:
        q = history.in_period(select(Evaluation.grading, func.count()), since, until)
        scales = {name: n for name, n in s.execute(q.group_by(Evaluation.grading))}
    if grading is not None:
        return load_policy(grading)
    if len(scales) > 1:
        counts = ", ".join(f"{k}: {v}" for k, v in sorted(scales.items()))
        raise ExportError(f"evaluations on several grading scales ({counts}): choose one "
                          "with --grading (the others are skipped)")
    name = next(iter(scales), None)
    return load_policy(name) if name in BUILTIN_CONFIGS else None


def part_labels(policy: GradingPolicy | None, grade: str | None, ev: Evaluation
                ) -> tuple[dict[str, frozenset[str] | None], dict[str, str], int]:
    """Per part: the label, its kind (declared, implied, unknown); and how many declared
    conditions the final grade contradicts (their cap is worse than the grade)."""
    declared = {"screen": ev.declared_screen, "shell": ev.declared_shell}
    rank = policy.rank(grade) if policy is not None and grade is not None else None
    labels: dict[str, frozenset[str] | None] = dict.fromkeys(PARTS)
    kinds, conflicts = dict.fromkeys(PARTS, "unknown"), 0
    for part, cond in declared.items():
        if cond is None:
            continue
        if rank is not None and policy is not None and \
                policy.rank(policy.part_caps[part][cond]) > rank:
            conflicts += 1
            continue
        labels[part], kinds[part] = frozenset({cond}), "declared"
    if rank is None or policy is None:
        return labels, kinds, conflicts
    functional = _functional_ranks(policy, ev)
    if functional is not None and max(functional, default=0) > rank:
        return labels, kinds, conflicts  # the grade ignores the checklist: no policy to apply
    for part in PARTS:
        if labels[part] is not None:
            continue
        caps = policy.part_caps[part]
        allowed = {c for c in CONDITIONS[part] if policy.rank(caps[c]) <= rank}
        other = next(p for p in PARTS if p != part)
        explained = functional is None or rank in functional or (
            labels[other] is None
            or any(policy.rank(policy.part_caps[other][c]) == rank for c in labels[other] or ()))
        if not explained:  # only this part can have brought the grade down to G
            allowed = {c for c in allowed if policy.rank(caps[c]) == rank}
        if allowed and len(allowed) < len(CONDITIONS[part]):
            labels[part], kinds[part] = frozenset(allowed), "implied"
    return labels, kinds, conflicts


def _functional_ranks(policy: GradingPolicy, ev: Evaluation) -> set[int] | None:
    """The ranks of the grade caps set by the checklist and the battery (None: unknown, a
    check or the battery health missing)."""
    if any(c not in ev.checks for c in CHECKS) or (
            ev.battery_health_pct is None and policy.min_battery_health_pct is not None):
        return None
    failed = [c for c in CHECKS if ev.checks[c] is False]
    return {policy.rank(c.grade) for c in policy.caps(failed_checks=failed,
                                                      battery_health_pct=ev.battery_health_pct)}


class PhotoCopier:
    """Photos from the store into ``images/``: a hard link where the file system allows it
    (same device, permissions), else a copy; a photo already there is kept."""

    def __init__(self, store: PhotoStore, out: Path, copy: bool = False):
        self.store, self.out, self.copy = store, out, copy
        (out / "images").mkdir(parents=True, exist_ok=True)
        self.counts: Counter[str] = Counter()

    def place(self, digest: str) -> str | None:
        """The photo's path relative to the manifest (None: not in the store)."""
        src = self.store.local_path(digest)
        if src is None:  # object storage: download
            return self._download(digest)
        if not src.is_file():
            return None
        with src.open("rb") as f:
            ext = EXTENSIONS.get(media_type(f.read(16)), ".bin")
        rel = f"images/{digest}{ext}"
        dst = self.out / rel
        if dst.is_file() and dst.stat().st_size == src.stat().st_size:
            self.counts["present"] += 1
            return rel
        dst.unlink(missing_ok=True)
        if not self.copy:
            try:
                os.link(src, dst)
                self.counts["linked"] += 1
                return rel
            except OSError:  # another file system, or links to others' files forbidden
                pass
        shutil.copyfile(src, dst)
        self.counts["copied"] += 1
        return rel

    def _download(self, digest: str) -> str | None:
        try:
            data = self.store.get(digest)
        except FileNotFoundError:
            return None
        rel = f"images/{digest}{EXTENSIONS.get(media_type(data[:16]), '.bin')}"
        dst = self.out / rel
        if dst.is_file() and dst.stat().st_size == len(data):
            self.counts["present"] += 1
            return rel
        tmp = dst.with_name(dst.name + ".tmp")
        tmp.write_bytes(data)
        tmp.replace(dst)
        self.counts["copied"] += 1
        return rel


class _Export:
    """One export's counters and its row generator."""

    def __init__(self, policy: GradingPolicy | None, photos: PhotoCopier, as_of: dt.datetime,
                 window_days: int):
        self.policy, self.photos, self.as_of, self.window = policy, photos, as_of, window_days
        self.truth: Counter[str] = Counter()
        self.skipped: Counter[str] = Counter()
        self.returned: Counter[str] = Counter()
        self.labels: dict[str, Counter[str]] = {p: Counter() for p in PARTS}
        self.conflicts = 0

    def rows(self, evaluations: Iterator[Evaluation]) -> Iterator[dict[str, Any]]:
        for ev in evaluations:
            row = self.row(ev)
            if row is not None:
                yield row

    def row(self, ev: Evaluation) -> dict[str, Any] | None:
        why = history.unresolved_reason(ev)
        if why is None and self.policy is not None and ev.grading != self.policy.name:
            why = "other_scale"
        t = history.truth(ev, self.as_of, self.window) if why is None else None
        if t is None:
            self.skipped[why or "unresolved"] += 1
            return None
        front, back = self.photos.place(ev.front_sha256), self.photos.place(ev.back_sha256)
        if front is None or back is None:
            self.skipped["photo_missing"] += 1
            return None
        labels, kinds, conflicts = part_labels(self.policy, t.grade, ev)
        self.conflicts += conflicts
        for part, kind in kinds.items():
            self.labels[part][kind] += 1
        self.truth[t.source] += 1
        self.returned["unknown" if t.returned is None else str(t.returned).lower()] += 1
        assert ev.listed_at is not None  # listed: unresolved_reason is None
        return {
            "device_id": ev.id, "front_path": front, "back_path": back, "brand": ev.brand,
            "model": ev.model, "storage_gb": ev.storage_gb, "unlocked": ev.unlocked,
            "battery_health_pct": ev.battery_health_pct,
            **{c: ev.checks.get(c) for c in CHECKS},
            "screen_condition": format_condition_set(labels["screen"], "screen"),
            "shell_condition": format_condition_set(labels["shell"], "shell"),
            "grade": t.grade, "refurbisher_id": ev.refurbisher_id,
            "refurbisher_grade": ev.final_grade, "returned": t.returned,
            "return_reason": t.return_reason, "listed_at": ev.listed_at.date().isoformat(),
            "source": ev.refurbisher_id}


def export_dataset(db: Database, store: PhotoStore, out: str | Path, *,
                   since: dt.datetime | None = None, until: dt.datetime | None = None,
                   grading: str | Path | None = None, as_of: dt.datetime | None = None,
                   window_days: int = history.RETURN_WINDOW_DAYS, copy: bool = False,
                   progress: bool = True) -> ExportSummary:
    """Write ``out/manifest.csv``, ``out/images/`` and ``out/export.json``; the summary."""
    history.check_period(since, until)
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise ExportError(f"--out {out}: exists and is not a folder")
    policy = export_policy(db, since, until, grading)
    as_of = as_of or dt.datetime.now(dt.UTC)
    job = _Export(policy, PhotoCopier(store, out, copy), as_of, window_days)
    total = history.count_evaluations(db, since, until)
    evaluations = tqdm(history.iter_evaluations(db, since, until), total=total,
                       desc="export", unit="evaluation", disable=not progress)
    tmp, manifest = out / ".manifest.csv.tmp", out / "manifest.csv"
    try:
        write_manifest(tmp, job.rows(iter(evaluations)))
        os.replace(tmp, manifest)
    finally:
        tmp.unlink(missing_ok=True)
    summary = ExportSummary(
        manifest=str(manifest), database=db.url.render_as_string(hide_password=True),
        since=since.isoformat() if since else None, until=until.isoformat() if until else None,
        as_of=as_of.isoformat(), return_window_days=window_days,
        grading=policy.name if policy else None, implied_part_labels=policy is not None,
        evaluations=total, rows=sum(job.truth.values()),
        truth={k: job.truth[k] for k in (*history.TRUTH_SOURCES, *history.NOT_TRUTH)},
        returned=dict(sorted(job.returned.items())), skipped=dict(sorted(job.skipped.items())),
        part_labels={p: dict(sorted(c.items())) for p, c in job.labels.items()},
        declared_conflicts=job.conflicts, photos=dict(sorted(job.photos.counts.items())))
    (out / "export.json").write_text(summary.model_dump_json(indent=2) + "\n")
    return summary


def summary_lines(summary: ExportSummary) -> list[str]:
    """The summary in a few lines, for the command line."""
    def counts(d: dict[str, int]) -> str:
        return ", ".join(f"{k} {v}" for k, v in d.items() if v) or "none"

    truth = {k: summary.truth[k] for k in history.TRUTH_SOURCES}
    other = {k: summary.truth[k] for k in history.NOT_TRUTH}
    return [f"exported {summary.rows} of {summary.evaluations} evaluations to "
            f"{summary.manifest}",
            f"final grade used as truth: {counts(truth)}",
            f"no grade (rows kept for the return-risk model): {counts(other)}",
            f"returned within {summary.return_window_days} days: {counts(summary.returned)}",
            f"skipped: {counts(summary.skipped)}",
            "part labels: " + "; ".join(f"{p} {counts(c)}"
                                        for p, c in summary.part_labels.items())]
