"""CAM heatmaps, damage boxes and overlays (vision/heatmap.py, torch-free)."""

from __future__ import annotations

import io
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from tests.support import ROOT
from vision.heatmap import cam_from_features, damage_box, jet, overlay_png


def test_heatmap_is_torch_free() -> None:
    code = "import vision.heatmap, sys; assert 'torch' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT)


def test_cam_points_at_the_active_corner() -> None:
    fmap = np.zeros((3, 8, 8), np.float32)
    fmap[0, 6:, 4:] = 2.0  # class 1's evidence: bottom-right quarter
    fmap[1, :2, :2] = 5.0  # another class's evidence: top-left
    weight = np.array([[0, 1, 0], [1, 0, -0.1], [0, 0, 1]], np.float32)
    cam = cam_from_features(fmap, weight, 1)
    assert cam.shape == (8, 8) and cam.max() == pytest.approx(1.0) and cam.min() == 0.0
    assert damage_box(cam) == pytest.approx((0.5, 0.75, 1.0, 1.0))
    assert damage_box(cam_from_features(fmap, weight, 0)) == pytest.approx((0, 0, 0.25, 0.25))


def test_cam_without_positive_evidence_stays_zero() -> None:
    fmap = np.ones((2, 4, 4), np.float32)
    cam = cam_from_features(fmap, np.array([[-1.0, -2.0]]), 0)
    assert not cam.any() and damage_box(cam) is None
    with pytest.raises(ValueError, match="does not fit"):
        cam_from_features(fmap, np.ones((4, 3)), 0)


def test_overlay_png_size_colour_and_exif() -> None:
    cam = np.zeros((4, 4), np.float32)
    cam[:, 2:] = 1.0  # right half hot
    photo = Image.new("RGB", (1000, 400), "white")
    out = Image.open(io.BytesIO(overlay_png(photo, cam, max_side=500)))
    assert out.format == "PNG" and out.size == (500, 200) and out.mode == "RGB"
    arr = np.asarray(out).astype(int)
    assert (arr[:, :100] == 255).all()  # cold: the photo untouched
    assert (arr[100, 450] != 255).any()  # hot: tinted
    assert tuple(jet(np.array(1.0))) == (128, 0, 0) and tuple(jet(np.array(0.0))) == (0, 0, 128)
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90°: the overlay is upright (portrait)
    buf = io.BytesIO()
    photo.save(buf, format="JPEG", exif=exif)
    rotated = Image.open(io.BytesIO(overlay_png(Image.open(buf), cam)))
    assert rotated.size == (307, 768)
