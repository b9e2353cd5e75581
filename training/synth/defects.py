"""Defects drawn onto a flat part image: scratches, scuffs, cracks, dents and chips.

Every function draws into float32 masks (0..1) that the caller blends with a colour, so that
one defect layer costs one blend of the image, whatever the number of strokes.
"""

from __future__ import annotations

import cv2
import numpy as np

Rng = np.random.Generator


def _poly(mask: np.ndarray, pts: np.ndarray, value: float, width: int) -> None:
    cv2.polylines(mask, [np.round(pts * 16).astype(np.int32)], False, float(value),
                  max(1, int(width)), cv2.LINE_AA, shift=4)


def scratches(rng: Rng, mask: np.ndarray, n: int, strength: tuple[float, float],
              length: tuple[float, float], width: tuple[int, int] = (1, 1),
              area: tuple[int, int, int, int] | None = None) -> None:
    """Straight or gently curved thin scratches, often roughly parallel (a wipe direction)."""
    h, w = mask.shape
    x0, y0, x1, y1 = area or (0, 0, w, h)
    diag = np.hypot(x1 - x0, y1 - y0)
    main = rng.uniform(0, np.pi)
    for _ in range(n):
        angle = main + rng.normal(0, 0.5) if rng.random() < 0.7 else rng.uniform(0, np.pi)
        ln = diag * rng.uniform(*length)
        cx, cy = rng.uniform(x0, x1), rng.uniform(y0, y1)
        bend = rng.normal(0, 0.08)
        t = np.linspace(-0.5, 0.5, 8)
        dx, dy = np.cos(angle), np.sin(angle)
        off = bend * ln * (t**2 - 0.25)
        pts = np.stack([cx + t * ln * dx - off * dy, cy + t * ln * dy + off * dx], 1)
        _poly(mask, pts, rng.uniform(*strength), int(rng.integers(width[0], width[1] + 1)))


def scuffs(rng: Rng, mask: np.ndarray, n: int, strength: tuple[float, float],
           radius: tuple[float, float]) -> None:
    """Clusters of short fine marks (rubbing against keys or a table)."""
    h, w = mask.shape
    for _ in range(n):
        cx, cy = rng.uniform(0, w), rng.uniform(0, h)
        r = min(h, w) * rng.uniform(*radius)
        angle = rng.uniform(0, np.pi)
        for _ in range(rng.integers(6, 20)):
            a = angle + rng.normal(0, 0.3)
            px, py = cx + rng.normal(0, r), cy + rng.normal(0, r)
            ln = r * rng.uniform(0.2, 0.9)
            pts = np.array([[px, py], [px + ln * np.cos(a), py + ln * np.sin(a)]])
            _poly(mask, pts, rng.uniform(*strength), 1)


def _walk(rng: Rng, start: np.ndarray, angle: float, length: float, step: float,
          wiggle: float) -> np.ndarray:
    n = max(2, int(length / step))
    kinks = rng.normal(0, 0.45, n) * (rng.random(n) < 0.08)  # glass breaks in straight runs
    turns = np.cumsum(rng.normal(0, wiggle, n) + kinks)
    steps = step * rng.uniform(0.6, 1.4, n)
    pts = np.cumsum(np.stack([steps * np.cos(angle + turns), steps * np.sin(angle + turns)], 1),
                    0)
    return np.vstack([start, start + pts])


def cracks(rng: Rng, bright: np.ndarray, dark: np.ndarray, shards: np.ndarray,
           severity: float) -> None:
    """Crack patterns on glass: radial cracks from impact points, branching, concentric
    links between rays (spider web), shattered shards near the impact, or long hairlines.

    ``bright`` receives the glinting crack lines, ``dark`` their shadow side, ``shards`` the
    faceted glass around the impact (signed: brighter or darker facets).
    """
    h, w = bright.shape
    diag = float(np.hypot(h, w))
    scale = diag / 1000
    style = rng.random()
    lw = max(1, round(2 * scale))  # line width at this size
    if style < 0.12:  # long hairline cracks across the glass, no impact point
        for _ in range(rng.integers(1, 4)):
            side = rng.integers(4)
            start = np.array([[rng.uniform(0, w), 0], [w, rng.uniform(0, h)],
                              [rng.uniform(0, w), h], [0, rng.uniform(0, h)]][side], float)
            angle = [np.pi / 2, np.pi, -np.pi / 2, 0][side] + rng.normal(0, 0.5)
            pts = _walk(rng, start, angle, diag * rng.uniform(0.4, 1.1), 14 * scale, 0.04)
            _poly(dark, pts + 1.2, rng.uniform(0.3, 0.6), lw + 1)
            _poly(bright, pts, rng.uniform(0.55, 0.95), lw)
            for _ in range(rng.integers(2, 5)):  # cracks fork where they turn
                j = rng.integers(1, len(pts))
                sub = _walk(rng, pts[j], angle + rng.choice([-1, 1]) * rng.uniform(0.4, 1.0),
                            diag * rng.uniform(0.05, 0.25), 10 * scale, 0.06)
                _poly(bright, sub, rng.uniform(0.5, 0.9), lw)
        return
    if style < 0.55:  # shattered: a dense network of facets around impacts (most real cracks)
        shatter(rng, bright, dark, shards, severity, max(1, round(diag / 450)))
    n_impacts = 1 if style < 0.8 else rng.integers(2, 4)
    for _ in range(n_impacts):
        if rng.random() < 0.55:  # phones land on corners and edges
            c = np.array([rng.choice([0.08, 0.92]) * w, rng.choice([0.06, 0.94]) * h])
            c += rng.normal(0, 0.08, 2) * (w, h)
        else:
            c = rng.uniform((0.1 * w, 0.1 * h), (0.9 * w, 0.9 * h))
        extent = diag * rng.uniform(0.25, 1.0) * (0.5 + severity)
        n_rays = int(rng.integers(5, 16))
        base = rng.uniform(0, 2 * np.pi)
        rays = []
        for k in range(n_rays):
            angle = base + 2 * np.pi * k / n_rays + rng.normal(0, 0.25)
            pts = _walk(rng, c, angle, extent * rng.uniform(0.3, 1.0), 12 * scale, 0.05)
            rays.append(pts)
            width = lw + int(rng.random() < 0.35 + 0.3 * severity)
            _poly(dark, pts + rng.normal(0, 1, 2), rng.uniform(0.3, 0.7), width + 1)
            _poly(bright, pts, rng.uniform(0.55, 1.0), width)
            for _ in range(rng.poisson(0.5 + 2 * severity)):  # branches
                j = rng.integers(1, len(pts))
                sub = _walk(rng, pts[j], angle + rng.choice([-1, 1]) * rng.uniform(0.3, 1.1),
                            extent * rng.uniform(0.05, 0.3), 10 * scale, 0.08)
                _poly(bright, sub, rng.uniform(0.4, 0.9), 1)
                _poly(dark, sub + 1, rng.uniform(0.2, 0.5), 1)
        # concentric links between neighbouring rays: the spider web
        for ring in range(rng.integers(1, 5)):
            frac = rng.uniform(0.05, 0.5) * (ring + 1) / 2
            for a, b in zip(rays, rays[1:] + rays[:1], strict=True):
                if rng.random() > 0.35 + 0.5 * severity:
                    continue
                pa, pb = a[min(len(a) - 1, int(frac * len(a)))], b[min(len(b) - 1,
                                                                      int(frac * len(b)))]
                mid = (pa + pb) / 2 + rng.normal(0, 6 * scale, 2)
                _poly(bright, np.array([pa, mid, pb]), rng.uniform(0.4, 0.9), 1)
        # shattered facets near the impact
        r0 = extent * rng.uniform(0.03, 0.12) * (0.5 + severity)
        for _ in range(int(rng.integers(4, 14) * (0.5 + severity))):
            pts = c + rng.normal(0, r0, (3, 2))
            cv2.fillConvexPoly(shards, np.round(pts * 16).astype(np.int32),
                               float(rng.uniform(-0.35, 0.35)), cv2.LINE_AA, 4)


def shatter(rng: Rng, bright: np.ndarray, dark: np.ndarray, shards: np.ndarray,
            severity: float, lw: int) -> None:
    """Shattered glass: the Voronoi cells of points crowded around impact points, drawn as
    crack lines (dense near the impact, sparser away from it), with facets of varying shine."""
    from scipy.spatial import Voronoi

    h, w = bright.shape
    diag = float(np.hypot(h, w))
    points = []
    for _ in range(rng.integers(1, 3)):
        c = rng.uniform((0, 0), (w, h))
        if rng.random() < 0.5:  # corners and edges take the falls
            c = np.array([rng.choice([0.05, 0.95]) * w, rng.uniform(0.05, 0.95) * h])
        n = int(rng.integers(100, 400) * (0.4 + severity))
        r = diag * rng.uniform(0.08, 0.3) * (0.5 + severity)
        d = rng.exponential(r, n)
        a = rng.uniform(0, 2 * np.pi, n)
        points.append(c + np.stack([d * np.cos(a), d * np.sin(a)], 1))
    pts = np.concatenate([*points, rng.uniform((-w, -h), (2 * w, 2 * h), (20, 2))])
    vor = Voronoi(pts)
    verts = vor.vertices
    for ridge in vor.ridge_vertices:
        if -1 in ridge:
            continue
        seg = verts[ridge]
        if np.all((seg[:, 0] < 0) | (seg[:, 0] > w) | (seg[:, 1] < 0) | (seg[:, 1] > h)):
            continue
        if np.hypot(*(seg[1] - seg[0])) > diag * 0.35:
            continue
        _poly(bright, seg, rng.uniform(0.45, 1.0), lw + int(rng.random() < 0.3))
        if rng.random() < 0.5:
            _poly(dark, seg + 1, rng.uniform(0.2, 0.5), lw)
    for region in rng.choice(len(vor.regions), size=min(len(vor.regions), 40), replace=False):
        poly = vor.regions[region]
        if len(poly) >= 3 and -1 not in poly:
            cv2.fillPoly(shards, [np.round(verts[poly] * 16).astype(np.int32)],
                         float(rng.uniform(-0.25, 0.3)), cv2.LINE_AA, 4)


def dents(rng: Rng, light: np.ndarray, dark: np.ndarray, outline: np.ndarray, n: int) -> None:
    """Frame dents: small crescents on the body's outline, lit on one side."""
    ys, xs = np.nonzero(outline)
    if len(xs) == 0:
        return
    h, w = light.shape
    r_base = 0.012 * np.hypot(h, w)
    for i in rng.integers(0, len(xs), n):
        c = (int(xs[i]), int(ys[i]))
        r = int(r_base * rng.uniform(0.5, 1.5))
        angle = float(rng.uniform(0, 360))
        cv2.ellipse(dark, c, (r, max(1, r // 2)), angle, 0, 180, float(rng.uniform(0.4, 0.8)),
                    -1, cv2.LINE_AA)
        cv2.ellipse(light, c, (r, max(1, r // 3)), angle, 180, 360,
                    float(rng.uniform(0.3, 0.6)), -1, cv2.LINE_AA)


def chips(rng: Rng, mask: np.ndarray, corners: list[tuple[float, float]], n: int,
          size: float) -> None:
    """Chipped paint or glass at corners and edges: irregular small polygons."""
    for _ in range(n):
        cx, cy = corners[rng.integers(len(corners))]
        cx, cy = cx + rng.normal(0, size), cy + rng.normal(0, size)
        k = rng.integers(5, 9)
        ang = np.sort(rng.uniform(0, 2 * np.pi, k))
        rad = size * rng.uniform(0.3, 1.0, k)
        pts = np.stack([cx + rad * np.cos(ang), cy + rad * np.sin(ang)], 1)
        cv2.fillPoly(mask, [np.round(pts * 16).astype(np.int32)], float(rng.uniform(0.7, 1.0)),
                     cv2.LINE_AA, 4)


def extent(before: np.ndarray, after: np.ndarray, where: np.ndarray) -> float:
    """How much of ``where`` a drawing visibly changed: the pixels whose colour moved by more
    than 8% of full scale (about 20 grey levels), in units of the region's diagonal (a 1-pixel
    line across the whole diagonal counts 1)."""
    changed = (np.abs(after - before).max(axis=2) > 0.08) & (where > 0.5)
    h, w = where.shape
    return float(changed.sum() / np.hypot(h, w))


def blend(img: np.ndarray, mask: np.ndarray, color, where: np.ndarray | None = None) -> None:
    """img = img * (1 - m) + color * m, in place; ``where`` limits the mask (e.g. to glass).

    Only the mask's bounding box is touched, so small defects cost little.
    """
    x, y, bw, bh = cv2.boundingRect((mask > 0).view(np.uint8))
    if bw == 0:
        return
    box = (slice(y, y + bh), slice(x, x + bw))
    m = mask[box] if where is None else cv2.multiply(mask[box], where[box])
    sub = img[box]
    c = [float(v) for v in np.asarray(color, np.float32).ravel()[:3]]
    # cv2's stubs lack the scalar operand (a 4-tuple) that cv2.subtract accepts
    diff = cv2.multiply(cv2.subtract(sub, (*c, 0.0)),  # type: ignore[call-overload]
                        cv2.cvtColor(m, cv2.COLOR_GRAY2RGB))
    sub[:] = cv2.subtract(sub, diff)


def lerp(img: np.ndarray, other: np.ndarray, mask: np.ndarray) -> None:
    """img = img * (1 - m) + other * m, in place (other: an image of the same shape)."""
    diff = cv2.multiply(cv2.subtract(other, img), cv2.cvtColor(mask, cv2.COLOR_GRAY2RGB))
    img[:] = cv2.add(img, diff)
