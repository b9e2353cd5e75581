"""``photograde backtest``: replay stored evaluations through a candidate bundle and the current
one, torch-free (:meth:`serve.runtime.Grader.grade` on the stored photos, checklist and the
refurbisher's grade), and compare them with the final grades (:mod:`photograde.history`).

Both bundles decide with their own grading config (its ``min_confidence`` is a property of
the model's calibration) and the settings' decision thresholds, as the service would.
``report.json`` and ``report.html`` (:mod:`photograde.backtest_html`) hold: agreement with
the final grades per bundle (overall and per source of truth), the decision transitions
(current -> candidate), the shares of would-be justification requests and inconclusive cases,
confusion matrices (final grade x predicted), per refurbisher and per brand/model breakdowns,
and a one-line recommendation (:func:`recommend`).

Agreement with final grades favours the bundle that graded the history: its validated grades
and accepted suggestions are its own predictions. The rule is therefore conservative: a
candidate must beat the current bundle on data biased towards the current one.
"""

from __future__ import annotations

import datetime as dt
import json
import math
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import func, select
from tqdm import tqdm

from fusion.bundle import BundleError, load_manifest
from fusion.policy import Decision
from photograde import history
from serve.db import Database
from serve.evaluations import decision_policy
from serve.models import Evaluation
from serve.photostore import PhotoStore
from serve.runtime import Grader
from vision.errors import PhotogradeError

DECISIONS = tuple(d.value for d in Decision)
BUNDLES = ("current", "new")
#: The recommendation rule (docs/workflow.md "Backtest"): figures in percentage points.
MIN_FINAL_GRADES = 30
MIN_GAIN_POINTS = 1.0
MAX_COST_POINTS = 1.0


class BacktestError(PhotogradeError):
    """Nothing to replay, an unknown current bundle, or bundles on different scales."""


@dataclass(frozen=True)
class Replayed:
    """One evaluation and what each bundle (current, new) makes of it."""

    evaluation_id: str
    refurbisher_id: str
    device: str  # brand and model
    truth: str | None
    truth_source: str | None
    graded_by: str
    stored_grade: str
    grades: tuple[str, str]
    decisions: tuple[str, str]


def graded_versions(db: Database, since: dt.datetime | None, until: dt.datetime | None
                    ) -> tuple[str | None, dict[str, int]]:
    """The version that graded the period's latest evaluation, and counts per version."""
    with db.read() as s:
        q = history.in_period(select(Evaluation.bundle_version, func.count()), since, until)
        counts = {v: n for v, n in s.execute(q.group_by(Evaluation.bundle_version))}
        latest = s.scalar(history.in_period(select(Evaluation.bundle_version), since, until)
                          .order_by(Evaluation.created_at.desc(), Evaluation.id.desc())
                          .limit(1))
    return latest, counts


def bundle_version(path: Path) -> str | None:
    try:
        return load_manifest(path, verify_hashes=False).bundle_version
    except BundleError:
        return None


def find_bundle(version: str, candidates: Iterable[Path]) -> Path | None:
    """The first candidate folder (or a bundle folder inside it) of that version."""
    for c in candidates:
        for d in (c, *(sorted(p for p in c.iterdir() if p.is_dir()) if c.is_dir() else ())):
            if bundle_version(d) == version:
                return d
    return None


def resolve_against(against: Path | None, new: Path, version: str | None,
                    candidates: Iterable[Path]) -> Path:
    """``--against``, else the bundle of ``version`` (the one that graded the evaluations)
    found among ``new``, the places given (the served bundle, the shipped one) and ``new``'s
    sibling folders."""
    if against is not None:
        return against
    if version is None:
        raise BacktestError("no evaluation in the period")
    found = find_bundle(version, [new, *candidates, new.resolve().parent])
    if found is None:
        raise BacktestError(f"the evaluations were graded by bundle {version}, which is not "
                            f"here (looked in {new.resolve().parent} and the served bundle): "
                            "pass --against CURRENT")
    return found


def _replay_one(ev: Evaluation, graders: tuple[Grader, Grader], store: PhotoStore,
                as_of: dt.datetime, window_days: int) -> Replayed | str:
    """The evaluation replayed, or why it cannot be."""
    if ev.grading != graders[0].policy.name or ev.refurbisher_grade not in graders[0].policy.grades:
        return "other_scale"
    info = history.device_info(ev)
    if info is None:
        return "checklist_incomplete"
    if not (store.exists(ev.front_sha256) and store.exists(ev.back_sha256)):
        return "photo_missing"
    front, back = store.get(ev.front_sha256), store.get(ev.back_sha256)
    try:
        results = [g.grade(front, back, info, ev.refurbisher_grade) for g in graders]
    except (PhotogradeError, OSError):
        return "photo_unreadable"
    t = history.truth(ev, as_of, window_days)
    return Replayed(ev.id, ev.refurbisher_id, f"{ev.brand} {ev.model}",
                    t.grade if t else None, t.source if t and t.grade else None,
                    ev.bundle_version, ev.predicted_grade,
                    (results[0].grade, results[1].grade),
                    (str(results[0].decision), str(results[1].decision)))


def replay(db: Database, store: PhotoStore, graders: tuple[Grader, Grader],
           since: dt.datetime | None, until: dt.datetime | None, as_of: dt.datetime,
           window_days: int = history.RETURN_WINDOW_DAYS, progress: bool = True
           ) -> tuple[list[Replayed], Counter[str]]:
    """Every evaluation of the period through both graders; (replayed, skipped by reason)."""
    rows: list[Replayed] = []
    skipped: Counter[str] = Counter()
    total = history.count_evaluations(db, since, until)
    for ev in tqdm(history.iter_evaluations(db, since, until), total=total, desc="backtest",
                   unit="evaluation", disable=not progress):
        r = _replay_one(ev, graders, store, as_of, window_days)
        if isinstance(r, str):
            skipped[r] += 1
        else:
            rows.append(r)
    return rows, skipped


def _share(n: int, total: int) -> float | None:
    return round(n / total, 4) if total else None


def _agreement(rows: list[Replayed], k: int) -> float | None:
    judged = [r for r in rows if r.truth is not None]
    return _share(sum(r.grades[k] == r.truth for r in judged), len(judged))


def bundle_metrics(rows: list[Replayed], k: int, grades: tuple[str, ...]) -> dict[str, Any]:
    """One bundle's figures: agreement (overall, on the cases it decides, per source of
    truth), decision shares,
    confusion matrix (rows: final grade, columns: predicted)."""
    judged = [r for r in rows if r.truth is not None]
    decisions = Counter(r.decisions[k] for r in rows)
    matrix = [[0] * len(grades) for _ in grades]
    for r in judged:
        matrix[grades.index(r.truth or "")][grades.index(r.grades[k])] += 1
    sources = sorted({r.truth_source or "" for r in judged}, key=history.TRUTH_SOURCES.index)
    return {
        "agreement": _agreement(rows, k),
        "agreement_decided": _agreement([r for r in rows if r.decisions[k] != "inconclusive"], k),
        "agreement_by_truth_source": {
            s: {"n": sum(r.truth_source == s for r in judged),
                "agreement": _agreement([r for r in judged if r.truth_source == s], k)}
            for s in sources},
        "decisions": {d: decisions[d] for d in DECISIONS},
        "decision_shares": {d: _share(decisions[d], len(rows)) for d in DECISIONS},
        "justification_share": _share(decisions["justification_required"], len(rows)),
        "inconclusive_share": _share(decisions["inconclusive"], len(rows)),
        "predicted": {g: sum(r.grades[k] == g for r in rows) for g in grades},
        "confusion": matrix,
    }


def transitions(rows: list[Replayed]) -> dict[str, Any]:
    """Decision transitions, current (rows) -> new (columns)."""
    matrix = [[sum(r.decisions == (a, b) for r in rows) for b in DECISIONS] for a in DECISIONS]
    return {"labels": list(DECISIONS), "matrix": matrix,
            "changed": sum(r.decisions[0] != r.decisions[1] for r in rows)}


def breakdown(rows: list[Replayed], key: Callable[[Replayed], str]) -> list[dict[str, Any]]:
    """Per group (largest first): counts, agreement and justification share per bundle."""
    groups: dict[str, list[Replayed]] = defaultdict(list)
    for r in rows:
        groups[key(r)].append(r)
    out = []
    for name, rs in sorted(groups.items(), key=lambda kv: (-len(kv[1]), kv[0])):
        just = [sum(r.decisions[k] == "justification_required" for r in rs) for k in (0, 1)]
        out.append({"group": name, "n": len(rs),
                    "with_final_grade": sum(r.truth is not None for r in rs),
                    "agreement": {b: _agreement(rs, k) for k, b in enumerate(BUNDLES)},
                    "justification_share": {b: _share(just[k], len(rs))
                                            for k, b in enumerate(BUNDLES)},
                    "decision_changes": sum(r.decisions[0] != r.decisions[1] for r in rs),
                    "grade_changes": sum(r.grades[0] != r.grades[1] for r in rs)})
    return out


def mcnemar_p(b: int, c: int) -> float:
    """Exact two-sided McNemar test: ``b``, ``c`` the pairs only one bundle gets right."""
    n = b + c
    if n == 0:
        return 1.0
    tail = sum(math.comb(n, i) for i in range(min(b, c) + 1))
    return min(1.0, 2 * tail / 2**n)


def points(new: float | None, current: float | None) -> float:
    return round(100 * ((new or 0.0) - (current or 0.0)), 1)


def recommend(rows: list[Replayed], metrics: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """The verdict and its line (the rule: docs/workflow.md "Backtest")."""
    cur, new = metrics["current"], metrics["new"]
    judged = [r for r in rows if r.truth is not None]
    d = {"agreement": points(new["agreement"], cur["agreement"]),
         "justification": points(new["justification_share"], cur["justification_share"]),
         "inconclusive": points(new["inconclusive_share"], cur["inconclusive_share"])}
    b = sum(r.grades[1] == r.truth != r.grades[0] for r in judged)
    c = sum(r.grades[0] == r.truth != r.grades[1] for r in judged)
    p = mcnemar_p(b, c)
    figures = (f"agreement {d['agreement']:+.1f} points, justification requests "
               f"{d['justification']:+.1f} points, inconclusive {d['inconclusive']:+.1f} points "
               f"(n={len(judged)} with a final grade, McNemar p={p:.2g})")
    if all(r.grades[0] == r.grades[1] and r.decisions[0] == r.decisions[1] for r in rows):
        verdict, line = "no change", (f"no change: both bundles give the same grade and "
                                      f"decision on all {len(rows)} evaluations")
    elif len(judged) < MIN_FINAL_GRADES:
        verdict = "keep current"
        line = (f"keep current: only {len(judged)} evaluations have a final grade (the rule "
                f"needs {MIN_FINAL_GRADES}); {figures}")
    else:
        gain = d["agreement"] >= MIN_GAIN_POINTS or d["justification"] <= -MIN_GAIN_POINTS
        no_cost = (d["agreement"] >= 0 and d["justification"] <= MAX_COST_POINTS
                   and d["inconclusive"] <= MAX_COST_POINTS)
        verdict = "promote" if gain and no_cost else "keep current"
        line = f"{verdict}: {figures}"
    return {"verdict": verdict, "line": line, "delta_points": d,
            "mcnemar": {"new_right_current_wrong": b, "current_right_new_wrong": c, "p": p},
            "rule": {"min_final_grades": MIN_FINAL_GRADES, "min_gain_points": MIN_GAIN_POINTS,
                     "max_cost_points": MAX_COST_POINTS}}


def reproduced(rows: list[Replayed], version: str) -> dict[str, Any]:
    """Of the evaluations graded by the current bundle's version, how many its replay grades
    as stored (a check that the replay is the service's grading)."""
    mine = [r for r in rows if r.graded_by == version]
    same = sum(r.grades[0] == r.stored_grade for r in mine)
    return {"n": len(mine), "same_grade": same, "share": _share(same, len(mine))}


def build_report(rows: list[Replayed], skipped: Counter[str], graders: tuple[Grader, Grader],
                 paths: tuple[Path, Path], period: dict[str, Any]) -> dict[str, Any]:
    """The report's JSON."""
    grades = tuple(graders[0].policy.grades)
    metrics = {b: bundle_metrics(rows, k, grades) for k, b in enumerate(BUNDLES)}
    version = graders[0].manifest.bundle_version
    return {
        "recommendation": recommend(rows, metrics),
        "period": period,
        "bundles": {b: {"path": str(p), "version": g.manifest.bundle_version,
                        "model_name": g.manifest.model_name, "grading": g.policy.name,
                        "min_confidence": g.policy.min_confidence}
                    for b, g, p in zip(BUNDLES, graders, paths, strict=True)},
        "evaluations": {"replayed": len(rows),
                        "with_final_grade": sum(r.truth is not None for r in rows),
                        "skipped": dict(sorted(skipped.items())),
                        "graded_by": dict(Counter(r.graded_by for r in rows).most_common())},
        "reproduced": reproduced(rows, version),
        "grades": list(grades),
        "metrics": metrics,
        "decision_changes": transitions(rows),
        "grade_changes": sum(r.grades[0] != r.grades[1] for r in rows),
        "by_refurbisher": breakdown(rows, lambda r: r.refurbisher_id),
        "by_model": breakdown(rows, lambda r: r.device),
    }


def run_backtest(db: Database, store: PhotoStore, new: str | Path, out: str | Path, *,
                 since: dt.datetime, until: dt.datetime | None = None,
                 against: str | Path | None = None, candidates: Iterable[Path] = (),
                 decision_gaps: tuple[int | None, int | None] = (None, None),
                 int8: bool = False, threads: int | None = None,
                 window_days: int = history.RETURN_WINDOW_DAYS,
                 as_of: dt.datetime | None = None, progress: bool = True) -> dict[str, Any]:
    """Replay, compare, write ``out/report.json`` and ``out/report.html``; the report."""
    from photograde.backtest_html import render

    history.check_period(since, until)
    new = Path(new)
    latest, _ = graded_versions(db, since, until)
    current = resolve_against(Path(against) if against else None, new, latest, candidates)
    g_new = Grader(new, int8=int8, threads=threads)
    same = current.resolve() == new.resolve()
    g_cur = g_new if same else Grader(current, int8=int8, threads=threads)
    if g_cur.policy.grades != g_new.policy.grades:
        raise BacktestError(f"the bundles grade on different scales ({g_cur.policy.name}: "
                            f"{', '.join(g_cur.policy.grades)}; {g_new.policy.name}: "
                            f"{', '.join(g_new.policy.grades)})")
    for g in {id(g_cur): g_cur, id(g_new): g_new}.values():
        g.policy = decision_policy(g.policy, *decision_gaps)
    as_of = as_of or dt.datetime.now(dt.UTC)
    rows, skipped = replay(db, store, (g_cur, g_new), since, until, as_of, window_days,
                           progress)
    if not rows:
        raise BacktestError(f"no evaluation to replay since {since.isoformat()} "
                            f"(skipped: {dict(skipped) or 'none'})")
    period = {"since": since.isoformat(), "until": until.isoformat() if until else None,
              "as_of": as_of.isoformat(), "return_window_days": window_days,
              "against": ("given (--against)" if against
                          else "the bundle that graded the evaluations")}
    report = build_report(rows, skipped, (g_cur, g_new), (current, new), period)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "report.json").write_text(json.dumps(report, indent=2) + "\n")
    (out / "report.html").write_text(render(report), encoding="utf-8")
    return report
