"""``photograde train return-risk``: the return-risk model trained on what a bundle sees.

A listed device comes back mostly when it is worse than its listing said. The checklist and
the announced grade alone cannot see that; the bundle's condition model can. This command grades
every device of a history (a manifest with photos, ``refurbisher_grade``, ``returned``,
``listed_at``) through the bundle as the service does (ONNX Runtime: decoding, the photo check's
model, vision, fusion), trains the return-risk model on the facts plus that evidence and the
seller's trust at listing time (:mod:`tabular.evidence`, :mod:`training.tabular_history`),
scores it on a held-out history (``--test``: ROC-AUC, PR-AUC, calibration) and, with
``--install``, writes it into the bundle (new hashes and version).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from fusion.bundle import TabularInfo, load_manifest, write_new_version
from fusion.grade import grade_distribution
from serve.runtime import Grader, evidence
from tabular.evidence import Evidence
from tabular.features import failed_checks
from tabular.runtime import META_FILE, ONNX_FILE, ReturnRiskModel
from training.manifest import DatasetError, ManifestRow
from vision.photocheck import PhotoCheckConfig


def device_evidence(g: Grader, rows: list[ManifestRow], progress: bool = True
                    ) -> dict[str, Evidence]:
    """Each device's evidence (without the trust score), graded as the service grades it."""
    out: dict[str, Evidence] = {}
    cfg = PhotoCheckConfig()
    for r in tqdm(rows, desc="grading the history", unit="device", disable=not progress):
        if r.front_path is None or r.back_path is None:
            continue
        photos = [g.decode(r.front_path, measured=True, view="front"),
                  g.decode(r.back_path, measured=True, view="back")]
        screen, shell, _ = g.run_vision(np.stack([p.x for p in photos]))
        probs = g.part_probs(screen[0], shell[1])
        verdicts = g.check_photos(photos, ["front", "back"], cfg) if g.photocheck else []
        p = grade_distribution(g.policy, g.fusion, probs, failed_checks(r),
                               r.battery_health_pct)
        out[r.device_id] = evidence(probs, p, verdicts)
    return out


def held_out_scores(run: Path, g: Grader, test: Path, progress: bool) -> dict[str, Any]:
    """The trained model (``run``: a run or a bundle directory) on another history: ROC-AUC,
    PR-AUC, Brier against the training base rate, calibration."""
    from training.tabular_train import feature_rows, gaps_of, held_out_metrics, labelled_rows

    rows = labelled_rows([test], g.policy)
    feats = feature_rows(rows, g.policy, device_evidence(g, rows, progress))
    y = np.array([bool(r.returned) for r in rows], dtype=np.int64)
    model = ReturnRiskModel.from_dir(run)
    base = float(json.loads((run / META_FILE).read_text())["data"]["base_rate"])
    return {"manifest": str(test), **held_out_metrics(y, model.predict_features(feats), base,
                                                      gaps_of(rows, g.policy))}


def evaluate_return_risk(bundle: Path, manifest: Path, progress: bool = True
                         ) -> dict[str, Any]:
    """``evaluate return-risk``: the bundle's own return-risk model on a history, graded
    through the bundle (:func:`held_out_scores`)."""
    return held_out_scores(bundle, Grader(bundle, threads=None), manifest, progress)


def train_return_risk(bundle: Path, manifests: list[str | Path], out: Path, *,
                      test: Path | None = None, install: bool = False, seed: int = 0,
                      progress: bool = True) -> dict[str, Any]:
    """Grade the histories through ``bundle``, train, score on ``test``, optionally install."""
    from training.tabular_train import labelled_rows, train_tabular

    g = Grader(bundle, threads=None)
    rows = [r for m in manifests for r in labelled_rows([m], g.policy)]
    ev = device_evidence(g, rows, progress)
    summary = train_tabular(list(manifests), out, seed=seed, evidence=ev)
    if test is not None:
        summary["metrics"]["held_out_history"] = held_out_scores(out, g, test, progress)
        (out / META_FILE).write_text(json.dumps(summary, indent=2) + "\n")
    if install:
        summary["bundle_version"] = install_into(bundle, out)
    return summary


def install_into(bundle: Path, run: Path) -> str:
    """Copy the return-risk model of ``run`` into ``bundle``; returns the new version."""
    manifest = load_manifest(bundle, verify_hashes=True)
    meta = json.loads((run / META_FILE).read_text())
    if meta["scale"]["grades"] != manifest.grading.model_dump()["scale"]["grades"]:
        raise DatasetError(f"{run}: trained on another grade scale than {bundle}")
    for name in (ONNX_FILE, META_FILE):
        shutil.copy(run / name, bundle / name)
    manifest.tabular = TabularInfo.model_validate(meta)
    return write_new_version(bundle, manifest)
