"""Place a flat phone render in a photo: background, hand, perspective, shadow, light, camera.

The scene is composed at a reduced working resolution and resized to the output size at the
end, as a phone camera's processing would soften it; sensor noise and JPEG come after.
"""

from __future__ import annotations

import functools

import cv2
import numpy as np

from training.synth import defects
from training.synth.phone import smooth_field

Rng = np.random.Generator

SKIN = [(0.96, 0.80, 0.69), (0.90, 0.72, 0.58), (0.78, 0.57, 0.42), (0.55, 0.38, 0.26),
        (0.36, 0.24, 0.16)]


def background(rng: Rng, out_h: int, out_w: int) -> tuple[np.ndarray, str]:
    """A table, cloth, studio sweep, desk mat or stone surface (drawn at half size)."""
    h, w = max(8, out_h // 2), max(8, out_w // 2)
    kind = str(rng.choice(["studio", "wood", "cloth", "desk", "stone"],
                          p=[0.25, 0.25, 0.2, 0.15, 0.15]))
    field = smooth_field(rng, h, w, int(rng.integers(2, 6)))
    if kind == "studio":
        base = rng.uniform(0.75, 1.0, 3) if rng.random() < 0.7 else rng.uniform(0.2, 0.9, 3)
        img = base * (0.85 + 0.15 * field)
    elif kind == "wood":
        base = np.array([0.55, 0.36, 0.2]) * rng.uniform(0.5, 1.5)
        yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
        angle = rng.uniform(0, np.pi)
        u = xx * np.cos(angle) + yy * np.sin(angle)
        warp = smooth_field(rng, h, w, 6)[..., 0] * rng.uniform(20, 60)
        grain = 0.5 + 0.5 * np.sin((u + warp) * rng.uniform(0.1, 0.4))
        img = base * (0.75 + 0.25 * grain[..., None]) * (0.9 + 0.2 * field)
    elif kind == "cloth":
        base = rng.uniform(0.1, 0.9, 3)
        yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
        f = rng.uniform(0.8, 1.6)
        weave = 0.5 + 0.25 * (np.sin(xx * f) + np.sin(yy * f))
        folds = smooth_field(rng, h, w, int(rng.integers(3, 8)))
        img = base * (0.9 + 0.1 * weave[..., None]) * (0.6 + 0.5 * folds)
    elif kind == "desk":
        img = rng.uniform(0.05, 0.35) * np.ones(3) * (0.85 + 0.3 * field)
    else:
        veins = np.abs(np.sin(smooth_field(rng, h, w, 5)[..., 0] * rng.uniform(8, 20)))
        img = rng.uniform(0.75, 0.95) * np.ones(3) * (0.85 + 0.15 * veins[..., None] ** 0.3)
    img = np.clip(img, 0, 1).astype(np.float32)
    return cv2.resize(img, (out_w, out_h), interpolation=cv2.INTER_LINEAR), kind


_NOISE_TILE = 1024


@functools.cache
def _noise_tile() -> np.ndarray:
    """Sensor noise, strong in luminance and weaker in colour; made once per process."""
    rng = np.random.default_rng(1234)
    t = _NOISE_TILE
    luma = rng.standard_normal((t, t, 1), dtype=np.float32)
    chroma = rng.standard_normal((t // 2, t // 2, 3), dtype=np.float32) * 0.5
    return np.ascontiguousarray(luma + cv2.resize(chroma, (t, t)))


def _noise(rng: Rng, h: int, w: int) -> np.ndarray:
    """A random crop (tiled when needed) of the noise tile: cheap and deterministic."""
    tile = _noise_tile()
    big = tile
    if h > _NOISE_TILE or w > _NOISE_TILE:
        big = np.tile(tile, (h // _NOISE_TILE + 1, w // _NOISE_TILE + 1, 1))
    y = int(rng.integers(0, big.shape[0] - h + 1))
    x = int(rng.integers(0, big.shape[1] - w + 1))
    return big[y:y + h, x:x + w]


def _finger(img: np.ndarray, a: np.ndarray, b: np.ndarray, r: float, colour) -> None:
    pa, pb = tuple(int(v) for v in a), tuple(int(v) for v in b)
    cv2.line(img, pa, pb, colour, int(2 * r), cv2.LINE_AA)
    cv2.circle(img, pb, int(r), colour, -1, cv2.LINE_AA)
    nail = [min(1.0, c * 1.15 + 0.05) for c in colour]
    cv2.circle(img, pb, max(1, int(r * 0.55)), nail, -1, cv2.LINE_AA)


def _light(rng: Rng, img: np.ndarray, centre: np.ndarray) -> None:
    """Light ``img`` in place: a gradient, vignetting, a colour cast, sometimes a glare spot
    near ``centre`` (smooth, so computed on a coarse grid and resized)."""
    h, w = img.shape[:2]
    gh, gw = max(8, h // 8), max(8, w // 8)
    yy, xx = np.mgrid[0:gh, 0:gw].astype(np.float32)
    yy, xx = yy / gh - 0.5, xx / gw - 0.5
    la = rng.uniform(0, 2 * np.pi)
    light = 1 + (xx * np.float32(np.cos(la)) + yy * np.float32(np.sin(la))) * np.float32(
        rng.uniform(0, 0.5))
    light *= 1 - np.float32(rng.uniform(0, 0.35)) * (xx**2 + yy**2) * 2
    light = light[..., None] * rng.normal(1, 0.04, 3).astype(np.float32)
    if rng.random() < 0.45:
        gx, gy = centre / (w, h) - 0.5 + rng.normal(0, 0.2, 2)
        sx, sy = rng.uniform(0.03, 0.15, 2)
        glare = np.exp(-(((xx - gx) / sx) ** 2 + ((yy - gy) / sy) ** 2 * (w / h) ** 2))
        glare = (glare * rng.uniform(0.2, 0.8)).astype(np.float32)
    else:
        glare = np.zeros_like(xx)
    img *= cv2.resize(light, (w, h), interpolation=cv2.INTER_LINEAR)
    img += cv2.resize(glare, (w, h), interpolation=cv2.INTER_LINEAR)[..., None]


def _camera(rng: Rng, img: np.ndarray) -> np.ndarray:
    """The camera's defocus or shake, and sensor noise."""
    h, w = img.shape[:2]
    if rng.random() < 0.6:
        img = cv2.GaussianBlur(img, (0, 0), rng.uniform(0.3, 1.6))
    elif rng.random() < 0.15:
        k = int(rng.integers(3, 9))
        kernel = np.zeros((k, k), np.float32)
        kernel[k // 2] = 1 / k
        rot_k = cv2.getRotationMatrix2D((k / 2 - 0.5, k / 2 - 0.5), rng.uniform(0, 180), 1)
        img = cv2.filter2D(img, -1, cv2.warpAffine(kernel, rot_k, (k, k)))
    img += _noise(rng, h, w) * np.float32(rng.uniform(0.003, 0.03))
    return img


def photograph(rng: Rng, part: np.ndarray, alpha: np.ndarray, size: tuple[int, int],
               work_scale: float = 0.45) -> np.ndarray:
    """Compose a photo of size (width, height) around a flat render; returns RGB uint8."""
    return compose(rng, part, alpha, size, work_scale)[0]


def output_homography(m: np.ndarray, work: tuple[int, int], size: tuple[int, int]
                      ) -> np.ndarray:
    """The 3x3 map from the render's continuous pixel coordinates to the output photo's, given
    the warp ``m`` onto the working canvas (pixel centres, as ``cv2.warpPerspective`` takes it)
    of ``work`` (w, h) pixels, resized to ``size`` (w, h) as :func:`compose` does."""
    shift = np.array([[1, 0, 0.5], [0, 1, 0.5], [0, 0, 1]])
    scale = np.diag([size[0] / work[0], size[1] / work[1], 1.0])
    return scale @ shift @ np.asarray(m, np.float64) @ np.linalg.inv(shift)


def compose(rng: Rng, part: np.ndarray, alpha: np.ndarray, size: tuple[int, int],
            work_scale: float = 0.45) -> tuple[np.ndarray, np.ndarray]:
    """:func:`photograph`, and the 3x3 homography that took the render's continuous pixel
    coordinates to the photo's (:func:`output_homography`): the exact geometry labels."""
    out_w, out_h = size
    w, h = max(32, int(out_w * work_scale)), max(32, int(out_h * work_scale))
    img, _ = background(rng, h, w)

    # where the phone lands: rotation, scale, perspective
    ph, pw = alpha.shape
    fill = rng.uniform(0.55, 0.92) if rng.random() < 0.8 else rng.uniform(0.9, 1.25)  # close-ups
    angle = (rng.normal(0, 0.25) if rng.random() < 0.7 else
             rng.uniform(-np.pi / 2, np.pi / 2))  # held upright, or lying at any angle
    bound_h = abs(ph * np.cos(angle)) + abs(pw * np.sin(angle))
    bound_w = abs(pw * np.cos(angle)) + abs(ph * np.sin(angle))
    s = fill * min(h / bound_h, w / bound_w)
    centre = np.array([w / 2, h / 2]) + rng.normal(0, 0.05, 2) * (w, h)
    src = np.array([[0, 0], [pw, 0], [pw, ph], [0, ph]], np.float32)
    rot = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    dst = (src - (pw / 2, ph / 2)) @ rot.T * s + centre
    if rng.random() < 0.3:  # an oblique shot: one end of the phone further from the camera
        far = rng.uniform(0.1, 0.35)
        end = rng.integers(2)
        mid = dst[[0, 1]].mean(0) if end == 0 else dst[[2, 3]].mean(0)
        for k in ([0, 1] if end == 0 else [2, 3]):
            dst[k] = mid + (dst[k] - mid) * (1 - far)
    dst += rng.normal(0, rng.uniform(0.0, 0.05), (4, 2)) * s * pw
    m = cv2.getPerspectiveTransform(src, dst.astype(np.float32))
    phone = cv2.warpPerspective(part, m, (w, h), flags=cv2.INTER_AREA if s < 1 else
                                cv2.INTER_LINEAR)
    a = cv2.warpPerspective(alpha, m, (w, h), flags=cv2.INTER_LINEAR)

    # soft contact shadow, offset away from the light (blurred at a quarter of the size)
    q = cv2.resize(a, (w // 4, h // 4), interpolation=cv2.INTER_AREA)
    q = cv2.GaussianBlur(q, (0, 0), max(0.5, s * pw * rng.uniform(0.005, 0.02)))
    shift = np.array([[1, 0, rng.normal(0, 0.005) * w], [0, 1, rng.uniform(0, 0.008) * h]],
                     np.float32)
    q = 1 - np.float32(rng.uniform(0.3, 0.7)) * cv2.warpAffine(q, shift, (w // 4, h // 4))
    img *= cv2.resize(q, (w, h), interpolation=cv2.INTER_LINEAR)[..., None]

    hand = rng.random() < 0.2
    skin = np.asarray(SKIN[rng.integers(len(SKIN))]) * rng.uniform(0.85, 1.1)
    if hand:  # a palm behind the phone
        cv2.ellipse(img, tuple(int(v) for v in centre + np.array([0, s * ph * 0.3])),
                    (int(s * pw * 0.62), int(s * ph * 0.3)), float(np.degrees(angle)), 0, 360,
                    skin.tolist(), -1, cv2.LINE_AA)
    defects.lerp(img, phone, a)
    if hand:  # a thumb over one long edge, fingertips over the other
        r = s * pw * rng.uniform(0.07, 0.1)
        across = ((dst[1] + dst[2]) - (dst[0] + dst[3])) / 2  # left edge -> right edge
        along = ((dst[3] + dst[2]) - (dst[0] + dst[1])) / 2  # top -> bottom
        left = dst[0] + along * rng.uniform(0.3, 0.8)
        _finger(img, left - across * 0.6, left + across * rng.uniform(0.05, 0.18), r,
                (skin * 0.95).tolist())
        for k in range(int(rng.integers(1, 4))):
            right = dst[1] + along * (rng.uniform(0.35, 0.5) + 0.13 * k)
            _finger(img, right + across * 0.5, right - across * rng.uniform(0.0, 0.08),
                    r * 0.85, (skin * rng.uniform(0.85, 1.0)).tolist())

    _light(rng, img, centre)
    img = _camera(rng, img)
    img8 = np.clip(img * 255 + 0.5, 0, 255).astype(np.uint8)
    return (cv2.resize(img8, (out_w, out_h), interpolation=cv2.INTER_LINEAR),
            output_homography(m, (w, h), (out_w, out_h)))


def empty_scene(rng: Rng, size: tuple[int, int], work_scale: float = 0.45) -> np.ndarray:
    """A photo of size (width, height) like :func:`photograph`'s with no phone in it (the photo
    check's "no phone" examples): the surface, sometimes an open hand, light and camera."""
    out_w, out_h = size
    w, h = max(32, int(out_w * work_scale)), max(32, int(out_h * work_scale))
    img, _ = background(rng, h, w)
    centre = np.array([w / 2, h / 2]) + rng.normal(0, 0.1, 2) * (w, h)
    if rng.random() < 0.2:
        skin = np.asarray(SKIN[rng.integers(len(SKIN))]) * rng.uniform(0.85, 1.1)
        cv2.ellipse(img, tuple(int(v) for v in centre), (int(w * 0.2), int(h * 0.25)),
                    float(rng.uniform(0, 180)), 0, 360, skin.tolist(), -1, cv2.LINE_AA)
    _light(rng, img, centre)
    img = _camera(rng, img)
    img8 = np.clip(img * 255 + 0.5, 0, 255).astype(np.uint8)
    return cv2.resize(img8, (out_w, out_h), interpolation=cv2.INTER_LINEAR)


def encode_jpeg(rgb: np.ndarray, rng: Rng, quality: tuple[int, int] = (60, 95)) -> bytes:
    """JPEG bytes at a random quality in ``quality``."""
    ok, buf = cv2.imencode(".jpg", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR),
                           [cv2.IMWRITE_JPEG_QUALITY, int(rng.integers(*quality))])
    if not ok:
        raise RuntimeError("JPEG encoding failed")
    return buf.tobytes()
