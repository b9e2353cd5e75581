"""Class activation heatmaps: where on the photo the model sees a condition (e.g. a crack).

Torch-free on purpose (numpy + Pillow): serving computes the CAM from ONNX outputs (the last
feature map and the head's weight). The heads are linear on the average-pooled feature map, so
``CAM[k] = sum_c weight[k, c] * fmap[c]`` is exact (see ``vision.model``). The model input is the
whole photo squashed to a square, so the CAM maps back onto the photo by plain resizing.
"""

from __future__ import annotations

import io

import numpy as np
from PIL import Image, ImageOps

from vision.preprocess import RESAMPLE, _to_rgb


def cam_from_features(fmap: np.ndarray, weight: np.ndarray, class_index: int) -> np.ndarray:
    """CAM (h, w) in 0..1 of ``class_index``: ReLU of ``weight[k] . fmap``, divided by its max.

    ``fmap``: (C, h, w) feature map of one image; ``weight``: (K, C) linear head. A map with no
    positive evidence stays all zero.
    """
    fmap, weight = np.asarray(fmap, np.float32), np.asarray(weight, np.float32)
    if fmap.ndim != 3:
        raise ValueError(f"expected a (C, h, w) feature map, got shape {fmap.shape}")
    if weight.ndim != 2 or weight.shape[1] != fmap.shape[0]:
        raise ValueError(f"weight {weight.shape} does not fit feature map {fmap.shape} "
                         "(expected (K, C))")
    if not 0 <= class_index < weight.shape[0]:
        raise ValueError(f"class_index {class_index} out of range 0..{weight.shape[0] - 1}")
    cam = np.maximum(np.tensordot(weight[class_index], fmap, axes=(0, 0)), 0.0)
    top = float(cam.max()) if cam.size else 0.0
    return (cam / top if top > 0 else cam).astype(np.float32)


def jet(x: np.ndarray) -> np.ndarray:
    """Jet-like colour map: values in 0..1 -> uint8 RGB (blue, cyan, yellow, red)."""
    x = np.clip(np.asarray(x, np.float32), 0.0, 1.0)[..., None]
    centres = np.array([3.0, 2.0, 1.0], np.float32)  # r, g, b
    rgb = np.clip(1.5 - np.abs(4.0 * x - centres), 0.0, 1.0)
    return np.rint(rgb * 255).astype(np.uint8)


def upsample(cam: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """CAM resized (bilinear) to ``size`` = (width, height), float32 in 0..1."""
    cam = np.asarray(cam, np.float32)
    im = Image.fromarray(np.ascontiguousarray(cam)).resize(size, RESAMPLE)  # mode "F"
    return np.clip(np.asarray(im, np.float32), 0.0, 1.0)


def overlay(image: Image.Image, cam: np.ndarray, alpha: float = 0.45,
            max_side: int = 768) -> Image.Image:
    """The upright RGB photo (longer side at most ``max_side``) with the CAM blended in colour.

    Each pixel is tinted by ``alpha * cam``: strong where the activation is high, invisible
    where it is zero.
    """
    im = _to_rgb(ImageOps.exif_transpose(image))
    if max(im.size) > max_side:
        scale = max_side / max(im.size)
        im = im.resize((max(1, round(im.width * scale)), max(1, round(im.height * scale))),
                       RESAMPLE)
    heat = upsample(cam, im.size)
    w = (alpha * heat)[..., None]
    out = np.asarray(im, np.float32) * (1 - w) + jet(heat).astype(np.float32) * w
    return Image.fromarray(np.clip(np.rint(out), 0, 255).astype(np.uint8))


def overlay_png(image: Image.Image, cam: np.ndarray, alpha: float = 0.45,
                max_side: int = 768) -> bytes:
    """PNG bytes of :func:`overlay`."""
    buf = io.BytesIO()
    overlay(image, cam, alpha, max_side).save(buf, format="PNG")
    return buf.getvalue()


def damage_box(cam: np.ndarray, threshold: float = 0.5
               ) -> tuple[float, float, float, float] | None:
    """Normalised box (x0, y0, x1, y1), in 0..1 of the photo, around CAM values >= threshold.

    None when the CAM is all zero or nothing reaches the threshold.
    """
    cam = np.asarray(cam, np.float32)
    if cam.ndim != 2 or cam.size == 0 or float(cam.max()) <= 0:
        return None
    ys, xs = np.nonzero(cam >= threshold)
    if len(xs) == 0:
        return None
    h, w = cam.shape
    return (float(xs.min() / w), float(ys.min() / h), float((xs.max() + 1) / w),
            float((ys.max() + 1) / h))
