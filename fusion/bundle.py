"""The bundle contract: what ``photograde export`` writes and the runtime reads (torch-free).

    vision.onnx        the condition model (dynamic batch): screen and shell logits and the
                       last feature map (for damage heatmaps)
    vision.int8.onnx   optional: statically quantised, calibrated on training photos
    tabular.onnx       the return-risk model, tabular.json its signature
    fusion.json        the fusion parameters and the grading config
    samples.npz        sample inputs with their expected outputs (for ``bundle verify``)
    heads.npz          the heads' weights, to turn feature maps into heatmaps
    photocheck.onnx    optional: the photo check's ImageNet backbone (pooled features)
    photocheck.npz     its linear heads: phone or not, back or front, cracked screen (numpy)
    localiser.onnx     optional: where the device is (:mod:`vision.localise`); with it the
                       condition model sees the device's rectified crop (:class:`CropInfo`)
    localiser.json     its config
    manifest.json      :class:`BundleManifest`: format, versions, preprocessing, classes,
                       grading, temperatures, data summary, metrics, the reference grade
                       distribution (drift), sha256 of every file

A manifest records its ``bundle_format``; one written before the field existed is format 1.
A format this version does not know is refused with a :class:`BundleError`.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from vision.errors import PhotogradeError
from vision.localise import CONFIG_FILE as LOCALISER_CONFIG_FILE
from vision.localise import LOCALISER_FILE, Localiser, LocaliserError

BUNDLE_FORMAT = 1
BASE_MODEL = "photograde-base"  # the model shipped in models/photograde-base
MANIFEST_FILE = "manifest.json"
VISION_FILE = "vision.onnx"
VISION_INT8_FILE = "vision.int8.onnx"
TABULAR_FILE = "tabular.onnx"
TABULAR_META_FILE = "tabular.json"
FUSION_FILE = "fusion.json"
HEADS_FILE = "heads.npz"
SAMPLES_FILE = "samples.npz"
PHOTOCHECK_FILE = "photocheck.onnx"
PHOTOCHECK_HEADS_FILE = "photocheck.npz"
VISION_INPUT = "image"
VISION_OUTPUTS = ("screen_logits", "shell_logits", "features")
PARTS = ("screen", "shell")
PARITY_TOL = 1e-4  # max |difference| of logits between two runs of the same model


class BundleError(PhotogradeError):
    """The bundle is missing, incomplete, tampered with, of an unknown format or fails its
    samples."""


class _Section(BaseModel):
    """A manifest section: unknown keys are kept (bundles written by other versions load)."""

    model_config = ConfigDict(extra="allow")


class RealScreenChange(_Section):
    """fp32 vs int8 on labelled real front photos (``photograde evaluate precision``): the
    screen head's cracked ROC-AUC and cracked-vs-rest macro-F1 of each."""

    evaluated_on: str
    photos: int
    roc_auc_cracked_fp32: float
    roc_auc_cracked_int8: float
    macro_f1_cracked_fp32: float
    macro_f1_cracked_int8: float

    def change_points(self) -> dict[str, float]:
        """int8 minus fp32, in points (1 point = 0.01)."""
        return {"real-screen ROC-AUC": 100 * (self.roc_auc_cracked_int8
                                              - self.roc_auc_cracked_fp32),
                "real-screen macro-F1": 100 * (self.macro_f1_cracked_int8
                                               - self.macro_f1_cracked_fp32)}


class Int8Info(_Section):
    """The int8 model and how it compares with fp32."""

    file: str = VISION_INT8_FILE
    calibration_photos: int | None = None
    float_nodes: list[str] = []
    evaluated_on: str | None = None
    evaluation_photos: int | None = None
    macro_f1_fp32: dict[str, Any] = {}
    macro_f1_int8: dict[str, Any] = {}
    macro_f1_change_points: dict[str, Any] = {}
    cpu_ms_fp32_batch2_1thread: float | None = None
    cpu_ms_int8_batch2_1thread: float | None = None
    speedup: float | None = None
    real_screen: RealScreenChange | None = None


class VisionInfo(_Section):
    file: str = VISION_FILE
    backbone: str
    input_size: int
    preprocess: dict[str, Any]
    inputs: list[str] = [VISION_INPUT]
    outputs: list[str] = list(VISION_OUTPUTS)
    classes: dict[str, list[str]]
    temperatures: dict[str, float]
    head_weights: str = HEADS_FILE
    parity_max_abs_diff: float | None = None
    int8: Int8Info | None = None
    weights_source: Any = None
    training_data: Any = None
    metrics: Any = None


class TabularInfo(_Section):
    """``tabular.json`` of the return-risk run (its other keys are kept as they are)."""

    format: str | None = None
    task: str | None = None
    target: str | None = None
    feature_names: list[str] = []
    inputs: list[dict[str, Any]] = []
    outputs: dict[str, Any] = {}
    scale: dict[str, Any] = {}
    policy: dict[str, Any] = {}


class FusionInfo(_Section):
    file: str = FUSION_FILE
    metrics: Any = None


class GradingInfo(_Section):
    """The grading config (validated by :func:`fusion.policy.policy_from_dict`)."""

    scale: dict[str, Any]
    policy: dict[str, Any]
    decision: dict[str, Any]


class PhotoCheckInfo(_Section):
    """The photo check's learned part (:mod:`vision.photocheck`): a frozen ImageNet backbone
    whose pooled features feed logistic regressions (phone or not; back or front; and,
    when ``cracked_weight`` is set, cracked screen or not, blended into the screen's
    condition probabilities by :func:`vision.photocheck.blend_cracked`)."""

    file: str = PHOTOCHECK_FILE
    heads: str = PHOTOCHECK_HEADS_FILE
    backbone: str
    input_size: int
    preprocess: dict[str, Any]
    cracked_weight: float = Field(0.0, ge=0, le=1, description="weight of the frozen-feature "
                                  "probe in the screen's P(cracked); 0: not used")
    training_data: dict[str, Any] = {}
    metrics: dict[str, Any] = {}


class CropInfo(_Section):
    """The two-stage pipeline (issue 19): the localiser finds the device in each photo of
    ``views`` and the condition model sees its rectified crop, ``long_side`` pixels long
    (:func:`vision.crop.crop_decoded`); a photo where no device is found is seen whole. The
    vision model must have been trained on such crops (``scripts/crop-manifest``)."""

    file: str = LOCALISER_FILE
    config: str = LOCALISER_CONFIG_FILE
    views: list[Literal["front", "back"]] = Field(min_length=1)
    long_side: int = Field(448, ge=32, le=4096)
    localiser: dict[str, Any] = {}  # its training summary and figures, as written by its run


class ReferenceInfo(_Section):
    """What the served grades are compared with (drift, ``serve/drift.py``): the bundle's
    predicted-grade distribution on its held-out evaluation (``train release``, or
    ``evaluate bundle --set-reference``)."""

    grade_distribution: dict[str, float]  # grade -> share of the devices (sums to 1)
    devices: int | None = None
    measured_on: str | None = None


class BundleManifest(_Section):
    """``manifest.json``."""

    @property
    def kind(self) -> str:
        """``demo`` (synthetic demo build), ``base`` (the shipped base model) or ``custom``."""
        return "demo" if self.demo else "base" if self.model_name == BASE_MODEL else "custom"

    bundle_format: int = BUNDLE_FORMAT
    bundle_version: str
    photograde_version: str
    created_at: str
    demo: bool = False
    model_name: str | None = None  # e.g. photograde-base; None: a custom bundle
    abstention: dict[str, Any] | None = None  # how min_confidence was set (train release)
    vision: VisionInfo
    tabular: TabularInfo
    fusion: FusionInfo
    grading: GradingInfo
    photocheck: PhotoCheckInfo | None = None  # bundles without one skip the learned checks
    crop: CropInfo | None = None  # none: the condition model sees whole photos
    reference: ReferenceInfo | None = None  # none: the service learns it from its first grades
    versions: dict[str, str] = {}
    files: dict[str, str]


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def hash_files(bundle: Path) -> dict[str, str]:
    """The sha256 of every file in ``bundle`` (what the manifest records), by name."""
    return {name: sha256(bundle / name)
            for name in sorted(p.name for p in bundle.iterdir() if p.is_file())}


def bundle_version(files: dict[str, str], created: dt.datetime) -> str:
    """``YYYYmmdd-HHMMSS-<12 hex>``: the creation time and a digest of the files' hashes."""
    digest = hashlib.sha256("".join(files[f] for f in sorted(files)).encode()).hexdigest()
    return f"{created:%Y%m%d-%H%M%S}-{digest[:12]}"


def write_manifest(bundle: Path, manifest: BundleManifest) -> None:
    (bundle / MANIFEST_FILE).write_text(json.dumps(manifest.model_dump(mode="json"), indent=2))


def write_new_version(bundle: Path, manifest: BundleManifest, added: tuple[str, ...] = ()
                      ) -> str:
    """After files of ``bundle`` changed: the manifest's files (and the ``added`` ones)
    hashed again, a new version, the manifest written; returns the version."""
    hashes = hash_files(bundle)
    manifest.files = {k: hashes[k] for k in sorted({*manifest.files, *added})}
    manifest.bundle_version = bundle_version(manifest.files, dt.datetime.now(dt.UTC))
    write_manifest(bundle, manifest)
    return manifest.bundle_version


def check_hashes(bundle: Path, files: dict[str, str]) -> None:
    """Every file present with the sha256 the manifest records (refuses tampering)."""
    for name, digest in files.items():
        f = bundle / name
        if not f.is_file():
            raise BundleError(f"{bundle}: {name} is missing")
        if sha256(f) != digest:
            raise BundleError(f"{bundle}: {name} does not match its sha256 in manifest.json "
                              "(tampered with or truncated); re-export the bundle")


def load_manifest(bundle: str | Path, verify_hashes: bool = True) -> BundleManifest:
    """The bundle's manifest, its format checked and (``verify_hashes``) every file's sha256."""
    bundle = Path(bundle)
    path = bundle / MANIFEST_FILE
    if not path.is_file():
        raise BundleError(f"{bundle}: no manifest.json (not a photograde bundle; "
                          "make one with photograde export)")
    try:
        raw = json.loads(path.read_text())
    except ValueError as e:
        raise BundleError(f"{path}: unreadable bundle manifest ({e})") from None
    if not isinstance(raw, dict):
        raise BundleError(f"{path}: unreadable bundle manifest (not a JSON object)")
    fmt = raw.get("bundle_format", 1)  # bundles written before the field existed: format 1
    if fmt != BUNDLE_FORMAT:
        raise BundleError(f"{path}: bundle format {fmt!r} is not supported (this version of "
                          f"photograde reads format {BUNDLE_FORMAT}); re-export the bundle "
                          "with this version, or upgrade photograde")
    try:
        manifest = BundleManifest.model_validate(raw)
    except ValidationError as e:
        err = e.errors()[0]
        where = ".".join(str(x) for x in err["loc"])
        raise BundleError(f"{path}: unreadable bundle manifest ({where}: {err['msg']})") from None
    if verify_hashes:
        check_hashes(bundle, manifest.files)
    return manifest


def save_heads(bundle: Path, weights: dict[str, np.ndarray]) -> None:
    """The heads' weight matrices (class x channel) in ``bundle``, for damage heatmaps."""
    heads = {p: weights[p] for p in PARTS}
    # numpy's stub lets a **dict fill savez's allow_pickle: bool, so it rejects arrays there.
    np.savez(bundle / HEADS_FILE, **heads)  # type: ignore[arg-type]


def load_heads(path: Path) -> dict[str, np.ndarray]:
    with np.load(path) as heads:
        return {p: heads[p] for p in PARTS}


def save_samples(bundle: Path, image: np.ndarray, screen_logits: np.ndarray,
                 shell_logits: np.ndarray) -> None:
    """Sample inputs in ``bundle`` with the logits ONNX Runtime gave for them at export."""
    np.savez_compressed(bundle / SAMPLES_FILE, image=image, screen_logits=screen_logits,
                        shell_logits=shell_logits)


def check_samples(bundle: Path, manifest: BundleManifest) -> tuple[int, float]:
    """Run the embedded samples on the fp32 model: (samples, max |difference|); raises
    BundleError past :data:`PARITY_TOL`."""
    import onnxruntime as ort

    sess = ort.InferenceSession(str(bundle / manifest.vision.file),
                                providers=["CPUExecutionProvider"])
    with np.load(bundle / SAMPLES_FILE) as s:
        got = sess.run(list(VISION_OUTPUTS[:2]), {VISION_INPUT: s["image"]})
        diff = max(float(np.abs(got[0] - s["screen_logits"]).max()),
                   float(np.abs(got[1] - s["shell_logits"]).max()))
        n = len(s["image"])
    if diff > PARITY_TOL:
        raise BundleError(f"{bundle}: embedded samples differ from their expected outputs by "
                          f"{diff:.2e} (tolerance {PARITY_TOL:.0e})")
    return n, diff


def verify_bundle(bundle: str | Path) -> dict[str, Any]:
    """Re-check every hash and run the embedded samples (and load the localiser of a bundle
    that crops); raises BundleError on any mismatch."""
    bundle = Path(bundle)
    manifest = load_manifest(bundle, verify_hashes=True)
    n, diff = check_samples(bundle, manifest)
    crop = manifest.crop
    if crop is not None:
        try:
            Localiser(bundle / crop.file)
        except LocaliserError as e:
            raise BundleError(f"{bundle}: {e}") from None
    return {"bundle_version": manifest.bundle_version, "files": len(manifest.files),
            "samples": n, "max_abs_diff": diff,
            "crop": None if crop is None else {"views": crop.views, "long_side": crop.long_side},
            "ok": True}
