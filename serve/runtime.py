"""The torch-free runtime: a bundle, ONNX Runtime, numpy and Pillow; nothing else.

Used by ``photograde predict`` and by the service. One :class:`Grader` holds the bundle's
sessions (the bundle contract: :mod:`fusion.bundle`); :meth:`Grader.grade` decodes the photos,
runs the vision and return-risk models and hands the numbers to :mod:`fusion.grade`, which
assembles the :class:`~fusion.grade.GradeResult`: the grade (the policy applied to the part
decisions), the grade probabilities, the grade's probability (confidence), part conditions,
reasons, return risk and the decision against the refurbisher's grade.
"""

from __future__ import annotations

import base64
import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
from PIL import Image

from fusion.bundle import (
    VISION_INPUT,
    BundleManifest,
    load_heads,
    load_manifest,
)
from fusion.grade import (
    Box,
    GradeResult,
    assemble_grade,
    decided_grade,
    grade_distribution,
    risk_grades,
)
from fusion.model import FusionModel
from fusion.policy import GradingPolicy, policy_from_dict
from fusion.precision import Wanted, choose_precision
from tabular.evidence import Evidence
from tabular.schema import DeviceInfo
from vision.crop import crop_decoded, warp_to_photo
from vision.heatmap import cam_from_features, damage_box, overlay_png
from vision.localise import Localiser
from vision.ort_options import session_options
from vision.photocheck import (
    PhotoCheckConfig,
    PhotoStats,
    PhotoVerdict,
    SideHeads,
    SideScores,
    Slot,
    blend_cracked,
    check,
    measure,
)
from vision.preprocess import (
    DEFAULT_MAX_PIXELS,
    PreprocessConfig,
    normalize,
    open_image_sized,
    resize_rgb,
)

PARTS = (("screen", "front"), ("shell", "back"))


def providers() -> list[str]:
    """CUDA when onnxruntime-gpu sees a GPU, else CPU."""
    available = ort.get_available_providers()
    return (["CUDAExecutionProvider", "CPUExecutionProvider"]
            if "CUDAExecutionProvider" in available else ["CPUExecutionProvider"])


def default_threads() -> int:
    """Threads for one process: the container's CPU quota (cgroup v2/v1), not the host's cores."""
    quota = None
    try:
        text = Path("/sys/fs/cgroup/cpu.max").read_text().split()
        if text[0] != "max":
            quota = int(text[0]) / int(text[1])
    except (OSError, ValueError, IndexError):
        try:
            q = int(Path("/sys/fs/cgroup/cpu/cpu.cfs_quota_us").read_text())
            p = int(Path("/sys/fs/cgroup/cpu/cpu.cfs_period_us").read_text())
            quota = q / p if q > 0 else None
        except (OSError, ValueError):
            pass
    cpus = len(os.sched_getaffinity(0))
    return max(1, min(cpus, int(quota) if quota else cpus))


def stats_as_uploaded(image: Image.Image, size: tuple[int, int] | None) -> PhotoStats:
    """The photo check's measurements of a decoded photo, with its size as uploaded."""
    st = measure(image)
    return st if size is None else st.model_copy(update={"width": size[0], "height": size[1]})


@dataclass
class Photo:
    """A decoded photo: the model input and the upright RGB image (for heatmaps)."""

    x: np.ndarray
    image: Image.Image
    #: (width, height) as uploaded, upright; ``image`` may be smaller (JPEG draft decoding).
    size: tuple[int, int] | None = None
    #: the photo check's measurements, when taken with the decoding (``decode(measured=True)``)
    stats: PhotoStats | None = None
    #: the photo check model's scores, when run with the decoding (``decode(scored=True)``)
    scores: SideScores | None = None
    #: when ``x`` is the device's rectified crop (a bundle with a localiser): its corners
    #: (4, 2) as fractions of the photo's width and height; None: ``x`` is the whole photo
    crop: np.ndarray | None = None

    def on_photo(self, values: np.ndarray) -> np.ndarray:
        """A map over the model input (a heatmap) laid over the photo: as it is when the model
        saw the whole photo, drawn back through the crop's inverse warp otherwise."""
        if self.crop is None:
            return values
        return warp_to_photo(values, self.crop, _map_size(self.image.size))


class Grader:
    """A loaded bundle: decode photos, run the models, hand the numbers to fusion."""

    def __init__(self, bundle: str | Path, *, threads: int | None = None, int8: bool = False,
                 provider_list: list[str] | None = None, verify_hashes: bool = True,
                 max_pixels: int = DEFAULT_MAX_PIXELS, spinning: bool = False,
                 precision: Wanted | None = None):
        """``precision`` (auto, fp32, int8: :func:`fusion.precision.choose_precision`) or,
        when None, ``int8``: the vision model served."""
        self.dir = Path(bundle)
        self.manifest: BundleManifest = load_manifest(self.dir, verify_hashes)
        v = self.manifest.vision
        self.pre = PreprocessConfig.from_dict(v.preprocess)
        self.temperatures = v.temperatures
        self.threads = threads or default_threads()
        self.max_pixels = max_pixels
        opts = session_options(self.threads, spinning)
        self.precision = choose_precision(v.int8, precision or ("int8" if int8 else "fp32"),
                                          str(self.dir))
        vision_file = v.int8.file if v.int8 and self.precision.precision == "int8" else v.file
        self.vision_file = vision_file
        self.vision = ort.InferenceSession(str(self.dir / vision_file), opts,
                                           providers=provider_list or providers())
        self.provider = self.vision.get_providers()[0]
        self.head_weights = load_heads(self.dir / v.head_weights)
        self.fusion = FusionModel.from_dict(
            json.loads((self.dir / self.manifest.fusion.file).read_text()))
        self.policy: GradingPolicy = policy_from_dict(self.manifest.grading.model_dump())
        from tabular.runtime import ReturnRiskModel

        self.risk = ReturnRiskModel.from_dir(self.dir, threads=self.threads)
        self.photocheck: ort.InferenceSession | None = None
        pc = self.manifest.photocheck
        if pc is not None:
            self.photocheck = ort.InferenceSession(str(self.dir / pc.file), opts,
                                                   providers=provider_list or providers())
            self.photocheck_pre = PreprocessConfig.from_dict(pc.preprocess)
            self.side_heads = SideHeads.load(self.dir / pc.heads)
        #: the frozen-feature probe's weight in the screen's P(cracked) (0: not blended)
        self.cracked_weight = (pc.cracked_weight if pc is not None and
                               self.side_heads.has_cracked else 0.0)
        #: the two-stage pipeline: the views whose device crop the vision model sees
        self.crop = self.manifest.crop
        self.localiser = (Localiser(self.dir / self.crop.file, self.threads)
                          if self.crop is not None else None)

    # -- decoding --------------------------------------------------------------------------
    def decode(self, source: bytes | str | Path, measured: bool = False,
               scored: bool = False, view: str | None = None) -> Photo:
        """Photo bytes or path -> model input (JPEG draft decoding, EXIF orientation);
        ``measured``: with the photo check's measurements, ``scored``: with its model's
        scores (when the bundle has one), both in the same (decoding) thread, so that the two
        photos of a device are checked in parallel too, with no hand-over between threads.
        ``view``: the photo's side; when the bundle crops that view, the model input is the
        device's rectified crop (:meth:`device_crop`; the photo check sees the whole photo)."""
        image, size = open_image_sized(source, max_pixels=self.max_pixels,
                                       draft_size=self.pre.img_size)
        crop = self.device_crop(source, image, size, view)
        model_input = crop[1] if crop is not None else image
        x = normalize(resize_rgb(model_input, self.pre), self.pre)
        photo = Photo(x, image, size, stats_as_uploaded(image, size) if measured else None,
                      crop=crop[0] if crop is not None else None)
        scores = self.side_scores([photo]) if scored else None
        photo.scores = scores[0] if scores else None
        return photo

    def device_crop(self, source: bytes | str | Path, image: Image.Image,
                    size: tuple[int, int], view: str | None
                    ) -> tuple[np.ndarray, Image.Image] | None:
        """(the device's corners as fractions of the photo, its rectified crop) when the
        bundle crops ``view`` and the localiser finds a device in ``image`` (the photo
        decoded, ``size`` as uploaded); None: the model sees the whole photo."""
        if self.localiser is None or self.crop is None or view not in self.crop.views:
            return None
        loc = self.localiser.localise_images([image], [size])[0]
        if not loc.found:
            return None
        crop = crop_decoded(source, image, size, loc.device, self.crop.long_side,
                            max_pixels=self.max_pixels)
        return loc.device.points() / size, crop

    def run_vision(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(screen_logits, shell_logits, features) for a batch (N, 3, S, S)."""
        screen, shell, features = self.vision.run(None, {VISION_INPUT: np.asarray(x, np.float32)})
        return screen, shell, features

    # -- the photo check -------------------------------------------------------------------
    def side_scores(self, photos: list[Photo]) -> list[SideScores] | None:
        """The photo-check model's scores of each photo (None: the bundle has no such model)."""
        if self.photocheck is None:
            return None
        pre = self.photocheck_pre
        x = np.stack([p.x if pre == self.pre and p.crop is None
                      else normalize(resize_rgb(p.image, pre), pre) for p in photos])
        (pooled,) = self.photocheck.run(None, {VISION_INPUT: np.asarray(x, np.float32)})
        return self.side_heads.scores(pooled)

    def check_photos(self, photos: list[Photo], slots: list[Slot],
                     cfg: PhotoCheckConfig) -> list[PhotoVerdict]:
        """The photo check of each photo in its slot (see :mod:`vision.photocheck`); the
        size checked is the photo's as uploaded."""
        stats = [p.stats or stats_as_uploaded(p.image, p.size) for p in photos]
        scores: list[SideScores | None] = [p.scores for p in photos]
        if any(s is None for s in scores):
            scores = list(self.side_scores(photos) or scores)
        return [PhotoVerdict(slot=slot, stats=st, scores=sc, rejection=check(st, sc, slot, cfg))
                for slot, st, sc in zip(slots, stats, scores, strict=True)]

    # -- grading ---------------------------------------------------------------------------
    def grade(self, front: bytes | str | Path | Photo, back: bytes | str | Path | Photo,
              info: DeviceInfo, refurbisher_grade: str | None = None,
              heatmaps: bool = False) -> GradeResult:
        """Grade one device (both photos in one vision call)."""
        photos = [p if isinstance(p, Photo) else self.decode(p, view=view)
                  for p, (_part, view) in zip((front, back), PARTS, strict=True)]
        screen, shell, features = self.run_vision(np.stack([p.x for p in photos]))
        return self.fuse(photos, screen[0], shell[1], features[:2], info, refurbisher_grade,
                         heatmaps)

    def fuse(self, photos: list[Photo], screen_logits: np.ndarray, shell_logits: np.ndarray,
             features: np.ndarray, info: DeviceInfo, refurbisher_grade: str | None = None,
             heatmaps: bool = False, verdicts: Sequence[PhotoVerdict] = (),
             trust_score: float | None = None) -> GradeResult:
        """Everything after the vision model, for one device (features: front, back);
        ``verdicts`` (the photo check's) and the seller's ``trust_score``, when known, inform
        the return risk."""
        policy = self.policy
        if refurbisher_grade is not None:
            policy.rank(refurbisher_grade)  # unknown grade -> ValueError naming it
        probs = self.part_probs(screen_logits, shell_logits)
        probs["screen"] = self.served_screen(photos[0], probs["screen"])
        failed, battery = info.failed_checks, info.battery_health_pct
        p = grade_distribution(policy, self.fusion, probs, failed, battery)
        grade = decided_grade(policy, probs, failed, battery)
        risk = self.risk.predict(info, risk_grades(policy, grade, refurbisher_grade), policy,
                                 evidence(probs, p, verdicts, trust_score))
        boxes, maps = self._damage(photos, probs, features, heatmaps)
        return assemble_grade(policy, p, probs, failed_checks=failed,
                              battery_health_pct=battery, return_risk=risk,
                              bundle_version=self.manifest.bundle_version,
                              refurbisher_grade=refurbisher_grade, damage_boxes=boxes,
                              heatmaps=maps)

    def part_probs(self, screen_logits: np.ndarray, shell_logits: np.ndarray
                   ) -> dict[str, np.ndarray]:
        """The calibrated condition probabilities of each part."""
        return {"screen": _softmax(screen_logits / self.temperatures["screen"]),
                "shell": _softmax(shell_logits / self.temperatures["shell"])}

    def cracked_probe(self, front: Photo) -> float | None:
        """The photo check's P(cracked screen) for the front photo, when the bundle blends it
        into the screen's probabilities (None otherwise); scored here unless the decoding
        already did."""
        if not self.cracked_weight:
            return None
        if front.scores is None:
            scores = self.side_scores([front])
            front.scores = scores[0] if scores else None
        return front.scores.cracked if front.scores is not None else None

    def served_screen(self, front: Photo, probs: np.ndarray) -> np.ndarray:
        """The screen's calibrated probabilities as served: the probe blended in
        (:meth:`cracked_probe`), or the model's own when the bundle has no probe."""
        probe = self.cracked_probe(front)
        return probs if probe is None else blend_cracked(probs, probe, self.cracked_weight)

    def front_screen(self, front: Photo) -> np.ndarray:
        """The served screen probabilities of one decoded front photo on its own (one vision
        call): the calibrated model's with the probe blended in, as a grade answers them."""
        screen, shell, _ = self.run_vision(front.x[None])
        return self.served_screen(front, self.part_probs(screen[0], shell[0])["screen"])

    def served_screen_logits(self, front: Photo, logits: np.ndarray) -> np.ndarray:
        """The screen logits whose temperature-scaled softmax is the served probabilities
        (:meth:`served_screen`); the model's own without a probe."""
        if not self.cracked_weight:
            return logits
        t = self.temperatures["screen"]
        probs = self.served_screen(front, _softmax(logits / t))
        return (t * np.log(np.maximum(probs, 1e-12))).astype(np.float32)

    def _damage(self, photos: list[Photo], probs: dict[str, np.ndarray], features: np.ndarray,
                heatmaps: bool) -> tuple[dict[str, Box | None], dict[str, str]]:
        """Per part: the damage box of the predicted condition (none when flawless) and, with
        ``heatmaps``, its heatmap over the photo (base64 PNG)."""
        boxes: dict[str, Box | None] = {}
        maps: dict[str, str] = {}
        for k, (part, _view) in enumerate(PARTS):
            cls = int(probs[part].argmax())
            cam = photos[k].on_photo(cam_from_features(features[k], self.head_weights[part],
                                                       cls))
            boxes[part] = damage_box(cam) if cls > 0 else None
            if heatmaps:
                maps[part] = base64.b64encode(overlay_png(photos[k].image, cam)).decode()
        return boxes, maps

    def info(self) -> dict[str, Any]:
        m = self.manifest
        return {"bundle_version": m.bundle_version, "demo": m.demo,
                "model_name": m.model_name, "model_kind": m.kind,
                "photograde_version": m.photograde_version, "created_at": m.created_at,
                "backbone": m.vision.backbone, "input_size": m.vision.input_size,
                "vision_file": self.vision_file, "execution_provider": self.provider,
                "precision": self.precision.model_dump(),
                "threads": self.threads, "grades": list(self.policy.grades),
                "grading": self.policy.name,
                "photo_check_model": self.photocheck is not None,
                "cracked_probe_weight": self.cracked_weight,
                "crop": ({"views": self.crop.views, "long_side": self.crop.long_side}
                         if self.crop is not None else None)}


def evidence(probs: dict[str, np.ndarray], grades: np.ndarray,
             verdicts: Sequence[PhotoVerdict] = (), trust_score: float | None = None
             ) -> Evidence:
    """What the return-risk model reads beside the facts (:mod:`tabular.evidence`): the part
    and grade probabilities, the photo check's lowest scores, the seller's trust."""
    scored = [(v.slot, v.scores) for v in verdicts if v.scores is not None]
    return Evidence.from_arrays(
        probs["screen"], probs["shell"], grades, trust_score=trust_score,
        phone=min((s.phone for _, s in scored), default=None),
        side=min((s.side(slot) for slot, s in scored), default=None))


def _map_size(size: tuple[int, int], long_side: int = 256) -> tuple[int, int]:
    """(width, height) of a photo-shaped map whose longer side is ``long_side``."""
    scale = long_side / max(size)
    return max(1, round(size[0] * scale)), max(1, round(size[1] * scale))


def _softmax(z: np.ndarray) -> np.ndarray:
    e = np.exp(z - z.max())
    return e / e.sum()
