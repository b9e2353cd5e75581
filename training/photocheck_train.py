"""Train the photo check's learned part and add it to a bundle: ``photograde train photocheck``.

The learned part answers "is there a phone?" and "front or back?". Fine-tuned condition
features do not: trained to grade glass, they call any real-looking photo a phone. The
frozen ImageNet ``tf_efficientnet_lite0`` still knows a temple from a phone, so the check runs
it (exported to ONNX, pooled features) and fits two logistic regressions on its features
(:class:`vision.photocheck.SideHeads`). Data: :mod:`training.photocheck_data`.
The figures written to the manifest come from :mod:`training.photocheck_eval`.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
from tqdm import tqdm

from fusion.bundle import (
    PHOTOCHECK_FILE,
    PHOTOCHECK_HEADS_FILE,
    VISION_INPUT,
    PhotoCheckInfo,
    load_manifest,
    write_new_version,
)
from training import photocheck_data as data
from vision.photocheck import PhotoStats, SideHeads, measure
from vision.preprocess import (
    PreprocessConfig,
    normalize,
    open_image_sized,
    resize_rgb,
)

log = logging.getLogger("photograde.training")
BACKBONE = "tf_efficientnet_lite0"
POOLED = "pooled"
Source = Path | bytes


def export_backbone(path: Path, size: int) -> PreprocessConfig:
    """The frozen ImageNet backbone, pooled features out, as ONNX (dynamic batch)."""
    import torch

    from training.export import freeze_same_padding
    from vision.weights import create_backbone, pretrained_cfg

    net, source = create_backbone(BACKBONE, allow_download=False)
    model: Any = net  # a timm model: reset_classifier is beyond nn.Module's type
    cfg = pretrained_cfg(model)
    model.reset_classifier(0)
    model.eval()
    freeze_same_padding(model, size)
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        torch.onnx.export(model, (torch.zeros(2, 3, size, size),), str(path), dynamo=False,
                          input_names=[VISION_INPUT], output_names=[POOLED], opset_version=17,
                          dynamic_axes={VISION_INPUT: {0: "batch"}, POOLED: {0: "batch"}})
    log.info("photo check: %s (%s weights) exported at %d px", BACKBONE, source, size)
    return PreprocessConfig(img_size=size, mean=tuple(cfg["mean"]), std=tuple(cfg["std"]))


@dataclass
class Featured:
    """Photos run through the check: pooled features and measured stats, row by row."""

    pooled: np.ndarray
    stats: list[PhotoStats]


def featurize(sess: ort.InferenceSession, pre: PreprocessConfig, sources: Sequence[Source],
              desc: str, batch: int = 16, progress: bool = True) -> Featured:
    """Decode each photo as the service does, measure it and run the backbone."""
    if not sources:
        return Featured(np.zeros((0, 0), np.float32), [])
    pooled, stats = [], []
    bar = tqdm(total=len(sources), desc=desc, unit="photo", disable=not progress, leave=False)
    for i in range(0, len(sources), batch):
        opened = [open_image_sized(s, draft_size=pre.img_size) for s in sources[i:i + batch]]
        images = [im for im, _ in opened]
        stats += [measure(im).model_copy(update={"width": size[0], "height": size[1]})
                  for im, size in opened]
        x = np.stack([normalize(resize_rgb(im, pre), pre) for im in images])
        pooled.append(sess.run(None, {VISION_INPUT: x.astype(np.float32)})[0])
        bar.update(len(images))
    bar.close()
    return Featured(np.concatenate(pooled), stats)


def fit_heads(phone: Sequence[np.ndarray], not_phone: Sequence[np.ndarray],
              fronts: Sequence[np.ndarray], backs: Sequence[np.ndarray],
              c: float = 0.01, c_side: float = 0.001) -> SideHeads:
    """Two logistic regressions on standardised features. Each list holds groups of rows
    (e.g. real fronts, synthetic fronts) that weigh the same in total, so that no source
    dominates a class (and "real-looking" cannot stand for "front")."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    phone, not_phone, fronts, backs = ([g for g in groups if len(g)]
                                       for groups in (phone, not_phone, fronts, backs))
    everything = np.concatenate([*phone, *not_phone])
    scaler = StandardScaler().fit(everything)

    def fit(pos: Sequence[np.ndarray], neg: Sequence[np.ndarray], c: float) -> LogisticRegression:
        groups = [*pos, *neg]
        x = scaler.transform(np.concatenate(groups))
        y = np.concatenate([np.full(len(g), int(k < len(pos))) for k, g in enumerate(groups)])
        per_class = {1: len(pos), 0: len(neg)}
        w = np.concatenate([np.full(len(g), 1 / (len(g) * per_class[int(k < len(pos))]))
                            for k, g in enumerate(groups)])
        return LogisticRegression(C=c, max_iter=5000).fit(x, y, sample_weight=w * len(x))

    ph, bk = fit(phone, not_phone, c), fit(backs, fronts, c_side)
    return SideHeads({"mean": scaler.mean_, "scale": scaler.scale_,
                      "phone_coef": ph.coef_[0], "phone_intercept": ph.intercept_,
                      "back_coef": bk.coef_[0], "back_intercept": bk.intercept_})


#: The cracked-screen probe: L2 strength (scikit-learn's C; strong, so that the probe stays
#: close to what ImageNet features say about cracks rather than what one source looks like)
#: and the synthetic fronts' share of the real ones' total weight.
CRACKED_C = 0.01
CRACKED_SYNTH_SHARE = 0.5
#: The probe's default weight in the served screen P(cracked) (docs/training.md: what it
#: gains across real sources and costs on the synthetic held-out set).
CRACKED_WEIGHT = 0.3


def fit_cracked(real: np.ndarray, real_y: np.ndarray, synth: np.ndarray, synth_y: np.ndarray,
                c: float = CRACKED_C, synth_share: float = CRACKED_SYNTH_SHARE
                ) -> tuple[np.ndarray, np.ndarray]:
    """(coef, intercept) of the cracked-screen probe: a class-balanced logistic regression on
    standardised features of front photos (labels 1 cracked, 0 not, -1 unknown: left out).
    The synthetic fronts weigh ``synth_share`` of the real ones in total: real photos are what
    it is for, the synthetic ones keep it from calling the generator's heavy scratches cracks."""
    from sklearn.linear_model import LogisticRegression

    real, real_y = real[real_y >= 0], real_y[real_y >= 0]
    synth, synth_y = synth[synth_y >= 0], synth_y[synth_y >= 0]
    w_synth = synth_share * len(real) / len(synth) if len(synth) and len(real) else 1.0
    x = np.concatenate([real, synth])
    y = np.concatenate([real_y, synth_y]).astype(int)
    w = np.concatenate([np.ones(len(real)), np.full(len(synth), w_synth)])
    clf = LogisticRegression(C=c, max_iter=5000, class_weight="balanced")
    clf.fit(x, y, sample_weight=w)
    return clf.coef_[0], clf.intercept_


@dataclass
class CheckData:
    """The photo check's training and evaluation sets, featurized; ``*_cracked``: each front's
    screen label (1 cracked, 0 not, -1 unknown)."""

    real_fronts: Featured
    real_sources: list[str]
    real_cracked: np.ndarray
    synth_fronts: Featured
    synth_cracked: np.ndarray
    synth_backs: Featured
    empty: Featured
    screens: Featured
    natural: Featured


def build_data(sess: ort.InferenceSession, pre: PreprocessConfig, real: str | Path | None,
               synth: str | Path, n_synth: int = 600, n_empty: int = 400, n_screens: int = 300,
               n_natural: int = 400, seed: int = 0, progress: bool = True) -> CheckData:
    """Featurize the training sets (see :mod:`training.photocheck_data`)."""
    def run(sources: Sequence[Source], desc: str) -> Featured:
        return featurize(sess, pre, sources, desc, progress=progress)

    return CheckData(
        real_fronts=run(data.manifest_photos(real, "front") if real else [], "real fronts"),
        real_sources=data.manifest_sources(real) if real else [],
        real_cracked=data.front_cracked(real) if real else np.zeros(0, np.int8),
        synth_fronts=run(data.manifest_photos(synth, "front", n_synth, seed), "synthetic fronts"),
        synth_cracked=data.front_cracked(synth, n_synth, seed),
        synth_backs=run(data.manifest_photos(synth, "back", n_synth, seed), "synthetic backs"),
        empty=run(data.empty_scenes(n_empty, seed + 11), "scenes without a phone"),
        screens=run(data.screen_images(n_screens, seed + 21), "screens without a phone"),
        natural=run(data.crops(data.train_natural(), n_natural, seed + 3), "natural photos"))


def train_heads(d: CheckData, keep_real: np.ndarray | None = None, cracked: bool = True
                ) -> SideHeads:
    """The heads on ``d`` (real fronts restricted to ``keep_real`` when given); ``cracked``:
    with the cracked-screen probe (:func:`fit_cracked`, on the same standardised features)."""
    real, real_y = d.real_fronts.pooled, d.real_cracked
    if keep_real is not None:
        real, real_y = real[keep_real], real_y[keep_real]
    fronts = [real, d.synth_fronts.pooled]
    heads = fit_heads(phone=[*fronts, d.synth_backs.pooled],
                      not_phone=[d.empty.pooled, d.screens.pooled, d.natural.pooled],
                      fronts=fronts, backs=[d.synth_backs.pooled])
    labels = {*real_y.tolist(), *d.synth_cracked.tolist()} - {-1}
    if not cracked or labels != {0, 1}:  # the probe needs cracked and intact fronts
        return heads
    a = heads.arrays
    if not len(real):  # featurize gives (0, 0) for no photo
        real = np.zeros((0, len(a["mean"])))
    coef, intercept = fit_cracked((real - a["mean"]) / a["scale"], real_y,
                                  (d.synth_fronts.pooled - a["mean"]) / a["scale"],
                                  d.synth_cracked)
    return SideHeads({**a, "cracked_coef": coef, "cracked_intercept": intercept})


def add_to_bundle(bundle: Path, backbone: Path, heads: SideHeads, pre: PreprocessConfig,
                  d: CheckData, metrics: dict[str, Any], cracked_weight: float = CRACKED_WEIGHT
                  ) -> str:
    """Write the check into ``bundle`` (model, heads, manifest section, hashes, version);
    ``cracked_weight``: the cracked-screen probe's weight in the served screen probabilities
    (0 when the heads have no probe)."""
    if backbone != bundle / PHOTOCHECK_FILE:
        (bundle / PHOTOCHECK_FILE).write_bytes(backbone.read_bytes())
    heads.save(bundle / PHOTOCHECK_HEADS_FILE)
    manifest = load_manifest(bundle, verify_hashes=False)
    counts = {"real_fronts": len(d.real_fronts.stats), "synthetic_fronts":
              len(d.synth_fronts.stats), "synthetic_backs": len(d.synth_backs.stats),
              "scenes_without_phone": len(d.empty.stats),
              "screens_without_phone": len(d.screens.stats),
              "natural_photo_crops": len(d.natural.stats)}
    manifest.photocheck = PhotoCheckInfo(backbone=BACKBONE, input_size=pre.img_size,
                                         preprocess=pre.to_dict(), training_data=counts,
                                         metrics=metrics,
                                         cracked_weight=cracked_weight if heads.has_cracked
                                         else 0.0)
    return write_new_version(bundle, manifest, (PHOTOCHECK_FILE, PHOTOCHECK_HEADS_FILE))
