"""``photograde evaluate bundle``: score an exported bundle as it is served, torch-free.

The photos go through the serving runtime (JPEG draft decoding, the bundle's preprocessing and
ONNX model, fp32 or int8) and the metrics are those of ``evaluate vision`` (same
``metrics.json`` layout, same report), plus:

- ``by_source``: the same metrics per source (the manifest's ``source`` column; synthetic
  manifests have none and count as ``synthetic``);
- ``grades``: when the manifest knows the true grade and the checklist, the predicted grade
  against it (confusion, accuracy, macro-F1, QWK): the grade as served, the bundle's policy
  applied to the part decisions, with its risk-coverage (``risk_coverage``: the grade decided
  only when its confidence reaches a threshold; each part's is under the part, as for
  ``evaluate vision``);
- ``user_grades``: with ``--back PHOTO``, each front-only photo graded as a device with that
  back and a checklist that passes (every check works, battery 90%): what a refurbisher would
  see, counted per label (e.g. how many intact fronts come out ``broken``);
- ``served_grades``: with ``--set-reference``, the grade the service gives every device with
  both photos and a checklist, labelled or not (the bundle's reference distribution, written
  into its manifest: the service's drift watch compares the served grades with it).

It lives in the command-line root because it composes the serving runtime and the training
metrics; it imports no torch (and scikit-learn only when it runs: the service never loads it).
"""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from tqdm import tqdm

from fusion.grade import decided_grade, grade_distribution
from serve.runtime import Grader
from tabular.schema import CHECKS
from vision.conditions import CONDITIONS, PART_VIEW, PARTS
from vision.errors import PhotogradeError

if TYPE_CHECKING:
    from training.manifest import Manifest
    from training.samples import Sample

USER_BATTERY = 90


class BundleEvalError(PhotogradeError):
    """Nothing to evaluate (no labelled photos), or a bad ``--back`` photo."""


def bundle_logits(grader: Grader, samples: list[Sample], batch_size: int = 16,
                  progress: bool = True) -> np.ndarray:
    """Each photo's own head's logits (N, 4), decoded and run exactly as the service does.
    When the bundle blends the photo check's cracked-screen probe into the screen's
    probabilities, a screen's logits are those of the served probabilities (``T log p``, so
    that the metrics' temperature scaling gives them back)."""
    out = np.empty((len(samples), 4), np.float32)
    for start in tqdm(range(0, len(samples), batch_size), desc="bundle", unit="batch",
                      disable=not progress):
        chunk = samples[start:start + batch_size]
        photos = [grader.decode(s.path, view=PART_VIEW[s.part]) for s in chunk]
        screen, shell, _ = grader.run_vision(np.stack([p.x for p in photos]))
        fronts = [p for p, s in zip(photos, chunk, strict=True) if s.part == "screen"]
        if grader.cracked_weight and fronts:  # one photo-check call for the chunk
            for p, sc in zip(fronts, grader.side_scores(fronts) or [], strict=True):
                p.scores = sc
        for i, s in enumerate(chunk):
            out[start + i] = (grader.served_screen_logits(photos[i], screen[i])
                              if s.part == "screen" else shell[i])
    return out


def _sources(manifests: list[Manifest]) -> dict[str, str]:
    return {r.device_id: r.source or "synthetic"
            for m in manifests for r in m.rows}


def _by_source(samples: list[Sample], logits: np.ndarray, allowed: np.ndarray,
               temps: dict[str, float], sources: dict[str, str], out: Path) -> dict[str, Any]:
    """Per source and head, the head's metrics on that source's photos only."""
    from training.vision_eval import evaluate_heads

    result: dict[str, Any] = {}
    src = np.array([sources.get(s.device_id, "synthetic") for s in samples])
    for name in sorted(set(src)):
        sel = src == name
        sub = out / "by_source" / name
        sub.mkdir(parents=True, exist_ok=True)
        result[name] = evaluate_heads([s for s, ok in zip(samples, sel, strict=True) if ok],
                                      logits[sel], allowed[sel], temps, sub, worst=0)
    return result


def _grade_metrics(true: list[str], pred: list[str], grades: tuple[str, ...],
                   confidence: list[float]) -> dict[str, Any]:
    from sklearn.metrics import cohen_kappa_score, confusion_matrix, f1_score

    from training.metrics import risk_coverage

    rank = {g: i for i, g in enumerate(grades)}
    t, p = [rank[g] for g in true], [rank[g] for g in pred]
    return {"n": len(true), "grades": list(grades),
            "accuracy": float(np.mean(np.array(t) == np.array(p))),
            "macro_f1": float(f1_score(t, p, average="macro", labels=list(range(len(grades))),
                                       zero_division=0)),
            "qwk": float(cohen_kappa_score(t, p, weights="quadratic")),
            "confusion_matrix": confusion_matrix(t, p, labels=list(range(len(grades)))).tolist(),
            "risk_coverage": risk_coverage(np.array(confidence), np.array(t) == np.array(p))}


def _part_probs(samples: list[Sample], logits: np.ndarray, temps: dict[str, float]
                ) -> dict[tuple[str, str], np.ndarray]:
    from training.metrics import softmax

    return {(s.device_id, s.part): softmax(logits[i:i + 1], temps[s.part])[0]
            for i, s in enumerate(samples)}


def _grades(grader: Grader, manifests: list[Manifest], probs: dict[tuple[str, str], np.ndarray]
            ) -> dict[str, Any] | None:
    """Predicted vs true grade for rows with a grade, both photos and a full checklist; the
    risk-coverage of the grade decided by its confidence (the fused probability of the grade)."""
    policy = grader.policy
    true, pred, conf = [], [], []
    for row in (r for m in manifests for r in m.rows):
        info = row.device_info()
        keys = [(row.device_id, part) for part in PARTS]
        if row.grade is None or info is None or any(k not in probs for k in keys):
            continue
        if row.grade not in policy.grades:
            raise BundleEvalError(f"line {row.line}: grade {row.grade!r} is not on the bundle's "
                                  f"{policy.name} scale ({', '.join(policy.grades)})")
        parts = dict(zip(PARTS, (probs[k] for k in keys), strict=True))
        grade = decided_grade(policy, parts, info.failed_checks, info.battery_health_pct)
        p = grade_distribution(policy, grader.fusion, parts, info.failed_checks,
                               info.battery_health_pct)
        true.append(row.grade)
        pred.append(grade)
        conf.append(float(p[policy.rank(grade)]))
    return _grade_metrics(true, pred, tuple(policy.grades), conf) if true else None


def _user_grades(grader: Grader, samples: list[Sample], probs: dict[tuple[str, str], np.ndarray],
                 back: Path) -> dict[str, Any]:
    """Fronts graded with one back photo and a passing checklist: grade counts per label."""
    from training.metrics import softmax

    try:
        x = grader.decode(back, view="back").x
    except (PhotogradeError, OSError) as e:
        raise BundleEvalError(f"--back {back}: {e}") from None
    _, shell, _ = grader.run_vision(x[None])
    shell_p = softmax(shell, grader.temperatures["shell"])[0]
    counts: dict[str, Counter] = defaultdict(Counter)
    for s in samples:
        if s.part != "screen":
            continue
        cracked = s.allowed[CONDITIONS["screen"].index("cracked")]
        label = ("not_cracked" if not cracked else "cracked" if sum(s.allowed) == 1
                 else "unknown")
        parts = {"screen": probs[(s.device_id, "screen")], "shell": shell_p}
        counts[label][decided_grade(grader.policy, parts, [], USER_BATTERY)] += 1
    return {"back": str(back), "checklist": {"checks": {c: True for c in CHECKS},
                                             "battery_health_pct": USER_BATTERY},
            "back_condition": CONDITIONS["shell"][int(shell_p.argmax())],
            "counts": {k: dict(v) for k, v in counts.items()}}


def served_grades(grader: Grader, manifests: list[Manifest], progress: bool = True
                  ) -> dict[str, Any]:
    """The grade the service gives every device with both photos and a checklist (labelled or
    not): how many devices and the count per grade."""
    rows = [r for m in manifests for r in m.rows
            if r.front_path and r.back_path and r.device_info() is not None]
    counts = dict.fromkeys(grader.policy.grades, 0)
    for r in tqdm(rows, desc="served grades", unit="device", disable=not progress):
        info = r.device_info()
        assert r.front_path and r.back_path and info is not None
        counts[grader.grade(r.front_path, r.back_path, info).grade] += 1
    return {"devices": len(rows), "counts": counts}


def evaluate_bundle(bundle: str | Path, manifests: list[str | Path], out_dir: str | Path, *,
                    int8: bool = False, back: Path | None = None, threads: int | None = None,
                    worst: int = 16, batch_size: int = 16, progress: bool = True,
                    served: bool = False) -> dict[str, Any]:
    """Evaluate the bundle on the manifests; write ``metrics.json`` and ``report.md``;
    ``served``: also the grades as served of every device (``served_grades``)."""
    from training.manifest import load_manifest
    from training.samples import samples_from
    from training.vision_eval import evaluate_heads, json_safe, report

    grader = Grader(bundle, int8=int8, threads=threads)
    loaded = [load_manifest(m) for m in manifests]
    samples = samples_from(loaded)
    if not samples:
        raise BundleEvalError("no labelled photos in the manifest(s)")
    logits = bundle_logits(grader, samples, batch_size, progress)
    allowed = np.array([s.allowed for s in samples], bool)
    temps = dict(grader.temperatures)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    m = grader.manifest
    result: dict[str, Any] = {
        "bundle": str(bundle), "bundle_version": m.bundle_version, "vision_file":
        grader.vision_file, "manifests": [str(p) for p in manifests],
        "model": {"backbone": m.vision.backbone, "img_size": m.vision.input_size,
                  "temperatures": temps}}
    result |= evaluate_heads(samples, logits, allowed, temps, out, worst)
    result["by_source"] = _by_source(samples, logits, allowed, temps, _sources(loaded), out)
    probs = _part_probs(samples, logits, temps)
    result["grades"] = _grades(grader, loaded, probs)
    if back is not None:
        result["user_grades"] = _user_grades(grader, samples, probs, Path(back))
    if served:
        result["served_grades"] = served_grades(grader, loaded, progress)
    (out / "metrics.json").write_text(json.dumps(json_safe(result), indent=2))
    (out / "report.md").write_text(report(result, {"backbone": m.vision.backbone,
                                                   "img_size": m.vision.input_size}))
    return result
