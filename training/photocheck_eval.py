"""How well the photo check does, on photos its heads never saw.

* Real fronts, leave one source out: the heads are refitted without that source's fronts,
  then every front of it goes through the whole check, in the front slot (it should pass) and
  in the back slot (it should be refused ``wrong_side``). Fronts under ``min_side_px`` are
  counted apart (``too_small``), as the issue asks.
* Held out from everything: synthetic fronts and backs of another generator seed, scenes
  without a phone of another seed, photographs of other packages and Debian's nature
  wallpapers, Debian's abstract wallpapers (those two when installed: ``apt install
  mate-backgrounds gnome-backgrounds``), the real fronts blurred or blacked out.
"""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort

from training import photocheck_data as data
from training.photocheck_train import CheckData, Featured, featurize, train_heads
from vision.photocheck import PhotoCheckConfig, SideHeads, Slot, check, measure
from vision.preprocess import PreprocessConfig, normalize, open_image, resize_rgb


def outcomes(f: Featured, heads: SideHeads, slot: Slot, cfg: PhotoCheckConfig) -> list[str]:
    """The check's answer for each photo in ``slot``: ``pass`` or the rejection reason."""
    scores = heads.scores(f.pooled) if len(f.stats) else []
    out = []
    for st, sc in zip(f.stats, scores, strict=True):
        r = check(st, sc, slot, cfg)
        out.append("pass" if r is None else r.reason.value)
    return out


def rate(answers: list[str], expected: str) -> dict[str, Any]:
    """Share of ``answers`` equal to ``expected``, and the breakdown."""
    n = len(answers)
    return {"n": n, "expected": expected,
            "rate": round(sum(a == expected for a in answers) / n, 4) if n else None,
            "answers": dict(Counter(answers).most_common())}


def probe_scores(heads: SideHeads, pooled: np.ndarray, truth: np.ndarray
                 ) -> dict[str, Any] | None:
    """The cracked-screen probe alone on labelled fronts: ROC-AUC and balanced accuracy at
    P(cracked) >= 0.5 (None without the probe or without both labels)."""
    from training.metrics import cracked_scores  # scikit-learn: not when the CLI is built

    known = truth >= 0
    if not heads.has_cracked or len(set(truth[known].tolist())) < 2:
        return None
    p = np.array([sc.cracked for sc in heads.scores(pooled[known])], float)
    s = cracked_scores(truth[known], p)
    return {"n": s["n"], "roc_auc": round(s["roc_auc"], 4),
            "balanced_accuracy": round(s["balanced_accuracy"], 4)}


def real_fronts_loso(d: CheckData, cfg: PhotoCheckConfig) -> dict[str, Any]:
    """Per source, heads fitted without that source: pass as fronts and refused as backs,
    and the cracked-screen probe's own scores (``cracked_probe``)."""
    sources = np.array(d.real_sources)
    out: dict[str, Any] = {}
    for source in sorted(set(d.real_sources) - {""}):
        heads = train_heads(d, keep_real=sources != source)
        held = sources == source
        f = Featured(d.real_fronts.pooled[held],
                     [s for s, k in zip(d.real_fronts.stats, held, strict=True) if k])
        small = [min(s.width, s.height) < cfg.min_side_px for s in f.stats]
        big = Featured(f.pooled[~np.array(small)], [s for s, k in zip(f.stats, small,
                                                                     strict=True) if not k])
        out[source] = {"photos": len(f.stats), "too_small": int(sum(small)),
                       "front_slot": rate(outcomes(big, heads, "front", cfg), "pass"),
                       "back_slot": rate(outcomes(big, heads, "back", cfg), "wrong_side"),
                       "cracked_probe": probe_scores(heads, f.pooled,
                                                     d.real_cracked[held])}
    return out


@dataclass
class HeldOut:
    """Evaluation sets that no head trains on."""

    synth_fronts: Featured
    synth_backs: Featured
    empty: Featured
    natural: Featured
    abstract: Featured
    blurred: Featured
    black: Featured
    natural_files: int
    abstract_files: int


def build_held_out(sess: ort.InferenceSession, pre: PreprocessConfig, real: str | Path,
                   synth_test: str | Path, n: int = 300, seed: int = 1,
                   progress: bool = True) -> HeldOut:
    def run(sources: list[Any], desc: str) -> Featured:
        return featurize(sess, pre, sources, desc, progress=progress)

    natural, abstract = data.test_natural(), data.test_natural("abstract")
    fronts = data.manifest_photos(real, "front", n, seed)
    return HeldOut(
        synth_fronts=run(data.manifest_photos(synth_test, "front", n, seed), "held-out fronts"),
        synth_backs=run(data.manifest_photos(synth_test, "back", n, seed), "held-out backs"),
        empty=run(data.empty_scenes(n // 2, seed + 12), "held-out empty scenes"),
        natural=run([*natural, *data.crops(natural, 3 * len(natural), seed + 4)],
                    "held-out natural photos"),
        abstract=run([*abstract, *data.crops(abstract, 3 * len(abstract), seed + 5)]
                     if abstract else [], "held-out abstract wallpapers"),
        blurred=run(list(data.degraded(fronts, "blurred")), "blurred real fronts"),
        black=run(list(data.degraded(fronts, "black")), "dark real fronts"),
        natural_files=len(natural), abstract_files=len(abstract))


def held_out_report(h: HeldOut, heads: SideHeads, cfg: PhotoCheckConfig) -> dict[str, Any]:
    return {
        "synthetic_fronts_front_slot": rate(outcomes(h.synth_fronts, heads, "front", cfg),
                                            "pass"),
        "synthetic_fronts_back_slot": rate(outcomes(h.synth_fronts, heads, "back", cfg),
                                           "wrong_side"),
        "synthetic_backs_back_slot": rate(outcomes(h.synth_backs, heads, "back", cfg), "pass"),
        "synthetic_backs_front_slot": rate(outcomes(h.synth_backs, heads, "front", cfg),
                                           "wrong_side"),
        "scenes_without_phone": rate(outcomes(h.empty, heads, "front", cfg), "not_a_phone"),
        "natural_photos": {**rate(outcomes(h.natural, heads, "front", cfg), "not_a_phone"),
                           "files": h.natural_files},
        "abstract_wallpapers": {**rate(outcomes(h.abstract, heads, "front", cfg), "not_a_phone"),
                                "files": h.abstract_files},
        "blurred_real_fronts": rate(outcomes(h.blurred, heads, "front", cfg), "blurry"),
        "dark_real_fronts": rate(outcomes(h.black, heads, "front", cfg), "too_dark"),
    }


def check_ms(model: Path, heads: SideHeads, pre: PreprocessConfig, photos: list[Path],
             repeat: int = 3) -> dict[str, float]:
    """Milliseconds per photo on one thread: the measured checks, the model and its heads
    (decoding, shared with grading, excluded)."""
    opts = ort.SessionOptions()
    opts.intra_op_num_threads, opts.inter_op_num_threads = 1, 1
    sess = ort.InferenceSession(str(model), opts, providers=["CPUExecutionProvider"])
    images = [open_image(p, draft_size=pre.img_size) for p in photos]
    xs = [normalize(resize_rgb(im, pre), pre)[None].astype(np.float32) for im in images]
    sess.run(None, {"image": xs[0]})
    t0 = time.perf_counter()
    for _ in range(repeat):
        for im in images:
            measure(im)
    t1 = time.perf_counter()
    for _ in range(repeat):
        for x in xs:
            heads.scores(sess.run(None, {"image": x})[0])
    t2 = time.perf_counter()
    n = repeat * len(images)
    return {"measured_ms": round((t1 - t0) / n * 1000, 2),
            "model_ms": round((t2 - t1) / n * 1000, 2),
            "total_ms": round((t2 - t0) / n * 1000, 2)}
