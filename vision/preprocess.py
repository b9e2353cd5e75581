"""Image decoding and preprocessing shared by training and serving.

Torch-free on purpose: the serving runtime (ONNX Runtime) imports this module and must never
import torch. Training's eval transform is ``normalize(load_rgb_resized(...))``, which is exactly
what :func:`preprocess` computes, so a file gives the same tensor in training and in serving.

Pipeline: open lazily -> reject oversized images before decoding -> JPEG DCT-domain downscaling
(``draft``) to no less than the model size -> decode -> EXIF orientation -> RGB -> resize the
whole photo to ``img_size x img_size`` (bilinear) -> scale to [0, 1] -> (x - mean) / std, CHW.
"""

from __future__ import annotations

import io
from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageOps

from vision.errors import PhotogradeError
from vision.jpeg import QUALITY_KEY, decode_draft, estimated_quality

Source = bytes | bytearray | memoryview | str | Path

IMAGENET_MEAN: tuple[float, float, float] = (0.485, 0.456, 0.406)
IMAGENET_STD: tuple[float, float, float] = (0.229, 0.224, 0.225)
DEFAULT_MAX_PIXELS = 50_000_000
#: The one resampling filter, used everywhere (Pillow's bilinear is antialiased when shrinking:
#: its support widens with the scale factor, so no aliasing from large phone photos).
RESAMPLE = Image.Resampling.BILINEAR
#: Formats accepted from untrusted uploads; others (EPS runs Ghostscript, ...) are refused.
ALLOWED_FORMATS = ("JPEG", "MPO", "PNG", "WEBP", "HEIF", "AVIF", "TIFF", "BMP", "GIF")
RESIZE_POLICIES: tuple[str, ...] = ("squash",)
_WHITE = (255, 255, 255)
_heif_registered = False


class ImageError(PhotogradeError):
    """The upload is not a usable image (not an image, corrupt, truncated or too large)."""


class ImageTooLarge(ImageError):
    """The image has more pixels than allowed (a decompression bomb, or just too big)."""


class NotAnImage(ImageError):
    """The data is not an image, or not in an accepted format."""


def register_heif() -> None:
    """Register pillow-heif's HEIC/HEIF opener with Pillow (idempotent)."""
    global _heif_registered
    if not _heif_registered:
        import pillow_heif

        pillow_heif.register_heif_opener()
        _heif_registered = True


def _formats() -> tuple[str, ...]:
    Image.init()
    return tuple(f for f in ALLOWED_FORMATS if f in Image.OPEN)


def _to_rgb(im: Image.Image) -> Image.Image:
    """Convert any Pillow mode to 8-bit RGB; transparency is composited on white."""
    mode = im.mode
    if mode == "RGB":
        return im
    if mode.startswith("I;16"):
        # 16-bit grey: scale the full 0..65535 range to 0..255 (65535 / 255 == 257).
        arr = np.asarray(im).astype(np.float32) / 257.0
        return _grey_to_rgb(arr)
    if mode in ("I", "F"):
        arr = np.asarray(im).astype(np.float64)
        hi = float(arr.max()) if arr.size else 0.0
        lo = float(arr.min()) if arr.size else 0.0
        if mode == "F" and lo >= 0.0 and hi <= 1.0:
            arr = arr * 255.0  # float image in [0, 1]
        elif lo >= 0.0 and hi <= 255.0:
            pass  # already 8-bit range
        elif lo >= 0.0 and hi <= 65535.0:
            arr = arr / 257.0  # 16-bit data stored in a 32-bit mode
        else:
            arr = (arr - lo) * (255.0 / (hi - lo))  # anything else: stretch to 0..255
        return _grey_to_rgb(arr)
    if mode == "P":
        im = im.convert("RGBA" if "transparency" in im.info else "RGB")
    elif mode == "La":
        im = im.convert("LA").convert("RGBA")
    elif mode in ("LA", "PA", "RGBa"):
        im = im.convert("RGBA")
    if im.mode == "RGBA":
        background = Image.new("RGB", im.size, _WHITE)
        background.paste(im, mask=im.getchannel("A"))
        return background
    try:
        return im.convert("RGB")  # 1, L, CMYK, YCbCr, ...
    except ValueError as e:
        raise ImageError(f"unsupported image mode {mode!r}") from e


def _grey_to_rgb(arr: np.ndarray) -> Image.Image:
    grey = np.clip(np.rint(arr), 0, 255).astype(np.uint8)
    return Image.fromarray(grey).convert("RGB")


def _bomb_error(e: Exception, max_pixels: int) -> ImageTooLarge:
    pil_limit = Image.MAX_IMAGE_PIXELS
    limit = max_pixels if pil_limit is None else min(max_pixels, 2 * pil_limit)
    return ImageTooLarge(f"image too large: exceeds the limit of {limit} pixels ({e})")


def open_image(
    source: Source, *, max_pixels: int = DEFAULT_MAX_PIXELS, draft_size: int | None = None
) -> Image.Image:
    """Decode an image (bytes or a path) to an upright RGB Pillow image
    (:func:`open_image_sized` without the size as uploaded)."""
    return open_image_sized(source, max_pixels=max_pixels, draft_size=draft_size)[0]


def open_image_sized(
    source: Source, *, max_pixels: int = DEFAULT_MAX_PIXELS, draft_size: int | None = None
) -> tuple[Image.Image, tuple[int, int]]:
    """Decode an image (bytes or a path) to an upright RGB Pillow image, with its size as
    uploaded (read from the header, oriented like the image; the image may be smaller: the
    JPEG draft).

    The pixel count is checked from the header, before anything is decoded. With ``draft_size``,
    JPEGs are decoded with DCT scaling (1/2, 1/4 or 1/8) to a size whose shorter side is still
    at least ``draft_size``. Raises :class:`ImageError` for anything that is not a usable image
    (:class:`NotAnImage`, :class:`ImageTooLarge` or the base class for a corrupt one);
    a missing path raises ``FileNotFoundError``. A JPEG's estimated quality is in the image's
    ``info[vision.jpeg.QUALITY_KEY]``.

    Pillow's own decompression-bomb limit (``2 * Image.MAX_IMAGE_PIXELS``) also applies and is
    reported as "image too large". Its ``DecompressionBombWarning`` (between 1x and 2x the limit)
    is left as a warning: with the default ``max_pixels`` such images are refused anyway, and
    warning filters are process-global, so changing them per call is not thread-safe.
    """
    register_heif()
    fp: Any = source
    data = None
    if isinstance(source, bytes | bytearray | memoryview):
        data = bytes(source)
        fp = io.BytesIO(data)
    try:
        im = Image.open(fp, formats=_formats())
    except Image.DecompressionBombError as e:
        raise _bomb_error(e, max_pixels) from e
    except (FileNotFoundError, IsADirectoryError, PermissionError):
        raise
    except Image.UnidentifiedImageError as e:
        raise NotAnImage(
            f"not an image (or not a supported format: {', '.join(_formats())})"
        ) from e
    except Exception as e:
        raise NotAnImage(f"not an image: {type(e).__name__}: {e}") from e
    with im:
        w, h = im.size
        if w <= 0 or h <= 0:
            raise ImageError(f"empty image: {w} x {h} pixels")
        if w * h > max_pixels:
            raise ImageTooLarge(
                f"image too large: {w} x {h} pixels exceeds the limit of {max_pixels}")
        quality = estimated_quality(im)
        fast = decode_draft(data, im, draft_size) if draft_size and data else None
        if fast is not None:  # Pillow's pixels, decoded by simplejpeg (vision/jpeg.py)
            return _with_quality(fast, quality), _size_as_uploaded((w, h), fast)
        if draft_size and im.format in ("JPEG", "MPO"):
            # draft picks the largest 1/s (s in 8, 4, 2, 1) with s <= min(W // d, H // d), so
            # requesting a d x d square keeps the shorter side (hence both sides) >= d, whatever
            # the aspect ratio. Images smaller than d are decoded at full size.
            im.draft("RGB", (draft_size, draft_size))
        try:
            im.load()
        except Image.DecompressionBombError as e:
            raise _bomb_error(e, max_pixels) from e
        except Exception as e:
            raise ImageError(f"truncated or corrupt image: {type(e).__name__}: {e}") from e
        try:
            upright = ImageOps.exif_transpose(im)
        except Exception:
            upright = im.copy()  # unreadable EXIF: keep the stored orientation
    return _with_quality(_to_rgb(upright), quality), _size_as_uploaded((w, h), upright)


def _with_quality(image: Image.Image, quality: int | None) -> Image.Image:
    """``image`` with the file's estimated JPEG quality in its ``info`` (for the photo check's
    ``compressed``; see :func:`vision.jpeg.estimated_quality`)."""
    if quality is not None:
        image.info[QUALITY_KEY] = quality
    return image


def _size_as_uploaded(stored: tuple[int, int], upright: Image.Image) -> tuple[int, int]:
    """The stored (width, height) oriented like the upright image."""
    w, h = stored
    return (w, h) if (w >= h) == (upright.width >= upright.height) else (h, w)


@dataclass(frozen=True)
class PreprocessConfig:
    """How a photo becomes a model input; stored with the model (JSON) for serving.

    ``resize="squash"``: the whole photo is resized to ``img_size x img_size`` regardless of its
    aspect ratio. Every pixel of the photo stays in view, so a phone near the border is never
    cropped away; the aspect distortion is learned, since training uses the same transform.
    It is the only policy; the field exists so stored configs say which one they used.
    """

    img_size: int = 224
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    resize: str = "squash"

    def __post_init__(self) -> None:
        object.__setattr__(self, "mean", tuple(float(v) for v in self.mean))
        object.__setattr__(self, "std", tuple(float(v) for v in self.std))
        if self.img_size <= 0:
            raise ValueError(f"img_size must be positive, got {self.img_size}")
        if len(self.mean) != 3 or len(self.std) != 3 or min(self.std) <= 0:
            raise ValueError(f"mean/std need 3 values, std > 0: {self.mean}, {self.std}")
        if self.resize not in RESIZE_POLICIES:
            raise ValueError(
                f"unknown resize policy {self.resize!r}; expected one of {RESIZE_POLICIES}"
            )

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (tuples become lists)."""
        d = asdict(self)
        return {k: list(v) if isinstance(v, tuple) else v for k, v in d.items()}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> PreprocessConfig:
        """Inverse of :meth:`to_dict`; unknown keys are an error (they may change semantics)."""
        known = {f.name for f in fields(cls)}
        unknown = set(d) - known
        if unknown:
            raise ValueError(f"unknown preprocess config keys: {sorted(unknown)}")
        kw = dict(d)
        for key in ("mean", "std"):
            if key in kw:
                kw[key] = tuple(kw[key])
        return cls(**kw)


def resize_rgb(im: Image.Image, cfg: PreprocessConfig) -> np.ndarray:
    """Resize an RGB image to ``img_size x img_size`` (squash, bilinear); uint8 HxWx3."""
    if im.mode != "RGB":
        raise ValueError(f"expected an RGB image, got mode {im.mode!r}")
    size = (cfg.img_size, cfg.img_size)
    out = im if im.size == size else im.resize(size, RESAMPLE, reducing_gap=None)
    return np.asarray(out, dtype=np.uint8).copy()


def normalize(arr: np.ndarray, cfg: PreprocessConfig) -> np.ndarray:
    """uint8 HxWx3 -> float32 3xHxW, ``(x / 255 - mean) / std``."""
    if arr.dtype != np.uint8 or arr.ndim != 3 or arr.shape[2] != 3:
        raise ValueError(f"expected uint8 HxWx3, got {arr.dtype} {arr.shape}")
    mean = np.asarray(cfg.mean, dtype=np.float32)
    std = np.asarray(cfg.std, dtype=np.float32)
    x = (arr.astype(np.float32) / np.float32(255.0) - mean) / std
    return np.ascontiguousarray(x.transpose(2, 0, 1))


def load_rgb_resized(
    source: Source, cfg: PreprocessConfig, *, max_pixels: int = DEFAULT_MAX_PIXELS
) -> np.ndarray:
    """Decode (with JPEG draft at ``img_size``) and resize; uint8 HxWx3 (the training cache)."""
    return resize_rgb(open_image(source, max_pixels=max_pixels, draft_size=cfg.img_size), cfg)


def preprocess(
    source: Source, cfg: PreprocessConfig, *, max_pixels: int = DEFAULT_MAX_PIXELS
) -> np.ndarray:
    """THE serving transform: image bytes or path -> float32 (3, img_size, img_size)."""
    return normalize(load_rgb_resized(source, cfg, max_pixels=max_pixels), cfg)
