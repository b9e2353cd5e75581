"""Flat renders of a phone's front and back, with the part's defects drawn at a severity.

A render is an RGB float32 image (0..1) and an alpha mask of the body, in the phone's own
upright coordinates; :mod:`training.synth.scene` places it in a photo.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import cv2
import numpy as np

from training.synth import defects

Rng = np.random.Generator

BODY_COLOURS = {  # name: (back colour, frame colour), RGB 0..1
    "black": ((0.07, 0.07, 0.08), (0.16, 0.16, 0.17)),
    "graphite": ((0.22, 0.23, 0.25), (0.35, 0.36, 0.38)),
    "silver": ((0.85, 0.86, 0.86), (0.78, 0.79, 0.80)),
    "white": ((0.93, 0.93, 0.91), (0.80, 0.80, 0.80)),
    "gold": ((0.93, 0.85, 0.72), (0.85, 0.74, 0.55)),
    "rose": ((0.93, 0.78, 0.76), (0.88, 0.70, 0.66)),
    "blue": ((0.17, 0.29, 0.48), (0.30, 0.38, 0.52)),
    "sky": ((0.63, 0.76, 0.88), (0.70, 0.78, 0.84)),
    "green": ((0.24, 0.37, 0.30), (0.38, 0.45, 0.40)),
    "mint": ((0.75, 0.88, 0.80), (0.74, 0.80, 0.76)),
    "red": ((0.70, 0.08, 0.12), (0.65, 0.12, 0.15)),
    "purple": ((0.72, 0.66, 0.82), (0.68, 0.62, 0.76)),
    "yellow": ((0.96, 0.86, 0.45), (0.90, 0.82, 0.50)),
}


@dataclass(frozen=True)
class Render:
    """A flat render in the phone's upright coordinates: RGB float32 (0..1), the body's alpha,
    and the glass region's box (x0, y0, x1, y1) in continuous pixel coordinates (0..width):
    a front's display, a back's camera module."""

    rgb: np.ndarray
    alpha: np.ndarray
    glass: tuple[float, float, float, float]


#: Least visible extent (``defects.extent``) of a screen defect, in glass diagonals. Cracks
#: that start at a corner can run straight off the glass, and scratches can land on a wallpaper
#: of their own colour: such a draw would label a clean-looking screen, so it is redrawn.
MIN_SCREEN_EXTENT = {"light_scratches": 0.6, "heavy_scratches": 4.0, "cracked": 1.0}


@dataclass(frozen=True)
class PhoneLook:
    """Everything that makes one phone model look like itself, front and back alike."""

    height: int
    width: int
    corner: float
    colour: str
    finish: str  # glossy | matte | brushed
    style: str  # modern | classic
    camera: str  # square | vertical | bar | single
    cutout: str  # notch | punch | island | none
    white_front: bool

    @staticmethod
    def sample(rng: Rng, height: int) -> PhoneLook:
        style = "classic" if rng.random() < 0.2 else "modern"
        aspect = rng.uniform(1.85, 2.05) if style == "classic" else rng.uniform(2.0, 2.25)
        colour = str(rng.choice(list(BODY_COLOURS)))
        return PhoneLook(
            height=height, width=int(height / aspect),
            corner=rng.uniform(0.07, 0.12) if style == "classic" else rng.uniform(0.1, 0.17),
            colour=colour,
            finish=str(rng.choice(["glossy", "matte", "brushed"], p=[0.5, 0.35, 0.15])),
            style=style,
            camera=str(rng.choice(["square", "vertical", "bar", "single"],
                                  p=[0.35, 0.3, 0.15, 0.2])),
            cutout="none" if style == "classic" else str(
                rng.choice(["notch", "punch", "island"], p=[0.35, 0.45, 0.2])),
            white_front=style == "classic" and colour in ("white", "silver", "gold", "rose")
            and rng.random() < 0.6,
        )


def rounded_rect(mask: np.ndarray, box: tuple[float, float, float, float], radius: float,
                 value=1.0) -> None:
    """Fill a rounded rectangle (x0, y0, x1, y1) into ``mask`` (any channels)."""
    x0, y0, x1, y1 = (round(v) for v in box)
    r = int(max(1, min(radius, (x1 - x0) / 2, (y1 - y0) / 2)))
    cv2.rectangle(mask, (x0 + r, y0), (x1 - r, y1), value, -1, cv2.LINE_AA)
    cv2.rectangle(mask, (x0, y0 + r), (x1, y1 - r), value, -1, cv2.LINE_AA)
    for cx, cy in ((x0 + r, y0 + r), (x1 - r, y0 + r), (x0 + r, y1 - r), (x1 - r, y1 - r)):
        cv2.circle(mask, (cx, cy), r, value, -1, cv2.LINE_AA)


def smooth_field(rng: Rng, h: int, w: int, cells: int = 4, channels: int = 1) -> np.ndarray:
    """Low-frequency random field in 0..1, by upsampling a few random values."""
    small = rng.random((cells, max(2, int(cells * w / h)), channels)).astype(np.float32)
    out = cv2.resize(small, (w, h), interpolation=cv2.INTER_CUBIC)
    return np.clip(out.reshape(h, w, channels), 0, 1)


@functools.cache
def _photos() -> tuple[np.ndarray, ...]:
    """Real photographs for wallpapers: scikit-learn's bundled sample images (a temple and a
    flower), float32 RGB. Real screens show photos, whose busy textures must not read as
    cracks to the model."""
    from sklearn.datasets import load_sample_images

    return tuple(np.asarray(im, np.float32) / 255 for im in load_sample_images().images)


def _gradient(rng: Rng, h: int, w: int) -> np.ndarray:
    hue = rng.uniform(0, 180)
    hsv = np.zeros((4, 3, 3), np.float32)
    hsv[..., 0] = (hue + rng.normal(0, 25, (4, 3))) % 180
    hsv[..., 1] = rng.uniform(60, 255, (4, 3))
    hsv[..., 2] = rng.uniform(60, 255, (4, 3))
    rgb = cv2.cvtColor(hsv.astype(np.uint8), cv2.COLOR_HSV2RGB).astype(np.float32) / 255
    return cv2.resize(rgb, (w, h), interpolation=cv2.INTER_CUBIC)


def _photo_crop(rng: Rng, h: int, w: int) -> np.ndarray:
    """A random crop of a real photo, flipped, rotated, colour-shifted."""
    photo = _photos()[rng.integers(len(_photos()))]
    ph, pw = photo.shape[:2]
    scale = rng.uniform(0.3, 1.0)
    ch, cw = int(ph * scale), int(min(pw, ph * scale * w / h))
    y, x = rng.integers(0, ph - ch + 1), rng.integers(0, pw - cw + 1)
    crop = photo[y:y + ch, x:x + cw]
    if rng.random() < 0.5:
        crop = crop[:, ::-1]
    crop = np.rot90(crop, int(rng.integers(4))) if rng.random() < 0.3 else crop
    out = cv2.resize(np.ascontiguousarray(crop), (w, h), interpolation=cv2.INTER_AREA)
    return out[..., rng.permutation(3)] if rng.random() < 0.5 else out


def _busy(rng: Rng, h: int, w: int) -> np.ndarray:
    """Abstract art: colourful multi-scale noise, swirls and strokes."""
    img = np.zeros((h, w, 3), np.float32)
    for cells, weight in ((3, 0.5), (8, 0.3), (24, 0.2)):
        img += smooth_field(rng, h, w, cells, 3) * weight
    yy, xx = np.mgrid[0:h:4, 0:w:4].astype(np.float32)
    swirl = np.sin(xx / rng.uniform(5, 20) + np.sin(yy / rng.uniform(5, 20)) * 3)
    img += cv2.resize(swirl, (w, h))[..., None] * rng.uniform(-0.3, 0.3, 3).astype(np.float32)
    for _ in range(rng.integers(5, 30)):
        pts = rng.uniform((0, 0), (w, h), (int(rng.integers(2, 6)), 2)).astype(np.int32)
        cv2.polylines(img, [pts], False, rng.uniform(0, 1, 3).tolist(),
                      int(rng.integers(1, max(2, w // 30))), cv2.LINE_AA)
    return img


def _wallpaper(rng: Rng, h: int, w: int) -> np.ndarray:
    """A lit screen: a gradient, a photo or abstract art, with app icons or a lock-screen
    clock on top."""
    kind = rng.random()
    img = (_gradient(rng, h, w) if kind < 0.3 else _photo_crop(rng, h, w) if kind < 0.7
           else _busy(rng, h, w))
    img = np.ascontiguousarray(np.clip(img, 0, 1))
    if rng.random() < 0.65:  # home screen: a grid of app icons and a dock
        cols = int(rng.integers(4, 6))
        cell = w / cols
        size = int(cell * rng.uniform(0.55, 0.7))
        rows = int((h * 0.75) / (cell * 1.15))
        for r in range(rows):
            for c in range(cols):
                if rng.random() < 0.15:
                    continue
                x = int(c * cell + (cell - size) / 2)
                y = int(h * 0.07 + r * cell * 1.15)
                col = rng.uniform(0.1, 1.0, 3)
                rounded_rect(img, (x, y, x + size, y + size), size * 0.25, col.tolist())
                cv2.circle(img, (x + size // 2, y + size // 2), size // 5,
                           (1.0, 1.0, 1.0) if col.mean() < 0.6 else (0.1, 0.1, 0.1), -1,
                           cv2.LINE_AA)
        dock = img[int(h * 0.88):int(h * 0.98)]
        dock *= 0.6
        dock += 0.3
    else:  # lock screen with a clock
        text = f"{rng.integers(1, 13)}:{rng.integers(0, 60):02d}"
        scale = w / 110
        clock = np.zeros((h, w), np.uint8)
        cv2.putText(clock, text, (int(w * 0.18), int(h * 0.25)), cv2.FONT_HERSHEY_SIMPLEX, scale,
                    255, max(1, int(scale * 2)), cv2.LINE_AA)
        defects.blend(img, clock.astype(np.float32) / 255, (0.97, 0.97, 0.97))
    return img * rng.uniform(0.6, 1.0)


def _reflection(rng: Rng, h: int, w: int, strength: float) -> np.ndarray:
    """A soft diagonal band of light, as a window or lamp reflected in glass."""
    gh, gw = max(4, h // 8), max(4, w // 8)
    yy, xx = np.mgrid[0:gh, 0:gw].astype(np.float32)
    angle = rng.uniform(-1.2, 1.2)
    d = (xx - rng.uniform(0, gw)) * np.cos(angle) + (yy - rng.uniform(0, gh)) * np.sin(angle)
    band = strength * np.exp(-(d / (rng.uniform(0.1, 0.5) * gw)) ** 2)
    return cv2.resize(band.astype(np.float32), (w, h), interpolation=cv2.INTER_LINEAR)


def _frame(look: PhoneLook) -> tuple[np.ndarray, np.ndarray, np.ndarray, float]:
    """Body alpha, a thin outline band, the image filled with the frame colour, the radius."""
    h, w = look.height, look.width
    radius = look.corner * w
    alpha = np.zeros((h, w), np.float32)
    rounded_rect(alpha, (0, 0, w - 1, h - 1), radius)
    img = np.empty((h, w, 3), np.float32)
    img[:] = BODY_COLOURS[look.colour][1]
    k = max(3, int(w * 0.02)) | 1
    inner = cv2.erode(alpha, np.ones((k, k), np.uint8))
    return alpha, np.clip(alpha - inner, 0, 1), img, radius


def render_front(rng: Rng, look: PhoneLook, condition: str) -> Render:
    """The front: frame, glass, bezels, a dark or lit screen, and the screen's defects."""
    h, w = look.height, look.width
    drng = np.random.default_rng(rng.integers(1 << 62))  # defects: their own random stream
    alpha, outline, img, radius = _frame(look)
    t = max(2, w * 0.018)
    glass = np.zeros((h, w), np.float32)
    rounded_rect(glass, (t, t, w - 1 - t, h - 1 - t), radius - t)
    glass_colour = (0.93, 0.93, 0.92) if look.white_front else (0.025, 0.025, 0.03)
    defects.blend(img, glass, glass_colour)

    if look.style == "classic":
        sx0, sx1 = w * 0.065, w * 0.935
        sy0, sy1 = h * rng.uniform(0.11, 0.14), h * rng.uniform(0.86, 0.89)
    else:
        b = w * rng.uniform(0.025, 0.05)
        sx0, sx1, sy0, sy1 = t + b, w - t - b, t + b * 1.1, h - t - b * 1.3
    sh, sw = int(sy1 - sy0), int(sx1 - sx0)
    screen_on = rng.random() < 0.5
    if screen_on:
        content = _wallpaper(rng, sh, sw)
    else:
        content = np.empty((sh, sw, 3), np.float32)
        content[:] = rng.uniform(0.0, 0.05) + rng.normal(0, 0.004, 3)
    scr = np.zeros((h, w), np.float32)
    r_scr = 0 if look.style == "classic" else radius - t - b
    rounded_rect(scr, (sx0, sy0, sx1, sy1), r_scr)
    full = np.zeros_like(img)
    full[int(sy0):int(sy0) + sh, int(sx0):int(sx0) + sw] = content
    defects.lerp(img, full, scr)

    dark = (0.02, 0.02, 0.025)
    cx = w // 2
    if look.style == "classic":  # earpiece, front camera, home button
        ear = (int(w * 0.1), max(2, int(h * 0.006)))
        cv2.ellipse(img, (cx, int(sy0 * 0.5)), ear, 0, 0, 360, (0.2, 0.2, 0.2), -1, cv2.LINE_AA)
        cv2.circle(img, (cx - int(w * 0.2), int(sy0 * 0.5)), max(2, int(w * 0.025)), dark, -1,
                   cv2.LINE_AA)
        btn_c = (cx, int((sy1 + h - t) / 2))
        btn_r = int(min(w * 0.08, (h - t - sy1) * 0.35))
        cv2.circle(img, btn_c, btn_r, (0.5, 0.5, 0.5) if not look.white_front else
                   (0.75, 0.75, 0.75), max(1, w // 150), cv2.LINE_AA)
    elif look.cutout == "notch":
        rounded_rect(img, (cx - w * 0.22, sy0 - 5, cx + w * 0.22, sy0 + h * 0.035),
                     w * 0.04, dark)
    elif look.cutout == "punch":
        cv2.circle(img, (int(rng.choice([cx, sx0 + w * 0.08])), int(sy0 + h * 0.02)),
                   max(3, int(w * 0.025)), dark, -1, cv2.LINE_AA)
    elif look.cutout == "island":
        rounded_rect(img, (cx - w * 0.14, sy0 + h * 0.012, cx + w * 0.14, sy0 + h * 0.04),
                     h * 0.014, dark)

    bare = img.copy()
    floor = MIN_SCREEN_EXTENT.get(condition)
    for _ in range(8):  # a defect the label names must show on the glass: redraw it if not
        img[:] = bare
        _screen_defects(drng, img, glass, condition, screen_on, look)
        if floor is None or defects.extent(bare, img, glass) >= floor:
            break
    refl = _reflection(rng, h, w, rng.uniform(0.03, 0.2) * (0.5 if screen_on else 1.0))
    img += cv2.cvtColor(refl * glass, cv2.COLOR_GRAY2RGB)
    defects.blend(img, outline, [min(1.0, c + 0.15) for c in BODY_COLOURS[look.colour][1]])
    # rounded_rect fills the pixels round(x0)..round(x1): their outer edges
    screen = (round(sx0), round(sy0), round(sx1) + 1, round(sy1) + 1)
    return Render(np.clip(img, 0, 1), alpha, screen)


def _screen_defects(rng: Rng, img: np.ndarray, glass: np.ndarray, condition: str,
                    screen_on: bool, look: PhoneLook) -> None:
    h, w = glass.shape
    light = np.zeros((h, w), np.float32)
    if condition != "flawless" or rng.random() < 0.3:  # even flawless glass has dust
        for _ in range(rng.integers(0, 6)):
            cv2.circle(light, (int(rng.uniform(0, w)), int(rng.uniform(0, h))), 1,
                       float(rng.uniform(0.1, 0.3)), -1)
    if condition == "light_scratches":
        defects.scratches(rng, light, int(rng.integers(3, 8)), (0.3, 0.5), (0.1, 0.4),
                          (max(1, w // 170), max(2, w // 110)))
    elif condition == "heavy_scratches":
        defects.scratches(rng, light, int(rng.integers(14, 36)), (0.4, 0.75), (0.1, 0.6),
                          (max(1, w // 150), max(2, w // 90)))
        defects.scuffs(rng, light, int(rng.integers(1, 4)), (0.2, 0.45), (0.03, 0.08))
    scratch_colour = (0.55, 0.55, 0.57) if not look.white_front or screen_on else (0.6, 0.6, 0.6)
    defects.blend(img, light, scratch_colour, glass)
    if condition != "cracked":
        return
    bright, dark_m, shards = (np.zeros((h, w), np.float32) for _ in range(3))
    defects.cracks(rng, bright, dark_m, shards, rng.uniform(0.3, 1))
    if rng.random() < 0.35:  # display damage under the broken glass: ink bleed, lines
        ink: np.ndarray = np.zeros((h, w), np.float32)
        for _ in range(rng.integers(1, 4)):
            cv2.ellipse(ink, (int(rng.uniform(0, w)), int(rng.uniform(0, h))),
                        (int(w * rng.uniform(0.05, 0.3)), int(h * rng.uniform(0.03, 0.15))),
                        float(rng.uniform(0, 180)), 0, 360, 1.0, -1, cv2.LINE_AA)
        ink = cv2.GaussianBlur(ink, (0, 0), w * 0.02)
        defects.blend(img, ink, rng.choice([(0.02, 0.02, 0.02), (0.25, 0.05, 0.35),
                                            (0.9, 0.9, 0.95)]), glass)
        if rng.random() < 0.5:
            lines = np.zeros((h, w), np.float32)
            for _ in range(rng.integers(1, 8)):
                x = int(rng.uniform(0, w))
                cv2.line(lines, (x, 0), (x, h), 1.0, int(rng.integers(1, 4)))
            defects.blend(img, lines, rng.choice([(0.1, 0.9, 0.2), (0.9, 0.1, 0.8),
                                                  (0.95, 0.95, 0.95)]), glass)
    shade = np.float32(0.35 if look.white_front else 0.6)
    img += (shards * shade)[..., None] * glass[..., None]
    defects.blend(img, dark_m, (0.0, 0.0, 0.0), glass * 0.8)
    defects.blend(img, bright, (0.92, 0.93, 0.95) if not look.white_front else (0.45, 0.45, 0.45),
                  glass)


def _camera(rng: Rng, img: np.ndarray, look: PhoneLook) -> tuple[float, float, float, float]:
    """Camera module and lenses; returns the box (x0, y0, x1, y1) of the module, or of the
    lenses when there is no module, in continuous pixel coordinates (the flash left out)."""
    h, w = look.height, look.width
    body = np.asarray(BODY_COLOURS[look.colour][0], np.float32)
    m = w * 0.07
    module: tuple[float, float, float, float] | None = None
    if look.camera == "square":
        s = w * rng.uniform(0.38, 0.48)
        bump = module = (m, m, m + s, m + s)
        rounded_rect(img, bump, s * 0.25, (body * 0.85 + 0.05).tolist())
        r = s * 0.2
        centres = [(m + s * 0.3, m + s * 0.3), (m + s * 0.3, m + s * 0.72), (m + s * 0.72,
                                                                             m + s * 0.5)]
        centres = centres[:int(rng.integers(2, 4))]
    elif look.camera == "vertical":
        r = w * 0.075
        centres = [(m + r * 1.2, m + r * 1.2 + i * r * 2.5) for i in range(int(rng.integers(2, 5)))]
        if rng.random() < 0.5:
            module = (m, m, m + r * 2.4, centres[-1][1] + r * 1.2)
            rounded_rect(img, module, r * 1.2, (body * 0.6).tolist())
    elif look.camera == "bar":
        bh = h * 0.08
        module = (0, h * 0.12, w, h * 0.12 + bh)
        rounded_rect(img, module, bh * 0.5, (0.05, 0.05, 0.06))
        r = bh * 0.3
        n = int(rng.integers(1, 4))
        centres = [(w * 0.2 + i * r * 2.6, h * 0.12 + bh / 2) for i in range(n)]
    else:
        r = w * 0.06
        centres = [(m + r * 1.3, m + r * 1.3)]
    lenses = []
    for x, y in centres:
        c, ri = (int(x), int(y)), int(r)
        cv2.circle(img, c, ri, (0.55, 0.55, 0.57), -1, cv2.LINE_AA)  # metal ring
        cv2.circle(img, c, int(ri * 0.82), (0.03, 0.03, 0.04), -1, cv2.LINE_AA)  # glass
        cv2.circle(img, c, int(ri * 0.45), (0.08, 0.09, 0.14), -1, cv2.LINE_AA)  # lens
        cv2.circle(img, (c[0] - ri // 4, c[1] - ri // 4), max(1, ri // 7), (0.5, 0.55, 0.8),
                   -1, cv2.LINE_AA)  # coating glint
        lenses.append((*c, ri))
    fx, fy = lenses[-1][0] + int(r * 1.6), lenses[0][1]
    if fx < w - 5:
        cv2.circle(img, (fx, fy), max(2, int(r * 0.3)), (0.95, 0.92, 0.75), -1, cv2.LINE_AA)
    if module is not None:  # rounded_rect fills the pixels round(x0)..round(x1)
        x0, y0, x1, y1 = (round(v) for v in module)
        return x0, y0, min(w, x1 + 1), min(h, y1 + 1)
    xs, ys, rs = np.array(lenses, np.float64).T
    return ((xs - rs).min(), (ys - rs).min(), (xs + rs).max() + 1, (ys + rs).max() + 1)


def render_back(rng: Rng, look: PhoneLook, condition: str) -> Render:
    """The back: body colour and finish, camera module, logo, and the shell's defects."""
    h, w = look.height, look.width
    drng = np.random.default_rng(rng.integers(1 << 62))  # defects: their own random stream
    alpha, outline, img, radius = _frame(look)
    body = np.asarray(BODY_COLOURS[look.colour][0], np.float32)
    t = max(2, w * 0.012)
    panel = np.zeros((h, w), np.float32)
    rounded_rect(panel, (t, t, w - 1 - t, h - 1 - t), radius - t)
    tone = 1 + (smooth_field(rng, h, w, 3)[..., 0] - 0.5) * 0.12
    if look.finish == "matte":
        grain = rng.normal(0, 0.015, (h // 2 + 1, w // 2 + 1)).astype(np.float32)
        tone += cv2.resize(grain, (w, h))
    elif look.finish == "brushed":
        tone += cv2.resize(rng.normal(0, 0.03, (h, 1)).astype(np.float32), (w, h))
    defects.lerp(img, cv2.cvtColor(tone, cv2.COLOR_GRAY2RGB) * body, panel)
    camera = _camera(rng, img, look)
    logo_c = (w // 2, int(h * rng.uniform(0.45, 0.6)))
    logo = np.zeros((h, w), np.float32)
    cv2.circle(logo, logo_c, int(w * 0.07), 1.0, -1, cv2.LINE_AA)
    defects.blend(img, logo * 0.25, (body * 0.7 + 0.15).tolist())

    corners = [(t * 2, t * 2), (w - t * 2, t * 2), (t * 2, h - t * 2), (w - t * 2, h - t * 2)]
    light, dark = np.zeros((h, w), np.float32), np.zeros((h, w), np.float32)
    lum = float(body.mean())
    if condition == "light_wear":
        defects.scratches(drng, light, int(drng.integers(3, 9)), (0.2, 0.4), (0.06, 0.3),
                          (max(1, w // 200), max(1, w // 140)))
        defects.scuffs(drng, light, int(drng.integers(1, 4)), (0.2, 0.4), (0.02, 0.05))
    elif condition in ("heavy_wear", "cracked"):
        n = int(drng.integers(8, 25)) if condition == "heavy_wear" else int(drng.integers(0, 8))
        defects.scratches(drng, light, n, (0.4, 0.75), (0.08, 0.6),
                          (max(1, w // 150), max(2, w // 80)))
        defects.scratches(drng, dark, n // 3, (0.3, 0.6), (0.05, 0.4), (1, max(2, w // 120)))
        if condition == "heavy_wear":
            defects.scuffs(drng, light, int(drng.integers(2, 6)), (0.25, 0.5), (0.03, 0.1))
            defects.dents(drng, light, dark, outline, int(drng.integers(2, 7)))
            chip = np.zeros((h, w), np.float32)
            defects.chips(drng, chip, corners, int(drng.integers(1, 5)), w * 0.03)
            defects.blend(img, chip, (0.7, 0.7, 0.72) if lum < 0.5 else (0.35, 0.35, 0.37),
                          alpha)
    scratch = (0.75, 0.75, 0.77) if lum < 0.55 else (0.45, 0.45, 0.47)
    defects.blend(img, dark, (0.05, 0.05, 0.05), alpha * 0.7)
    defects.blend(img, light, scratch, alpha)
    if condition == "cracked":
        bright, dark_m, shards = (np.zeros((h, w), np.float32) for _ in range(3))
        defects.cracks(drng, bright, dark_m, shards, drng.uniform(0.3, 1))
        img += (shards * 0.5)[..., None] * panel[..., None]
        defects.blend(img, dark_m, (body * 0.3).tolist(), panel)
        defects.blend(img, bright, (0.95, 0.95, 0.97) if lum < 0.6 else (0.4, 0.4, 0.42), panel)
    gloss = {"glossy": 0.25, "matte": 0.06, "brushed": 0.12}[look.finish]
    img += cv2.cvtColor(_reflection(rng, h, w, rng.uniform(0.3, 1.0) * gloss) * panel,
                        cv2.COLOR_GRAY2RGB)
    defects.blend(img, outline, np.clip(np.asarray(BODY_COLOURS[look.colour][1]) + 0.12, 0, 1))
    return Render(np.clip(img, 0, 1), alpha, camera)
