"""The photo check's measurements on uint8 histograms equal the float statistics its
thresholds were validated with (the code before, kept here as the reference)."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image, ImageFilter

from training.synth.phone import PhoneLook, render_back, render_front
from training.synth.scene import photograph
from vision.photocheck import (
    _CLIPPED,
    _DCT32,
    _LEVELS,
    WORK_SIZE,
    PhotoStats,
    _edge_percentile,
    _percentiles_u8,
    measure,
)


def reference_grey(image: Image.Image) -> np.ndarray:
    grey = image.convert("L")
    w, h = grey.size
    scale = WORK_SIZE / max(w, h)
    if scale < 1:
        grey = grey.resize((max(1, round(w * scale)), max(1, round(h * scale))),
                           Image.Resampling.BILINEAR, reducing_gap=2.0)
    return np.asarray(grey, np.float32) / 255


def reference_hash(image: Image.Image) -> str:
    small = np.asarray(image.convert("L").resize((32, 32), Image.Resampling.LANCZOS),
                       np.float64)
    low = (_DCT32 @ small @ _DCT32.T)[:8, :8].ravel()
    bits = low > np.median(low[1:])
    return f"{int(''.join('1' if b else '0' for b in bits), 2):016x}"


def reference_edge(a: np.ndarray) -> float:
    grads = np.concatenate([np.abs(np.diff(a, axis=1)).ravel(),
                            np.abs(np.diff(a, axis=0)).ravel()])
    return float(np.percentile(grads, 99.5)) if grads.size else 0.0


def reference_measure(image: Image.Image) -> PhotoStats:
    """``measure`` as it was validated (float32 luminance, np.percentile)."""
    luma = image.convert("L")
    a = reference_grey(luma)
    p1, p90, p99 = np.percentile(a, [1, 90, 99])
    h, w = a.shape
    centre = a[h // 4: max(h // 4 + 1, 3 * h // 4), w // 4: max(w // 4 + 1, 3 * w // 4)]
    return PhotoStats(width=image.width, height=image.height, brightness_p90=float(p90),
                      saturated_centre=float((centre >= 0.97).mean()),
                      sharpness=reference_edge(a) / max(float(p99 - p1), 0.05),
                      phash=reference_hash(luma))


def grey_cases() -> list[np.ndarray]:
    """uint8 luminance images: random, low-contrast, constant, one pixel, thin, a photo."""
    rng = np.random.default_rng(0)
    smooth = np.asarray(Image.fromarray(rng.integers(0, 256, (60, 80), np.uint8))
                        .filter(ImageFilter.GaussianBlur(6)))
    return [rng.integers(0, 256, (192, 256), np.uint8), smooth,
            rng.integers(100, 103, (50, 40), np.uint8), np.full((30, 20), 77, np.uint8),
            np.full((1, 1), 255, np.uint8), rng.integers(0, 256, (1, 9), np.uint8),
            rng.integers(0, 256, (7, 1), np.uint8),
            np.asarray(synthetic_photo(0).convert("L"))]


def synthetic_photo(i: int, size: tuple[int, int] = (300, 400)) -> Image.Image:
    """A small real-looking photo (front or back of a synthetic phone on a table)."""
    rng = np.random.default_rng([11, i])
    look = PhoneLook.sample(rng, height=int(size[1] * 0.45))
    part = (render_front if i % 2 == 0 else render_back)(rng, look, "none")
    return Image.fromarray(photograph(rng, part.rgb, part.alpha, size))


@pytest.mark.parametrize("case", range(8))
def test_percentiles_and_edges_equal_numpy(case):
    grey = grey_cases()[case]
    qs = [0, 1, 50, 90, 99, 99.5, 100]
    want = np.percentile(_LEVELS[grey], qs)
    got = _percentiles_u8(np.bincount(grey.ravel(), minlength=256), qs)
    assert got.dtype == want.dtype and np.array_equal(got, want)
    assert _edge_percentile(grey, 99.5) == reference_edge(_LEVELS[grey])


def test_clipping_level_and_gradient_buckets():
    assert _CLIPPED == 248 and _LEVELS[247] < 0.97 <= _LEVELS[248]
    # the float |diff| of each integer step lies wholly below those of the next step
    lo, hi = np.triu_indices(256)
    step, value = hi - lo, _LEVELS[hi] - _LEVELS[lo]
    top = np.full(256, -np.inf)
    bottom = np.full(256, np.inf)
    np.maximum.at(top, step, value)
    np.minimum.at(bottom, step, value)
    assert (top[:-1] < bottom[1:]).all()


@pytest.mark.parametrize("make", [
    lambda: synthetic_photo(0), lambda: synthetic_photo(1, (500, 375)),
    lambda: synthetic_photo(2).filter(ImageFilter.GaussianBlur(6)),
    lambda: Image.eval(synthetic_photo(3), lambda v: min(255, v * 4)),
    lambda: Image.new("RGB", (120, 90), (40, 30, 20)), lambda: synthetic_photo(4, (200, 150)),
])
def test_measure_equals_the_validated_float_code(make):
    im = make()
    new, old = measure(im), reference_measure(im)
    assert new.phash == old.phash and (new.width, new.height) == (old.width, old.height)
    for f in ("brightness_p90", "saturated_centre", "sharpness"):
        assert getattr(new, f) == pytest.approx(getattr(old, f), abs=1e-6, rel=0)
