"""The device crop: the perspective warp straightens a known quad exactly, and crop_device
decodes only as large as the crop needs."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image, ImageDraw

from vision.crop import crop_size, perspective_coefficients, quad_sides, rectify
from vision.geometry import Quad

QUAD = Quad.from_points([(120, 60), (300, 90), (280, 420), (90, 380)], 400, 500)


def _photo() -> Image.Image:
    """A dark photo with a bright quadrilateral "device" whose top-left quarter is red."""
    im = Image.new("RGB", (400, 500), (20, 20, 20))
    d = ImageDraw.Draw(im)
    d.polygon([(c.x, c.y) for c in QUAD.corners], fill=(230, 230, 230))
    p = QUAD.points()
    centre = p.mean(0)
    d.polygon([tuple(p[0]), tuple((p[0] + p[1]) / 2), tuple(centre), tuple((p[0] + p[3]) / 2)],
              fill=(220, 0, 0))
    return im


def test_the_coefficients_map_the_output_corners_onto_the_quad():
    w, h = crop_size(QUAD, 300)
    dst = np.array([(0, 0), (w, 0), (w, h), (0, h)], np.float64)
    a, b, c, d, e, f, g, hh = perspective_coefficients(QUAD.points(), dst)
    for (u, v), (x, y) in zip(dst, QUAD.points(), strict=True):
        den = g * u + hh * v + 1
        assert (a * u + b * v + c) / den == pytest.approx(x, abs=1e-6)
        assert (d * u + e * v + f) / den == pytest.approx(y, abs=1e-6)


def test_rectify_straightens_the_device_and_keeps_its_orientation():
    crop = np.asarray(rectify(_photo(), QUAD, 300)).astype(int)
    w, h = quad_sides(QUAD)
    assert crop.shape[0] == 300 and crop.shape[1] == round(300 * w / h)  # portrait kept
    inner = crop[6:-6, 6:-6]
    assert (inner.sum(axis=2) > 150).mean() > 0.97  # all device (white or red), no background
    top_left = crop[10:crop.shape[0] // 2 - 10, 10:crop.shape[1] // 2 - 10]
    assert (top_left[..., 0] > 180).all() and (top_left[..., 1] < 60).mean() > 0.95  # red
    bottom_right = crop[crop.shape[0] // 2 + 10:-10, crop.shape[1] // 2 + 10:-10]
    assert (bottom_right.min(axis=2) > 180).all()  # and nowhere else


def test_crop_device_decodes_just_large_enough(monkeypatch, synth_dir):
    """With a localiser that finds the generator's device (its own labels stand in for a
    trained model), the crop comes from a draft decode no larger than needed."""
    from training.manifest import load_manifest
    from vision import crop as crop_module

    row = next(r for r in load_manifest(synth_dir / "manifest.csv").rows if r.front_geometry)
    geo = row.front_geometry
    assert geo is not None and row.front_path is not None

    class Truth:
        class pre:
            img_size = 64

        def localise_images(self, images, sizes):
            from vision.localise import Localisation

            return [Localisation(width=geo.width, height=geo.height, device=geo.device,
                                 probability=1.0, found=True)]

    decoded = []
    real = crop_module.open_image_sized

    def recorded(source, **kw):
        image, size = real(source, **kw)
        decoded.append((kw.get("draft_size"), image.size, size))
        return image, size

    monkeypatch.setattr(crop_module, "open_image_sized", recorded)
    truth = Truth()
    loc, crop = crop_module.crop_device(row.front_path, truth, long_side=96)  # type: ignore[arg-type]
    assert loc.found and crop.size == crop_size(geo.device, 96)
    (small, _, size), *again = decoded
    assert small == 64
    longest = max(quad_sides(geo.device))
    for draft, got, _ in again:  # decoded again only when the small one was too small
        need = min(96 / longest, 1.0) * min(size)
        assert draft == int(np.ceil(need)) and min(got) >= need  # never smaller than needed
        assert min(got) < 2 * need or min(got) == min(size)  # DCT scaling: at most 2x more
    for long_side in (16, 400):  # a tiny crop needs no second decode; a big one does
        decoded.clear()
        crop_module.crop_device(row.front_path, truth, long_side=long_side)  # type: ignore[arg-type]
        assert len(decoded) == (1 if long_side == 16 else 2)


def test_a_map_over_the_crop_goes_back_onto_the_quad_it_came_from():
    """warp_to_photo inverts rectify: a map that is 1 on the crop's red quarter lands on the
    photo's red quarter, and nothing lands outside the device."""
    from vision.crop import warp_to_photo

    photo = np.asarray(_photo()).astype(int)
    crop = np.asarray(rectify(_photo(), QUAD, 300)).astype(int)
    values = ((crop[..., 0] > 180) & (crop[..., 1] < 60)).astype(np.float32)  # red quarter
    corners = QUAD.points() / (400, 500)
    back = warp_to_photo(values, corners, (400, 500))
    assert back.shape == (500, 400)
    red = (photo[..., 0] > 180) & (photo[..., 1] < 60)
    background = photo.sum(axis=2) < 100
    assert back[red].mean() > 0.95 and back[background].mean() < 0.01
    x0, y0 = QUAD.points().min(0).astype(int) - 2
    x1, y1 = QUAD.points().max(0).astype(int) + 2
    assert back[:y0].max() == back[y1:].max() == back[:, :x0].max() == back[:, x1:].max() == 0
    assert back[~red & ~background].mean() < 0.05  # the rest of the device stays cold
    half = warp_to_photo(values, corners, (200, 250))  # any output size: the same place
    assert half.shape == (250, 200) and half[red[::2, ::2]].mean() > 0.9
