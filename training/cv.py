"""``photograde cv vision``: k-fold cross-validation of the screen model on a single-view
manifest (e.g. real photos labelled cracked / not cracked), with the frozen-feature
logistic-regression probe measured on the same folds as the baseline.

Each fold trains on the other folds (early stopping and calibration on an inner validation
split of them, never on the held-out fold) and is scored on its held-out fold: ROC-AUC of
cracked vs the rest, and balanced accuracy with ``P(cracked) >= 0.5``. For screens, ``served``
scores what the service answers: the fine-tuned model with the photo check's cracked-screen
probe blended in (:func:`served_probe`, :func:`served_blend`).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
from pathlib import Path
from typing import Any

import numpy as np
import torch
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import StratifiedKFold
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from training.device import resolve_device
from training.image_cache import load_images
from training.manifest import DatasetError, load_manifest, write_manifest
from training.metrics import cracked_scores, cracked_truth
from training.samples import Sample, samples_from
from training.train_config import TrainConfig
from training.vision_run import RunDir, cracked_probability, load_run
from training.vision_train import train_vision
from vision.conditions import CONDITIONS, format_condition_set
from vision.model import build_model
from vision.preprocess import normalize

log = logging.getLogger("photograde.cv")


def _write_fold(samples: list[Sample], path: Path) -> Path:
    rows = [{"device_id": s.device_id, f"{'front' if s.part == 'screen' else 'back'}_path":
             os.path.relpath(s.path, path.parent),
             f"{s.part}_condition": format_condition_set(
                 frozenset(c for c, ok in zip(CONDITIONS[s.part], s.allowed, strict=True)
                           if ok), s.part)} for s in samples]
    part = samples[0].part
    view = "front" if part == "screen" else "back"
    return write_manifest(path, rows, ("device_id", f"{view}_path", f"{part}_condition"))


@torch.no_grad()
def probe_features(paths: list[Path], backbone: str, img_size: int, cache_dir: str | None,
                   device: str, batch_size: int = 64) -> np.ndarray:
    """Pooled features of the frozen ImageNet-pretrained backbone (the probe's input)."""
    model, source = build_model(backbone, pretrained=True, img_size=img_size)
    log.info("probe features: %s (%s) at %d px", backbone, source, img_size)
    model.to(device).eval()
    images = load_images(paths, img_size, cache_dir, workers=2, progress=False)
    feats = []
    for i in range(0, len(images), batch_size):
        x = torch.from_numpy(np.stack([normalize(im, model.preprocess)
                                       for im in images[i:i + batch_size]])).to(device)
        fmap = model.forward_features_map(x)
        feats.append(model.backbone.forward_head(fmap, pre_logits=True).float().cpu().numpy())
    return np.concatenate(feats)


def cross_validate(manifest: str | Path, out: str | Path, base: TrainConfig, folds: int = 5,
                   extra_manifests: list[str] | None = None, probe: bool = True,
                   finetune: bool = True) -> dict[str, Any]:
    """Score the probe and the fine-tuned model on each held-out fold (and, with both,
    ``served``: the fine-tuned model with the cracked-screen probe blended in, as the
    service does); writes ``cv.json``."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    samples = samples_from([load_manifest(manifest)])
    parts = {s.part for s in samples}
    if len(parts) != 1:
        raise DatasetError(f"{manifest}: cross-validation needs a single-view manifest "
                         f"(found photos for {', '.join(sorted(parts))})")
    part = parts.pop()
    allowed = np.array([s.allowed for s in samples], bool)
    truth = cracked_truth(allowed, CONDITIONS[part].index("cracked"))
    keep = truth >= 0
    samples, truth = [s for s, k in zip(samples, keep, strict=True) if k], truth[keep]
    if len(set(truth)) < 2:
        raise DatasetError(f"{manifest}: needs both cracked and not-cracked photos")
    skf = StratifiedKFold(folds, shuffle=True, random_state=base.seed)
    splits = list(skf.split(np.zeros(len(truth)), truth))
    result: dict[str, Any] = {"manifest": str(manifest), "part": part, "folds": folds,
                              "n": len(samples), "cracked": int(truth.sum()),
                              "extra_manifests": extra_manifests or [],
                              "train_config": dataclasses.asdict(base)}
    device = resolve_device(base.device)
    feats = None
    if probe:
        feats = probe_features([s.path for s in samples], base.backbone, base.img_size,
                               base.cache_dir, device)
        result["probe"] = _probe_folds(feats, truth, splits)
        log.info("probe: %s", _line(result["probe"]))
    if finetune:
        oof = _finetune_folds(samples, truth, splits, part, out, base, extra_manifests or [],
                              device)
        result["finetune"] = _folds_of(truth, splits, oof)
        log.info("fine-tuned: %s", _line(result["finetune"]))
        if feats is not None and part == "screen":
            extra = extra_fronts(extra_manifests or [], base, device)
            served = np.zeros(len(samples))
            for train_idx, test_idx in splits:
                served[test_idx] = served_blend(oof[test_idx], served_probe(
                    feats, truth, train_idx, test_idx, extra))
            result["served"] = _folds_of(truth, splits, served)
            log.info("as served: %s", _line(result["served"]))
    (out / "cv.json").write_text(json.dumps(result, indent=2))
    return result


def _probe_folds(feats: np.ndarray, truth: np.ndarray, splits: list) -> dict[str, Any]:
    oof = np.zeros(len(truth))
    for train_idx, test_idx in splits:
        clf = make_pipeline(StandardScaler(),
                            LogisticRegression(max_iter=5000, class_weight="balanced"))
        clf.fit(feats[train_idx], truth[train_idx])
        oof[test_idx] = clf.predict_proba(feats[test_idx])[:, 1]
    return _folds_of(truth, splits, oof)


def _finetune_folds(samples: list[Sample], truth: np.ndarray, splits: list, part: str,
                    out: Path, base: TrainConfig, extra: list[str], device: str) -> np.ndarray:
    """The fine-tuned model's out-of-fold P(cracked), one training per fold."""
    oof = np.zeros(len(samples))
    for k, (train_idx, test_idx) in enumerate(splits):
        fold_dir = out / f"fold{k + 1}"
        train_m = _write_fold([samples[i] for i in train_idx], fold_dir / "train.csv")
        _write_fold([samples[i] for i in test_idx], fold_dir / "test.csv")
        cfg = dataclasses.replace(base, manifests=[str(train_m), *extra],
                                  out=str(fold_dir / "run"), val_manifests=[],
                                  resume=RunDir(fold_dir / "run").has_checkpoint())
        train_vision(cfg)
        model, config, temps = load_run(cfg.out)
        test_s = [samples[i] for i in test_idx]
        images = load_images([s.path for s in test_s], config["img_size"], base.cache_dir,
                             progress=False)
        oof[test_idx] = cracked_probability(model, temps, images, part, device)
        log.info("fold %d/%d: %s", k + 1, len(splits),
                 _line(cracked_scores(truth[test_idx], oof[test_idx])))
    return oof


def _folds_of(truth: np.ndarray, splits: list, oof: np.ndarray) -> dict[str, Any]:
    """Per-fold scores of out-of-fold probabilities, their mean and spread, pooled."""
    return _aggregate([cracked_scores(truth[t], oof[t]) for _, t in splits], truth, oof)


def extra_fronts(extra: list[str], base: TrainConfig, device: str
                 ) -> tuple[np.ndarray, np.ndarray]:
    """Probe features and cracked labels (1, 0, -1 unknown) of the extra manifests' fronts."""
    from training.photocheck_data import front_cracked, manifest_photos

    paths = [p for m in extra for p in manifest_photos(m, "front")]
    if not paths:
        return np.zeros((0, 0), np.float32), np.zeros(0, np.int8)
    feats = probe_features(paths, base.backbone, base.img_size, base.cache_dir, device)
    return feats, np.concatenate([front_cracked(m) for m in extra])


def served_probe(feats: np.ndarray, truth: np.ndarray, train: np.ndarray, test: np.ndarray,
                 extra: tuple[np.ndarray, np.ndarray]) -> np.ndarray:
    """P(cracked) of the ``test`` photos by the cracked-screen probe as ``train photocheck``
    fits it (:func:`training.photocheck_train.fit_cracked`) on the ``train`` photos and the
    extra labelled fronts, standardised on the photos it learns from."""
    from training.photocheck_train import fit_cracked

    synth, synth_y = extra
    if not len(synth):
        synth = np.zeros((0, feats.shape[1]), feats.dtype)
    scaler = StandardScaler().fit(np.concatenate([feats[train], synth[synth_y >= 0]]))
    coef, intercept = fit_cracked(scaler.transform(feats[train]), truth[train],
                                  scaler.transform(synth) if len(synth) else synth, synth_y)
    z = scaler.transform(feats[test]) @ coef + intercept
    return 1 / (1 + np.exp(-z))


def served_blend(p_model: np.ndarray, p_probe: np.ndarray) -> np.ndarray:
    """The served P(cracked): the probe blended into the model's as the service does
    (:func:`vision.photocheck.blend_cracked` at the default weight; binary here, cracked or
    not, which is all the blend changes)."""
    from training.photocheck_train import CRACKED_WEIGHT
    from vision.photocheck import blend_cracked

    return np.array([blend_cracked(np.array([1 - p, p]), q, CRACKED_WEIGHT)[-1]
                     for p, q in zip(p_model, p_probe, strict=True)])


def _aggregate(per_fold: list[dict], truth: np.ndarray, oof: np.ndarray) -> dict[str, Any]:
    auc = [f["roc_auc"] for f in per_fold]
    ba = [f["balanced_accuracy"] for f in per_fold]
    return {"roc_auc_mean": float(np.mean(auc)), "roc_auc_std": float(np.std(auc)),
            "balanced_accuracy_mean": float(np.mean(ba)),
            "balanced_accuracy_std": float(np.std(ba)),
            "pooled": cracked_scores(truth, oof), "per_fold": per_fold}


def _line(r: dict[str, Any]) -> str:
    if "roc_auc_mean" not in r:
        return f"ROC-AUC {r['roc_auc']:.4f}, balanced accuracy {r['balanced_accuracy']:.4f}"
    return (f"ROC-AUC {r['roc_auc_mean']:.4f} ± {r['roc_auc_std']:.4f}, balanced accuracy "
            f"{r['balanced_accuracy_mean']:.4f} ± {r['balanced_accuracy_std']:.4f}")
