"""The photo check: is this photo fit to grade, and is it the side it claims to be?

Run on every photo before its grade is given (torch-free: numpy and Pillow). Two kinds of
evidence, one reason per rejected photo (:class:`RejectReason`):

* **measured** on the decoded photo (:func:`measure`, 1.6 ms at 256 px): ``too_small``
  (shorter side under ``min_side_px``), ``too_dark`` (90th percentile of the luminance under
  ``dark_p90``), ``overexposed`` (share of white-clipped pixels in the central half over
  ``overexposed_fraction``), ``blurry`` (edge sharpness under ``min_sharpness``: the 99.5th
  percentile of the luminance gradient over the photo's 1-99% contrast; 300 shared real
  fronts blurred by 1.5% of their long side were all refused, 290 as blurry, while 776 of
  the 778 unblurred ones not too small pass the whole check), ``compressed`` (the file's
  estimated JPEG quality under ``min_jpeg_quality``: its blocks hide fine cracks) and
  ``noisy`` (sensor noise over ``max_noise``, a robust estimate at the working size: what
  survives of it in the model's view; heavy noise made the model miss cracks,
  ``photograde evaluate robustness``);
* **learned** (:class:`SideScores`, from the bundle's photo-check model when it has one):
  ``not_a_phone`` (P(phone) under ``min_phone_probability``) and ``wrong_side`` (the other
  side's probability over ``max_wrong_side_probability``).

Order (:func:`check`): too_small, compressed (a fact of the file, which also blurs), too_dark,
then ``not_a_phone`` when the model is sure (P(phone) under ``sure_not_a_phone_probability``:
an empty table has no edges, but it is no phone rather than a blurred one), overexposed,
blurry, noisy, then the learned reasons (a blurred
phone's P(phone) drops, so blur is named before a doubtful ``not_a_phone``).

``duplicate`` is decided by the caller, which knows the photos already submitted: it compares
:attr:`PhotoStats.phash` (a 64-bit DCT perceptual hash, robust to re-encoding and resizing)
with :func:`hamming`.
"""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import Literal

import numpy as np
from PIL import Image
from pydantic import BaseModel, Field

from vision.jpeg import QUALITY_KEY

Slot = Literal["front", "back"]
OTHER_SIDE: dict[str, Slot] = {"front": "back", "back": "front"}
#: The long side (pixels) the measured checks work at.
WORK_SIZE = 256


class RejectReason(StrEnum):
    """Why a photo cannot be graded."""

    TOO_SMALL = "too_small"
    TOO_DARK = "too_dark"
    OVEREXPOSED = "overexposed"
    BLURRY = "blurry"
    COMPRESSED = "compressed"
    NOISY = "noisy"
    NOT_A_PHONE = "not_a_phone"
    WRONG_SIDE = "wrong_side"
    DUPLICATE = "duplicate"


def retake_advice(reason: RejectReason, slot: Slot, cfg: PhotoCheckConfig) -> str:
    """What to tell a person about a rejected photo: what is wrong and how to retake it."""
    side = "front (the screen)" if slot == "front" else "back"
    return {
        RejectReason.TOO_SMALL: f"the photo is too small to judge the glass (its shorter side "
        f"is under {cfg.min_side_px} pixels); retake it with the phone filling the frame, or "
        "send the original file rather than a thumbnail",
        RejectReason.TOO_DARK: "the photo is too dark to see the phone; retake it in good "
        "light, without covering the lens",
        RejectReason.OVEREXPOSED: "the phone is washed out by glare or over-exposure; retake "
        "it away from direct light, tilting the phone so no reflection covers the glass",
        RejectReason.BLURRY: "the photo is blurred; hold the camera still, let it focus on "
        "the phone, and retake it",
        RejectReason.COMPRESSED: f"the photo was compressed so hard (JPEG quality under "
        f"{cfg.min_jpeg_quality}) that fine cracks are lost; send the original photo from the "
        "camera, not a copy from a chat or a web page",
        RejectReason.NOISY: "the photo is too grainy to see fine cracks; retake it in "
        "brighter light, holding the camera still",
        RejectReason.NOT_A_PHONE: f"no phone was found in this photo; take the {side} of the "
        "phone, filling most of the frame",
        RejectReason.WRONG_SIDE: f"this looks like the {OTHER_SIDE[slot]} of the phone, not "
        f"its {side}; check which photo goes in which slot and retake it if needed",
        RejectReason.DUPLICATE: "this photo was already submitted for another device; take "
        "a new photo of this device",
    }[reason]


class PhotoCheckConfig(BaseModel):
    """The photo check's thresholds (the service settings hold them; see module doc)."""

    min_side_px: int = Field(100, ge=0, description="shorter side below which a photo is "
                             "too small (pixels, as uploaded)")
    dark_p90: float = Field(0.12, ge=0, le=1, description="90th luminance percentile below "
                            "which a photo is too dark")
    overexposed_fraction: float = Field(0.8, ge=0, le=1, description="share of clipped white "
                                        "pixels in the central half above which a photo is "
                                        "overexposed")
    min_sharpness: float = Field(0.15, ge=0, description="edge sharpness below which a photo "
                                 "is blurry")
    min_jpeg_quality: int = Field(30, ge=0, le=100, description="estimated JPEG quality "
                                  "below which a photo is too compressed (0: never)")
    max_noise: float = Field(0.055, ge=0, description="noise (std, as a fraction of full "
                             "scale, at the working size) above which a photo is too noisy")
    min_phone_probability: float = Field(0.5, ge=0, le=1, description="P(phone) below which "
                                         "a photo shows no phone")
    sure_not_a_phone_probability: float = Field(
        0.05, ge=0, le=1, description="P(phone) below which a photo shows no phone, whatever "
        "its quality")
    max_wrong_side_probability: float = Field(0.7, ge=0, le=1, description="probability of "
                                              "the other side above which a photo is refused")
    duplicate_max_distance: int = Field(4, ge=0, le=64, description="perceptual-hash bits "
                                        "that may differ for two photos to be the same one")


class PhotoStats(BaseModel):
    """What :func:`measure` found in one decoded photo."""

    width: int
    height: int
    brightness_p90: float
    saturated_centre: float
    sharpness: float
    noise: float = Field(0.0, description="robust std of the sensor noise at the working "
                         "size, as a fraction of full scale (:func:`noise_level`)")
    jpeg_quality: int | None = Field(None, description="the file's estimated JPEG quality "
                                     "(None: not a JPEG)")
    phash: str = Field(description="64-bit DCT perceptual hash, 16 hex digits")


class SideScores(BaseModel):
    """The photo-check model's view of one photo."""

    phone: float = Field(description="P(a phone is in the photo)")
    back: float = Field(description="P(it shows the back | a phone)")
    cracked: float | None = Field(
        None, description="P(the screen is cracked | a front photo), by the frozen features "
                          "(None: the heads have no such probe); see :func:`blend_cracked`")

    def side(self, slot: Slot) -> float:
        """P(the photo shows ``slot``'s side)."""
        return self.back if slot == "back" else 1 - self.back


class Rejection(BaseModel):
    """One refused photo: its slot, the reason and what to tell the person."""

    slot: Slot
    reason: RejectReason
    detail: str


def _grey_u8(luma: Image.Image) -> np.ndarray:
    """The luminance (mode ``L``) as uint8 at :data:`WORK_SIZE` on the long side (never
    enlarged); ``_LEVELS[v]`` is the value in [0, 1] the measured checks work with."""
    w, h = luma.size
    scale = WORK_SIZE / max(w, h)
    if scale < 1:
        luma = luma.resize((max(1, round(w * scale)), max(1, round(h * scale))),
                           Image.Resampling.BILINEAR, reducing_gap=2.0)
    return np.asarray(luma)


#: The float32 luminance of each uint8 level (as ``np.asarray(grey, np.float32) / 255``).
_LEVELS = np.arange(256, dtype=np.float32) / 255
#: The first level counted as white-clipped (``_LEVELS[v] >= 0.97``, i.e. 248).
_CLIPPED = int(np.argmax(_LEVELS >= 0.97))


def _linear_ranks(n: int, q: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """numpy's default ('linear') percentile rule for a sorted sample of ``n``: the ranks
    below and above each ``q`` (%) and the weight of the one above."""
    virtual = (n - 1) * np.true_divide(q, 100)
    below = np.floor(virtual)
    gamma = virtual - below
    last = virtual >= n - 1
    lo = np.where(last, n - 1, below).astype(np.intp)
    return lo, np.where(last, lo, lo + 1), gamma


_Value = np.ndarray | np.floating  # an array, or one value (float32 arithmetic)


def _lerp(a: _Value, b: _Value, t: np.ndarray | float) -> np.ndarray:
    """numpy's percentile interpolation (from the nearer neighbour), same dtypes."""
    d = b - a
    return np.where(t >= 0.5, b - d * (1 - t), a + d * t)


def _percentiles_u8(counts: np.ndarray, qs: list[float]) -> np.ndarray:
    """``np.percentile(_LEVELS[v], qs)`` (float64, exactly) from the counts of each uint8
    level ``v``: the order statistics are read off the cumulative counts."""
    lo, hi, gamma = _linear_ranks(int(counts.sum()), np.asarray(qs, np.float64))
    cum = np.cumsum(counts)
    return _lerp(_LEVELS[np.searchsorted(cum, lo, side="right")],
                 _LEVELS[np.searchsorted(cum, hi, side="right")], gamma)


def _edge_percentile(grey: np.ndarray, q: float) -> float:
    """``np.percentile`` (one scalar ``q``, so interpolated in float32) of the float32
    ``|diff|`` of :data:`_LEVELS` along both axes, exactly, sorting only its top: the
    integer steps say which step the order statistics have (the float differences of one
    step vary by a rounding, but lie wholly below those of the next); the float differences
    from that step up are then sorted."""
    h, w = grey.shape
    n = h * (w - 1) + (h - 1) * w
    if n == 0:
        return 0.0
    flat = grey.ravel()
    wide = flat.astype(np.int16)
    # |steps| to the right neighbour (each row end's wrap to the next row set to 0: not
    # counted in n, never among the top sorted), then to the one below
    steps = np.empty(2 * flat.size - 1 - w, np.int16)
    right, below = steps[:flat.size - 1], steps[flat.size - 1:]
    np.subtract(wide[1:], wide[:-1], out=right)
    np.subtract(wide[w:], wide[:-w], out=below)
    np.abs(steps, out=steps)
    right[w - 1::w] = 0
    lo, hi, gamma = _linear_ranks(n, np.array([q]))
    first, last = 0, 255  # the smallest step with fewer than n - lo steps above it
    while first < last:
        mid = (first + last) // 2
        if np.count_nonzero(steps > mid) < n - lo[0]:
            last = mid
        else:
            first = mid + 1
    first = max(first, 1)  # step 0's differences are all 0.0
    at = np.flatnonzero(steps >= first)
    split = int(np.searchsorted(at, right.size))
    ends = np.concatenate([at[:split] + 1, at[split:] - right.size + w])
    starts = np.concatenate([at[:split], at[split:] - right.size])
    top = np.sort(np.abs(_LEVELS[flat[ends]] - _LEVELS[flat[starts]]))
    start = n - top.size
    a, b = (top[r - start] if r >= start else np.float32(0) for r in (lo[0], hi[0]))
    return float(_lerp(a, b, float(gamma[0])))


def noise_level(grey: np.ndarray) -> float:
    """The std of the noise in a uint8 luminance, as a fraction of full scale: the median
    absolute response to the Laplacian-like mask ``[1 -2 1]^T [1 -2 1]`` (blind to flat and
    sloped regions; edges are too few to move a median), over the normal distribution's
    0.6745 and the mask's gain of 6 (Immerkaer's estimator, made robust)."""
    g = grey.astype(np.int16)
    if min(g.shape) < 3:
        return 0.0
    rows = g[:, :-2] - 2 * g[:, 1:-1] + g[:, 2:]
    both = np.abs(rows[:-2] - 2 * rows[1:-1] + rows[2:]).ravel()
    median = int(np.searchsorted(np.cumsum(np.bincount(both)), (both.size + 1) // 2))
    return median / 255 / 0.6745 / 6


def _dct_matrix(n: int) -> np.ndarray:
    k = np.arange(n)
    return np.cos(np.pi * (2 * k[None, :] + 1) * k[:, None] / (2 * n))


_DCT32 = _dct_matrix(32)


def perceptual_hash(image: Image.Image) -> str:
    """pHash: the signs of the 8x8 lowest DCT frequencies of the 32x32 luminance against
    their median (the DC term excluded from the median), as 16 hex digits."""
    luma = image if image.mode == "L" else image.convert("L")
    small = np.asarray(luma.resize((32, 32), Image.Resampling.LANCZOS), np.float64)
    low = (_DCT32 @ small @ _DCT32.T)[:8, :8].ravel()
    return np.packbits(low > np.median(low[1:])).tobytes().hex()


def hamming(a: str, b: str) -> int:
    """Bits that differ between two :func:`perceptual_hash` values."""
    return (int(a, 16) ^ int(b, 16)).bit_count()


def measure(image: Image.Image) -> PhotoStats:
    """The measured evidence of one decoded, upright RGB photo (on uint8 histograms, equal
    to the float statistics the thresholds were validated with)."""
    luma = image if image.mode == "L" else image.convert("L")  # once, for all below
    grey = _grey_u8(luma)
    p1, p90, p99 = _percentiles_u8(np.bincount(grey.ravel(), minlength=256), [1, 90, 99])
    edge = _edge_percentile(grey, 99.5)
    h, w = grey.shape
    centre = grey[h // 4: max(h // 4 + 1, 3 * h // 4), w // 4: max(w // 4 + 1, 3 * w // 4)]
    return PhotoStats(width=image.width, height=image.height, brightness_p90=float(p90),
                      saturated_centre=float((centre >= _CLIPPED).mean()),
                      sharpness=edge / max(float(p99 - p1), 0.05), noise=noise_level(grey),
                      jpeg_quality=image.info.get(QUALITY_KEY), phash=perceptual_hash(luma))


def measured_reason(stats: PhotoStats, cfg: PhotoCheckConfig,
                    scores: SideScores | None = None) -> RejectReason | None:
    """The first measured reason to refuse the photo (with ``scores``, a sure
    ``not_a_phone`` comes before over-exposure and blur), or None."""
    if min(stats.width, stats.height) < cfg.min_side_px:
        return RejectReason.TOO_SMALL
    if stats.jpeg_quality is not None and stats.jpeg_quality < cfg.min_jpeg_quality:
        return RejectReason.COMPRESSED  # a fact of the file, and a cause of apparent blur
    if stats.brightness_p90 < cfg.dark_p90:
        return RejectReason.TOO_DARK
    if scores is not None and scores.phone < cfg.sure_not_a_phone_probability:
        return RejectReason.NOT_A_PHONE
    if stats.saturated_centre > cfg.overexposed_fraction:
        return RejectReason.OVEREXPOSED
    if stats.sharpness < cfg.min_sharpness:
        return RejectReason.BLURRY
    if stats.noise > cfg.max_noise:
        return RejectReason.NOISY
    return None


def learned_reason(scores: SideScores, slot: Slot, cfg: PhotoCheckConfig) -> RejectReason | None:
    """The learned reason to refuse the photo in ``slot``, or None."""
    if scores.phone < cfg.min_phone_probability:
        return RejectReason.NOT_A_PHONE
    if 1 - scores.side(slot) > cfg.max_wrong_side_probability:
        return RejectReason.WRONG_SIDE
    return None


def check(stats: PhotoStats, scores: SideScores | None, slot: Slot,
          cfg: PhotoCheckConfig) -> Rejection | None:
    """The photo's rejection (in the order of the module doc), or None."""
    reason = measured_reason(stats, cfg, scores)
    if reason is None and scores is not None:
        reason = learned_reason(scores, slot, cfg)
    if reason is None:
        return None
    return Rejection(slot=slot, reason=reason, detail=retake_advice(reason, slot, cfg))


def duplicate(slot: Slot, cfg: PhotoCheckConfig) -> Rejection:
    """The rejection of a photo already submitted for another device."""
    reason = RejectReason.DUPLICATE
    return Rejection(slot=slot, reason=reason, detail=retake_advice(reason, slot, cfg))


class SideHeads:
    """The photo-check model's logistic regressions on standardised pooled features:
    ``phone`` (a phone or not), ``back`` (back or front, given a phone) and, optionally,
    ``cracked`` (a cracked screen or not, given a front photo: the frozen-feature probe).
    Saved as one ``.npz`` of plain arrays, applied with numpy."""

    KEYS = ("mean", "scale", "phone_coef", "phone_intercept", "back_coef", "back_intercept")
    CRACKED_KEYS = ("cracked_coef", "cracked_intercept")

    def __init__(self, arrays: dict[str, np.ndarray]):
        missing = [k for k in self.KEYS if k not in arrays]
        if missing:
            raise ValueError(f"photo-check heads lack {', '.join(missing)}")
        keys = self.KEYS + tuple(k for k in self.CRACKED_KEYS if k in arrays)
        self.arrays = {k: np.asarray(arrays[k], np.float64) for k in keys}

    @property
    def has_cracked(self) -> bool:
        """Whether the heads include the cracked-screen probe."""
        return "cracked_coef" in self.arrays

    @classmethod
    def load(cls, path: str | Path) -> SideHeads:
        with np.load(path) as f:
            return cls({k: f[k] for k in f.files})

    def save(self, path: str | Path) -> None:
        np.savez(path, **self.arrays)  # type: ignore[arg-type]

    def scores(self, pooled: np.ndarray) -> list[SideScores]:
        """One :class:`SideScores` per row of ``pooled`` (N, C)."""
        a = self.arrays
        z = (np.asarray(pooled, np.float64) - a["mean"]) / a["scale"]
        phone = _sigmoid(z @ a["phone_coef"] + a["phone_intercept"])
        back = _sigmoid(z @ a["back_coef"] + a["back_intercept"])
        cracked: list[float | None] = [None] * len(z)
        if self.has_cracked:
            cracked = [float(c) for c in _sigmoid(z @ a["cracked_coef"]
                                                  + a["cracked_intercept"])]
        return [SideScores(phone=float(p), back=float(b), cracked=c)
                for p, b, c in zip(phone, back, cracked, strict=True)]


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return 1 / (1 + np.exp(-np.clip(z, -50, 50)))


def blend_cracked(probs: np.ndarray, p_cracked: float, weight: float) -> np.ndarray:
    """The screen's condition probabilities (in :data:`~vision.conditions.SCREEN_CONDITIONS`
    order, cracked last) with P(cracked) replaced by ``(1 - weight) * probs[cracked] + weight
    * p_cracked``, the frozen-feature probe's second opinion; the other conditions keep their
    proportions. On real photos from sources the model never saw, this mix of the fine-tuned
    model and the probe ranks and decides cracked screens better than the model alone
    (docs/training.md, "The photo check")."""
    probs = np.asarray(probs, np.float64)
    cracked = (1 - weight) * probs[-1] + weight * p_cracked
    rest = probs[:-1]
    total = rest.sum()
    rest = rest * ((1 - cracked) / total) if total > 1e-12 else np.full(
        rest.shape, (1 - cracked) / len(rest))
    return np.append(rest, cracked)


class PhotoVerdict(BaseModel):
    """Everything the check found about one photo, and its rejection if any."""

    slot: Slot
    stats: PhotoStats
    scores: SideScores | None = None
    rejection: Rejection | None = None
