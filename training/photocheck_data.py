"""The photo check's data: phone fronts and backs, scenes without a phone, natural photos.

Every source is something a fresh checkout can rebuild, with no download:

* phone fronts: the real fronts of an ``import-folder`` manifest and synthetic fronts;
* phone backs: synthetic backs (no labelled real backs exist);
* no phone: the synthetic generator's scenes with the phone left out (tables, cloth, desks,
  sometimes a hand), its screen contents alone (a wallpaper without a phone around it), and
  random crops of the natural photos that ship with scikit-image (:data:`TRAIN_NATURAL`);
* held out, never trained on: the natural photos of scikit-learn and matplotlib
  (:data:`TEST_NATURAL`) and, when present, the Debian wallpaper photographs under
  ``/usr/share/backgrounds`` (``apt install mate-backgrounds gnome-backgrounds``).
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path

import numpy as np
from PIL import Image, ImageFilter

from training.manifest import ManifestRow, load_manifest

#: scikit-image's bundled photographs and scans (``skimage/data``) the heads train on.
TRAIN_NATURAL = (
    "astronaut.png", "brick.png", "camera.png", "cell.png", "chelsea.png", "coffee.png",
    "coins.png", "color.png", "grass.png", "gravel.png", "horse.png", "hubble_deep_field.jpg",
    "ihc.png", "moon.png", "motorcycle_left.png", "page.png", "retina.jpg", "rocket.jpg",
    "text.png", "microaneurysms.png", "logo.png", "clock_motion.png")
#: Photos of other packages, for evaluation only.
TEST_NATURAL = ("sklearn:china.jpg", "sklearn:flower.jpg", "matplotlib:grace_hopper.jpg",
                "matplotlib:Minduka_Present_Blue_Pack.png")
WALLPAPERS = Path("/usr/share/backgrounds")


def _package_dir(name: str) -> Path:
    if name == "skimage":
        import skimage

        return Path(skimage.__file__).parent / "data"
    if name == "sklearn":
        import sklearn

        return Path(sklearn.__file__).parent / "datasets" / "images"
    import matplotlib

    return Path(matplotlib.get_data_path()) / "sample_data"


def train_natural() -> list[Path]:
    """scikit-image's photos (the package is in the ``[train]`` extra)."""
    return [_package_dir("skimage") / n for n in TRAIN_NATURAL]


def test_natural(kind: str = "photographs") -> list[Path]:
    """Held-out images without a phone: ``photographs`` (other packages' samples and the Debian
    wallpapers that are photographs of nature) or ``abstract`` (the other Debian wallpapers:
    gradients, patterns, pixel art)."""
    found = (sorted(p for p in WALLPAPERS.rglob("*") if p.suffix.lower() in
                    (".jpg", ".jpeg", ".png", ".webp") and p.stat().st_size > 30_000)
             if WALLPAPERS.is_dir() else [])
    if kind == "abstract":
        return [p for p in found if p.parent.name != "nature"]
    return [*(_package_dir(spec.split(":")[0]) / spec.split(":")[1] for spec in TEST_NATURAL),
            *(p for p in found if p.parent.name == "nature")]


def jpeg(image: Image.Image, quality: int = 90) -> bytes:
    buf = io.BytesIO()
    image.convert("RGB").save(buf, "JPEG", quality=quality)
    return buf.getvalue()


def crops(paths: list[Path], n: int, seed: int) -> list[bytes]:
    """``n`` random crops (50-100% of each side, flipped half the time) cycling over
    ``paths``, as JPEG bytes."""
    rng = np.random.default_rng(seed)
    images = [Image.open(p).convert("RGB") for p in paths]
    out = []
    for i in range(n):
        im = images[i % len(images)]
        s = rng.uniform(0.5, 1.0)
        cw, ch = max(1, int(im.width * s)), max(1, int(im.height * s))
        x, y = int(rng.integers(0, im.width - cw + 1)), int(rng.integers(0, im.height - ch + 1))
        crop = im.crop((x, y, x + cw, y + ch))
        if rng.random() < 0.5:
            crop = crop.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
        out.append(jpeg(crop))
    return out


def empty_scenes(n: int, seed: int) -> list[bytes]:
    """``n`` synthetic scenes without a phone (the generator's backgrounds, light, camera)."""
    from training.synth.scene import empty_scene, encode_jpeg

    out = []
    for i in range(n):
        rng = np.random.default_rng([seed, i])
        size = (int(rng.uniform(300, 900)), int(rng.uniform(300, 900)))
        out.append(encode_jpeg(empty_scene(rng, size), rng))
    return out


def _sampled_rows(manifest: str | Path, view: str, n: int | None, seed: int
                  ) -> list[ManifestRow]:
    rows = [r for r in load_manifest(manifest).rows
            if (r.front_path if view == "front" else r.back_path)]
    if n is not None and n < len(rows):
        rows = [rows[i] for i in np.random.default_rng(seed).choice(len(rows), n, replace=False)]
    return rows


def manifest_photos(manifest: str | Path, view: str, n: int | None = None,
                    seed: int = 0) -> list[Path]:
    """Up to ``n`` (all: None) ``front`` or ``back`` photo paths of a manifest, sampled."""
    paths = [r.front_path if view == "front" else r.back_path
             for r in _sampled_rows(manifest, view, n, seed)]
    return [p for p in paths if p is not None]


def front_cracked(manifest: str | Path, n: int | None = None, seed: int = 0) -> np.ndarray:
    """For the front photos :func:`manifest_photos` picks (same ``n`` and ``seed``): 1 when
    the screen is cracked, 0 when it is not, -1 when the label does not say (int8)."""
    from training.metrics import cracked_truth
    from vision.conditions import SCREEN_CONDITIONS

    screens = [r.screen for r in _sampled_rows(manifest, "front", n, seed)]
    allowed = np.array([[c in (s or ()) for c in SCREEN_CONDITIONS] for s in screens], bool)
    truth = cracked_truth(allowed.reshape(-1, len(SCREEN_CONDITIONS)),
                          SCREEN_CONDITIONS.index("cracked"))
    return np.where([s is None for s in screens], -1, truth).astype(np.int8)


def manifest_sources(manifest: str | Path) -> list[str]:
    """The ``source`` of each front photo of a manifest ("" when unknown)."""
    return [r.source or "" for r in load_manifest(manifest).rows if r.front_path]


def degraded(paths: list[Path], kind: str) -> Iterator[bytes]:
    """The photos made unusable: ``blurred`` (Gaussian, 1.5% of the long side) or ``black``
    (the exposure divided by 20)."""
    for p in paths:
        im = Image.open(p).convert("RGB")
        if kind == "blurred":
            im = im.filter(ImageFilter.GaussianBlur(0.015 * max(im.size)))
        else:
            im = Image.eval(im, lambda v: v // 20)
        yield jpeg(im)


def screen_images(n: int, seed: int) -> list[bytes]:
    """``n`` screen contents alone, filling the frame (home or lock screens over gradients,
    photos or abstract art): a wallpaper is no phone until a phone's frame is around it."""
    from training.synth.phone import _wallpaper
    from training.synth.scene import encode_jpeg

    out = []
    for i in range(n):
        rng = np.random.default_rng([seed, i])
        w, h = int(rng.uniform(300, 700)), int(rng.uniform(300, 700))
        img = np.clip(_wallpaper(rng, h, w) * 255 + 0.5, 0, 255).astype(np.uint8)
        out.append(encode_jpeg(img, rng))
    return out
