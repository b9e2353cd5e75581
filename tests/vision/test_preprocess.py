"""Image decoding and preprocessing (torch-free)."""

from __future__ import annotations

import io
import struct
import subprocess
import sys
import zlib

import numpy as np
import pytest
from PIL import Image

from vision.preprocess import (
    ImageError,
    PreprocessConfig,
    load_rgb_resized,
    normalize,
    open_image,
    preprocess,
)

CFG = PreprocessConfig(img_size=64)


def _encode(im: Image.Image, fmt: str, **kw) -> bytes:
    buf = io.BytesIO()
    im.save(buf, fmt, **kw)
    return buf.getvalue()


def _gradient(w: int = 120, h: int = 80) -> Image.Image:
    x = np.linspace(0, 255, w, dtype=np.float32)[None, :].repeat(h, 0)
    y = np.linspace(0, 255, h, dtype=np.float32)[:, None].repeat(w, 1)
    return Image.fromarray(np.stack([x, y, 255 - x], -1).astype(np.uint8))


def _png_header(w: int, h: int) -> bytes:
    """A PNG whose header claims w x h 1-bit pixels (its data is tiny, never decoded)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
        )

    ihdr = struct.pack(">IIBBBBB", w, h, 1, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", ihdr)
        + chunk(b"IDAT", zlib.compress(b"\0" * 64))
        + chunk(b"IEND", b"")
    )


def _check(arr: np.ndarray, size: int = CFG.img_size) -> None:
    assert arr.shape == (3, size, size) and arr.dtype == np.float32
    assert np.isfinite(arr).all()


def test_torch_free() -> None:
    code = "import sys, vision.preprocess; assert 'torch' not in sys.modules, 'torch imported'"
    subprocess.run([sys.executable, "-c", code], check=True)


@pytest.mark.parametrize(
    "data",
    [b"", b"hello, not an image", b"\x89PNG\r\n\x1a\n garbage"],
    ids=["empty", "text", "png"],
)
def test_not_an_image(data: bytes) -> None:
    with pytest.raises(ImageError, match="not an image"):
        preprocess(data, CFG)


def test_truncated_jpeg() -> None:
    data = _encode(_gradient(400, 300), "JPEG", quality=90)
    with pytest.raises(ImageError, match="truncated or corrupt"):
        preprocess(data[: len(data) // 2], CFG)


def test_truncated_png() -> None:
    data = _encode(
        Image.fromarray(np.random.default_rng(0).integers(0, 255, (50, 60, 3), np.uint8)), "PNG"
    )
    with pytest.raises(ImageError, match="truncated or corrupt"):
        preprocess(data[: len(data) // 2], CFG)


@pytest.mark.parametrize("side", [8000, 30000])  # our limit (64 Mpx) / Pillow's bomb error
def test_too_many_pixels(side: int) -> None:
    with pytest.raises(ImageError, match=r"image too large.*limit of 50000000"):
        preprocess(_png_header(side, side), CFG)


def test_max_pixels_argument() -> None:
    data = _encode(_gradient(100, 100), "PNG")
    with pytest.raises(ImageError, match="100 x 100 pixels exceeds the limit of 5000"):
        preprocess(data, CFG, max_pixels=5000)


def test_exif_orientation() -> None:
    arr = np.zeros((20, 40, 3), np.uint8)
    arr[:, :20] = (255, 0, 0)  # left half red
    arr[:, 20:] = (0, 0, 255)  # right half blue
    exif = Image.Exif()
    exif[0x0112] = 6  # stored rotated: display = rotate 90 degrees clockwise
    im = open_image(_encode(Image.fromarray(arr), "JPEG", quality=95, exif=exif))
    assert im.size == (20, 40)
    out = np.asarray(im).astype(int)
    assert out[5, 10, 0] > 200 and out[5, 10, 2] < 60  # top is red
    assert out[35, 10, 2] > 200 and out[35, 10, 0] < 60  # bottom is blue


def test_sixteen_bit_png_is_scaled_not_clipped() -> None:
    values = np.linspace(0, 65535, 64 * 16).reshape(16, 64).astype(np.uint16)
    data = _encode(Image.fromarray(values), "PNG")
    im = open_image(data)
    out = np.asarray(im)
    assert im.mode == "RGB"
    np.testing.assert_allclose(out[..., 0], values / 257.0, atol=0.51)
    assert out.max() == 255 and out[..., 0].std() > 50
    _check(preprocess(data, CFG))


def test_rgba_composited_on_white() -> None:
    arr = np.zeros((30, 30, 4), np.uint8)
    arr[:, 15:] = (255, 0, 0, 255)  # right half opaque red, left half transparent
    im = open_image(_encode(Image.fromarray(arr, "RGBA"), "PNG"))
    out = np.asarray(im)
    assert tuple(out[0, 0]) == (255, 255, 255) and tuple(out[0, 29]) == (255, 0, 0)


@pytest.mark.parametrize(
    ("mode", "fmt"),
    [
        ("CMYK", "JPEG"),
        ("P", "PNG"),
        ("RGBA", "WEBP"),
        ("LA", "PNG"),
        ("L", "JPEG"),
        ("1", "PNG"),
        ("I", "TIFF"),
        ("F", "TIFF"),
        ("RGB", "WEBP"),
        ("RGB", "GIF"),
        ("RGB", "BMP"),
    ],
)
def test_modes_and_formats(mode: str, fmt: str) -> None:
    ramp = np.linspace(0, 1, 120)[None, :].repeat(80, 0)  # left to right, 0 to 1
    im = _gradient().convert(mode)
    if mode == "I":
        im = Image.fromarray((ramp * 65535).astype(np.int32))
    elif mode == "F":
        im = Image.fromarray(ramp.astype(np.float32))
    if mode == "P":
        im.info["transparency"] = 0
    data = _encode(im, fmt)
    out = open_image(data)
    assert out.mode == "RGB" and out.size == (120, 80)
    if mode in ("I", "F"):  # gradient survives the scaling to 8 bits
        grey = np.asarray(out)[..., 0].astype(int)
        assert grey[:, -1].mean() - grey[:, 0].mean() > 200
    _check(preprocess(data, CFG))


def test_heic(tmp_path) -> None:
    pillow_heif = pytest.importorskip("pillow_heif")
    path = tmp_path / "photo.heic"
    pillow_heif.from_pillow(_gradient()).save(path, quality=90)
    im = open_image(path)
    assert im.size == (120, 80)
    _check(preprocess(path, CFG))
    _check(preprocess(path.read_bytes(), CFG))


def test_eps_is_refused() -> None:
    eps = b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 10 10\nshowpage\n"
    with pytest.raises(ImageError, match="not an image"):
        preprocess(eps, CFG)


def test_missing_file(tmp_path) -> None:
    with pytest.raises(FileNotFoundError):
        preprocess(tmp_path / "nope.jpg", CFG)


@pytest.mark.parametrize(("w", "h"), [(3000, 4000), (4000, 1792), (1790, 2000), (100, 150)])
def test_jpeg_draft_keeps_shorter_side(w: int, h: int) -> None:
    data = _encode(_gradient(w, h), "JPEG", quality=80)
    full = open_image(data)
    drafted = open_image(data, draft_size=224)
    assert full.size == (w, h)
    assert min(drafted.size) >= min(224, w, h)
    if min(w, h) >= 448:
        assert drafted.size[0] < w  # DCT scaling was used
    aspect = w / h
    assert abs(drafted.size[0] / drafted.size[1] - aspect) < 0.02


def test_preprocess_is_cache_plus_normalize(tmp_path) -> None:
    cfg = PreprocessConfig(img_size=224, mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5))
    data = _encode(_gradient(3000, 2000), "JPEG", quality=85)
    path = tmp_path / "a.jpg"
    path.write_bytes(data)
    x = preprocess(data, cfg)
    _check(x, 224)
    assert np.array_equal(x, normalize(load_rgb_resized(path, cfg), cfg))
    assert x.min() >= -1.0 and x.max() <= 1.0


def test_normalize_values() -> None:
    arr = np.zeros((2, 2, 3), np.uint8)
    arr[0, 0] = (255, 0, 128)
    x = normalize(arr, PreprocessConfig(img_size=2, mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5)))
    assert x.shape == (3, 2, 2)
    np.testing.assert_allclose(x[:, 0, 0], [1.0, -1.0, 128 / 127.5 - 1], atol=1e-6)


def test_config_roundtrip_and_validation() -> None:
    cfg = PreprocessConfig(img_size=256, mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5))
    d = cfg.to_dict()
    assert d == {"img_size": 256, "mean": [0.5] * 3, "std": [0.5] * 3, "resize": "squash"}
    assert PreprocessConfig.from_dict(d) == cfg
    with pytest.raises(ValueError, match="resize policy"):
        PreprocessConfig(resize="crop")
    with pytest.raises(ValueError, match="unknown preprocess config keys"):
        PreprocessConfig.from_dict({**d, "crop_pct": 0.9})
