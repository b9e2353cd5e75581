"""Where the phone is in a photo: the torch-free localiser runtime (ONNX Runtime, numpy, Pillow).

A localiser is an ONNX model (``localiser.onnx``) with its config beside it
(``localiser.json``, :class:`LocaliserConfig`), written by ``photograde train localiser``
(:mod:`training.localise_train`). Input ``image``: the whole photo squashed to ``img_size``
square (the condition model's transform, :mod:`vision.preprocess`). Outputs: ``corners``
(N, 8), the device's 4 corners (top-left, top-right, bottom-right, bottom-left, as in
:mod:`vision.geometry`) as fractions of the photo's width and height, so they map back to the
photo without any letterbox arithmetic; ``presence`` (N,), the logit of "a device is in the
photo" (meaningful only when the config says the model learnt it from photos without one).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
from PIL import Image
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from vision.errors import PhotogradeError
from vision.geometry import Quad
from vision.ort_options import session_options
from vision.preprocess import (
    DEFAULT_MAX_PIXELS,
    PreprocessConfig,
    Source,
    normalize,
    open_image_sized,
    resize_rgb,
)

LOCALISER_FILE = "localiser.onnx"
CONFIG_FILE = "localiser.json"
INPUT = "image"
OUTPUTS: tuple[str, str] = ("corners", "presence")


class LocaliserError(PhotogradeError):
    """A localiser that cannot be loaded (missing file, unreadable or foreign config)."""


class LocaliserConfig(BaseModel):
    """How a localiser's input is made and what it learnt; stored as ``localiser.json``."""

    model_config = ConfigDict(extra="ignore")

    backbone: str
    preprocess: dict[str, Any]
    presence_head: bool = Field(description="trained on photos without a phone too")
    threshold: float = Field(0.5, ge=0, le=1, description="found when the probability >= this")
    parity_max_abs_diff: float | None = None
    training: dict[str, Any] = Field(default_factory=dict)

    def preprocess_config(self) -> PreprocessConfig:
        """The input transform (squash to ``img_size``, mean/std of the backbone)."""
        return PreprocessConfig.from_dict(self.preprocess)


class Localisation(BaseModel):
    """A photo's localised device: corners in the photo's upright pixel coordinates (the size
    as uploaded, after EXIF orientation), and whether a device was found."""

    model_config = ConfigDict(frozen=True)

    width: int = Field(gt=0)
    height: int = Field(gt=0)
    device: Quad
    probability: float | None = Field(
        description="probability that a device is in the photo; None: the model has no "
                    "presence head (it always answers corners)")
    found: bool


def _paths(path: str | Path) -> tuple[Path, Path]:
    path = Path(path)
    onnx = path / LOCALISER_FILE if path.is_dir() else path
    config = onnx.with_name(CONFIG_FILE) if path.is_dir() else onnx.with_suffix(".json")
    if not onnx.is_file():
        raise LocaliserError(f"{onnx}: no localiser model (expected a run directory of "
                             f"'train localiser' with {LOCALISER_FILE}, or an .onnx file)")
    if not config.is_file():
        raise LocaliserError(f"{config}: missing, the localiser's config (written beside "
                             "its .onnx by 'train localiser')")
    return onnx, config


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-np.clip(z, -60, 60)))


class Localiser:
    """A loaded localiser: :meth:`localise` a photo, :meth:`localise_images` a batch."""

    def __init__(self, path: str | Path, threads: int = 0):
        onnx, config = _paths(path)
        try:
            self.config = LocaliserConfig.model_validate_json(config.read_text("utf-8"))
            self.pre = self.config.preprocess_config()
        except (ValidationError, ValueError, UnicodeDecodeError) as e:
            first = str(e).splitlines()[0]
            raise LocaliserError(f"{config}: not a localiser config ({first})") from None
        opts = session_options(threads)
        try:
            self.session = ort.InferenceSession(str(onnx), opts,
                                                providers=["CPUExecutionProvider"])
        except Exception as e:  # onnxruntime raises its own untyped errors
            raise LocaliserError(f"{onnx}: not an ONNX model ({type(e).__name__})") from None
        names = {o.name for o in self.session.get_outputs()}
        if not set(OUTPUTS) <= names or self.session.get_inputs()[0].name != INPUT:
            raise LocaliserError(f"{onnx}: not a localiser (expected input {INPUT!r} and "
                                 f"outputs {', '.join(OUTPUTS)})")

    def run(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Raw outputs of a preprocessed batch: corners (N, 4, 2) as fractions, presence
        probabilities (N,)."""
        corners, presence = self.session.run(list(OUTPUTS), {INPUT: x.astype(np.float32)})
        return corners.reshape(-1, 4, 2), _sigmoid(presence.reshape(-1))

    def localise_images(self, images: Sequence[Image.Image],
                        sizes: Sequence[tuple[int, int]] | None = None) -> list[Localisation]:
        """Localise upright RGB images; ``sizes``: each photo's (width, height) as uploaded
        (default: the image's own size) to which the corners are scaled."""
        if not images:
            return []
        sizes = sizes or [im.size for im in images]
        x = np.stack([normalize(resize_rgb(im, self.pre), self.pre) for im in images])
        corners, prob = self.run(x)
        out = []
        for (w, h), c, p in zip(sizes, corners, prob, strict=True):
            quad = Quad.from_points(c * (w, h), w, h)
            has = self.config.presence_head
            out.append(Localisation(width=w, height=h, device=quad,
                                    probability=float(p) if has else None,
                                    found=bool(p >= self.config.threshold) if has else True))
        return out

    def localise(self, source: Source, *, max_pixels: int = DEFAULT_MAX_PIXELS) -> Localisation:
        """Localise one photo (bytes or path), decoded as the service decodes uploads."""
        im, size = open_image_sized(source, max_pixels=max_pixels, draft_size=self.pre.img_size)
        return self.localise_images([im], [size])[0]


def write_config(path: str | Path, config: LocaliserConfig) -> Path:
    """Write ``config`` as JSON to ``path``."""
    path = Path(path)
    path.write_text(json.dumps(config.model_dump(), indent=2) + "\n", encoding="utf-8")
    return path
