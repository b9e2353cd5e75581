"""``photograde train fusion``: fit the fusion layer on labelled grades.

Vision probabilities come from photos the vision model did not train on: when a manifest is
one the vision run trained on, only the devices of that run's validation split are used (read
from the run directory), so the fusion layer does not learn from over-confident training
predictions. The fit is scored by 5-fold cross-validation against the policy alone.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.metrics import cohen_kappa_score, f1_score
from sklearn.model_selection import KFold

from fusion.model import fit_fusion, policy_distribution
from fusion.policy import load_policy
from training.image_cache import load_images
from training.manifest import DatasetError, ManifestRow, load_manifest
from training.metrics import softmax
from training.vision_run import load_run, predict_logits, validation_devices
from vision.conditions import PART_VIEW, PARTS

log = logging.getLogger("photograde.fusion")


def held_out_rows(manifests: list[str], vision_run: str | Path, vision_config: dict[str, Any],
                  policy) -> tuple[list[ManifestRow], int]:
    """Rows with a grade and both photos, minus the vision run's training devices (its
    validation split is read from the run)."""
    tc = vision_config["train_config"]
    trained_on = {str(Path(m).resolve()) for m in tc["manifests"]}
    rows, dropped = [], 0
    for m in manifests:
        manifest = load_manifest(m, policy)
        keep = {r.device_id for r in manifest.rows}
        if str(Path(m).resolve()) in trained_on and not tc.get("val_manifests"):
            keep = validation_devices(vision_run, vision_config, manifest)
        for r in manifest.rows:
            if r.device_id not in keep:
                dropped += 1
            elif r.grade and r.front_path and r.back_path and r.screen is not None:
                rows.append(r)
    return rows, dropped


def _photo(row: ManifestRow, view: str) -> Path:
    """The row's photo of ``view``; rows without it cannot be scored."""
    path = row.photo(view)
    if path is None:
        raise DatasetError(f"device {row.device_id}: no {view} photo")
    return path


def _grade(row: ManifestRow) -> str:
    """The row's true grade (held_out_rows keeps only rows that have one)."""
    if row.grade is None:
        raise DatasetError(f"device {row.device_id}: no grade")
    return row.grade


def vision_probabilities(run_dir: str | Path, rows: list[ManifestRow], cache_dir=None,
                         device: str = "cpu") -> tuple[np.ndarray, np.ndarray]:
    """Calibrated screen (front) and shell (back) probabilities, (N, 4) each."""
    model, config, temps = load_run(run_dir)
    size = config["img_size"]
    out = []
    for part in PARTS:
        view = PART_VIEW[part]
        images = load_images([_photo(r, view) for r in rows], size, cache_dir, workers=2,
                             progress=False)
        logits = predict_logits(model, images, [part] * len(rows), device=device)
        out.append(softmax(logits, temps[part]))
    return out[0], out[1]


def _scores(p: np.ndarray, y: np.ndarray) -> dict[str, float]:
    pred = p.argmax(1)
    return {"nll": float(-np.mean(np.log(np.clip(p[np.arange(len(y)), y], 1e-12, None)))),
            "accuracy": float((pred == y).mean()),
            "macro_f1": float(f1_score(y, pred, average="macro", zero_division=0)),
            "qwk": float(cohen_kappa_score(y, pred, weights="quadratic"))}


def train_fusion(manifests: list[str], vision_run: str | Path, tabular_run: str | Path | None,
                 out: str | Path, grading: str | None = None, cache_dir=None,
                 seed: int = 0) -> dict[str, Any]:
    out = Path(out)
    policy = load_policy(grading)
    _, vision_config, _ = load_run(vision_run)
    rows, dropped = held_out_rows(manifests, vision_run, vision_config, policy)
    if len(rows) < 10:
        raise DatasetError(f"only {len(rows)} usable rows (need a grade, both photos and "
                           f"devices the vision run did not train on; {dropped} were its "
                           "training devices)")
    screen, shell = vision_probabilities(vision_run, rows, cache_dir)
    p_policy = np.stack([policy_distribution(policy, s, h, r.failed_checks,
                                             r.battery_health_pct)
                         for s, h, r in zip(screen, shell, rows, strict=True)])
    y = np.array([policy.rank(_grade(r)) for r in rows])
    oof = np.zeros_like(p_policy)
    for tr, te in KFold(5, shuffle=True, random_state=seed).split(p_policy):
        oof[te] = fit_fusion(p_policy[tr], y[tr], policy.grades).apply(p_policy[te])
    model = fit_fusion(p_policy, y, policy.grades)
    model.metrics = {"rows": len(rows), "excluded_vision_training_devices": dropped,
                     "policy_only": _scores(p_policy / p_policy.sum(1, keepdims=True), y),
                     "fused_5fold": _scores(oof, y)}
    out.mkdir(parents=True, exist_ok=True)
    (out / "fusion.json").write_text(json.dumps({
        **model.to_dict(), "grading": policy.to_dict(), "vision_run": str(vision_run),
        "tabular_run": str(tabular_run) if tabular_run else None,
        "manifests": [str(m) for m in manifests]}, indent=2))
    log.info("fusion: a=%.3f b=%s; policy only %s; fused (5-fold) %s", model.a,
             np.round(model.b, 3).tolist(),
             *({k: round(v, 3) for k, v in model.metrics[m].items()}
               for m in ("policy_only", "fused_5fold")))
    return model.to_dict()
