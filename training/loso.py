"""Leave-one-source-out evaluation of the screen model on real photos (cracked vs not).

K-fold CV flatters a model when every fold shares the pool's look (the same web sources, the
same watermarks, the same framing). Here each source is held out in turn: the model trains on
the other sources (plus any extra manifests, e.g. synthetic devices) and is scored on the
held-out source only. The frozen-feature logistic-regression probe is measured on the same
splits, and so are three cheap combinations: test-time augmentation (the mean of the photo and
its mirror image), the mean of the probe's and the fine-tuned model's probabilities, and
``served``: the fine-tuned model with the cracked-screen probe blended in as the service does
(:func:`vision.photocheck.blend_cracked`; the probe fitted by
:func:`training.photocheck_train.fit_cracked` on the training sources' photos and the extra
manifests' labelled fronts, weight ``CRACKED_WEIGHT``).

A photo's source is the manifest's ``source`` column, or else its file name up to the first
``-`` (the shared real-screens set names files ``<source>-<hash>.jpg``).
"""

from __future__ import annotations

import dataclasses
import json
import logging
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from training.cv import (
    _write_fold,
    extra_fronts,
    probe_features,
    served_blend,
    served_probe,
)
from training.device import resolve_device
from training.image_cache import load_images
from training.manifest import Manifest, load_manifest, name_source
from training.metrics import cracked_scores, cracked_truth
from training.samples import Sample, samples_from
from training.train_config import TrainConfig
from training.vision_run import RunDir, cracked_probability, load_run
from training.vision_train import train_vision
from vision.conditions import CONDITIONS
from vision.errors import PhotogradeError

log = logging.getLogger("photograde.cv")
#: scored on every held-out source
METHODS = ("probe", "finetune", "finetune_tta", "ensemble", "served")


def source_of(sample: Sample, sources: dict[str, str]) -> str:
    """The manifest's source for this photo, else its file name up to the first '-'."""
    return sources.get(sample.device_id) or name_source(sample.path)


def _labelled(manifest: Manifest) -> tuple[list[Sample], np.ndarray, str]:
    samples = samples_from([manifest])
    parts = {s.part for s in samples}
    if len(parts) != 1:
        raise PhotogradeError(f"{manifest.path}: leave-one-source-out needs a single-view "
                              "manifest")
    part = parts.pop()
    allowed = np.array([s.allowed for s in samples], bool)
    truth = cracked_truth(allowed, CONDITIONS[part].index("cracked"))
    keep = truth >= 0
    return [s for s, k in zip(samples, keep, strict=True) if k], truth[keep], part


def _probe(feats: np.ndarray, truth: np.ndarray, train: np.ndarray, test: np.ndarray
           ) -> np.ndarray:
    clf = make_pipeline(StandardScaler(),
                        LogisticRegression(max_iter=5000, class_weight="balanced"))
    clf.fit(feats[train], truth[train])
    return clf.predict_proba(feats[test])[:, 1]


def _finetune(samples: list[Sample], train: np.ndarray, test: np.ndarray, part: str,
              out: Path, base: TrainConfig, extra: list[str], device: str
              ) -> tuple[np.ndarray, np.ndarray]:
    """P(cracked) on the held-out photos, plain and with mirror-image test-time augmentation."""
    train_m = _write_fold([samples[i] for i in train], out / "train.csv")
    cfg = dataclasses.replace(base, manifests=[str(train_m), *extra], out=str(out / "run"),
                              val_manifests=[], resume=RunDir(out / "run").has_checkpoint())
    train_vision(cfg)
    model, config, temps = load_run(cfg.out)
    images = load_images([samples[i].path for i in test], config["img_size"], base.cache_dir,
                         progress=False)
    plain = cracked_probability(model, temps, images, part, device)
    mirrored = cracked_probability(model, temps, np.ascontiguousarray(images[:, :, ::-1]), part,
                                   device)
    return plain, (plain + mirrored) / 2


def leave_one_source_out(manifest: str | Path, out: str | Path, base: TrainConfig,
                         extra_manifests: list[str] | None = None) -> dict[str, Any]:
    """Train on all sources but one, score on that one, for each source; writes loso.json."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    loaded = load_manifest(manifest)
    samples, truth, part = _labelled(loaded)
    sources = {r.device_id: r.source or "" for r in loaded.rows}
    src = np.array([source_of(s, sources) for s in samples])
    names = sorted(set(src))
    if len(names) < 2:
        raise PhotogradeError(f"{manifest}: only one source ({names[0]}); "
                              "leave-one-source-out needs two or more")
    device = resolve_device(base.device)
    feats = probe_features([s.path for s in samples], base.backbone, base.img_size,
                           base.cache_dir, device)
    # the extra fronts feed the cracked-screen probe, which only the screen has
    extra = extra_fronts((extra_manifests or []) if part == "screen" else [], base, device)
    result: dict[str, Any] = {"manifest": str(manifest), "part": part,
                              "extra_manifests": extra_manifests or [],
                              "train_config": dataclasses.asdict(base), "splits": {}}
    for held in names:
        test, train = np.flatnonzero(src == held), np.flatnonzero(src != held)
        if len(set(truth[test])) < 2:
            log.warning("source %s has one class only: skipped", held)
            continue
        p_probe = _probe(feats, truth, train, test)
        p_ft, p_tta = _finetune(samples, train, test, part, out / f"without-{held}", base,
                                extra_manifests or [], device)
        t = truth[test]
        p_served = (served_blend(p_ft, served_probe(feats, truth, train, test, extra))
                    if part == "screen" else p_ft)  # the probe is the screen's only
        split: dict[str, Any] = {
            "train_sources": [n for n in names if n != held], "n_train": len(train),
            "probe": cracked_scores(t, p_probe), "finetune": cracked_scores(t, p_ft),
            "finetune_tta": cracked_scores(t, p_tta),
            "ensemble": cracked_scores(t, (p_probe + p_tta) / 2),
            "served": cracked_scores(t, p_served)}
        result["splits"][held] = split
        for name in METHODS:
            log.info("held out %s, %s: ROC-AUC %.4f, balanced accuracy %.4f", held, name,
                     split[name]["roc_auc"], split[name]["balanced_accuracy"])
    (out / "loso.json").write_text(json.dumps(result, indent=2))
    return result
