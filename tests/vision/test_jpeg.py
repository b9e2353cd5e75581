"""simplejpeg's draft decoding gives Pillow's pixels exactly: every scale (sizes on both sides
of each boundary), every EXIF orientation; anything else is left to Pillow."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image, ImageOps

from vision.jpeg import decode_draft, draft_scale
from vision.preprocess import open_image_sized

pytest.importorskip("simplejpeg")


def _jpeg(w: int, h: int, orientation: int = 1, mode: str = "RGB", seed: int = 0) -> bytes:
    rng = np.random.default_rng(seed)
    base = rng.integers(0, 255, (h // 8 + 1, w // 8 + 1, 3), dtype=np.uint8)
    im = Image.fromarray(base).resize((w, h), Image.Resampling.BICUBIC).convert(mode)
    exif = Image.Exif()
    exif[0x0112] = orientation
    buf = io.BytesIO()
    im.save(buf, "JPEG", quality=90, exif=exif.tobytes())
    return buf.getvalue()


def _pillow(data: bytes, size: int) -> Image.Image:
    with Image.open(io.BytesIO(data)) as im:
        im.draft("RGB", (size, size))
        im.load()
        return ImageOps.exif_transpose(im).convert("RGB")


@pytest.mark.parametrize("w,h", [(100, 80), (447, 600), (448, 600), (895, 1300), (896, 1300),
                                 (1791, 2400), (1792, 2400), (3000, 4000)])
def test_every_scale_gives_pillows_pixels(w, h):
    data = _jpeg(w, h)
    with Image.open(io.BytesIO(data)) as header:
        fast = decode_draft(data, header, 224)
    assert fast is not None
    ref = _pillow(data, 224)
    assert fast.size == ref.size and np.array_equal(np.asarray(fast), np.asarray(ref))
    s = draft_scale(w, h, 224)
    assert fast.size == (-(-w // s), -(-h // s)) and min(fast.size) >= min(224, w, h)


@pytest.mark.parametrize("orientation", range(1, 9))
def test_every_exif_orientation_is_applied_as_pillow_does(orientation):
    data = _jpeg(900, 1200, orientation, seed=orientation)
    image, size = open_image_sized(data, draft_size=224)  # the service's path: simplejpeg
    ref = _pillow(data, 224)
    assert np.array_equal(np.asarray(image), np.asarray(ref))
    assert size == ((1200, 900) if orientation >= 5 else (900, 1200))


def test_other_jpegs_and_corrupt_data_are_left_to_pillow():
    grey = _jpeg(600, 800, mode="L")
    with Image.open(io.BytesIO(grey)) as header:
        assert decode_draft(grey, header, 224) is None
    data = _jpeg(600, 800)
    broken = data[: len(data) // 2]
    with Image.open(io.BytesIO(broken)) as header:
        assert decode_draft(broken, header, 224) is None  # Pillow then names the problem


@pytest.mark.parametrize("subsampling", [0, 2])
def test_the_estimated_quality_is_libjpegs_setting(subsampling):
    from vision.jpeg import estimated_quality

    im = Image.new("RGB", (64, 48), (90, 140, 200))
    for quality in range(1, 101):
        buf = io.BytesIO()
        im.save(buf, "JPEG", quality=quality, subsampling=subsampling)
        assert estimated_quality(Image.open(buf)) == quality
    png = io.BytesIO()
    im.save(png, "PNG")
    assert estimated_quality(Image.open(png)) is None
