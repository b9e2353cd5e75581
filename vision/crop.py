"""The device's rectified crop: the phone cut out of its photo along the localiser's corners
and straightened (a perspective warp), decoded just large enough (issue 19, item 3).

:func:`rectify` warps a quad of an upright image to an upright rectangle: its width and height
are the mean lengths of the quad's opposite sides, scaled so that the longer one is
``long_side`` pixels. :func:`crop_device` localises a photo on a small decode, then decodes it
again with JPEG DCT scaling (``draft``) only as large as the crop needs, and rectifies.
"""

from __future__ import annotations

import numpy as np
from PIL import Image

from vision.geometry import Quad
from vision.localise import Localisation, Localiser
from vision.preprocess import DEFAULT_MAX_PIXELS, Source, open_image_sized


def perspective_coefficients(src: np.ndarray, dst: np.ndarray) -> tuple[float, ...]:
    """Pillow's 8 ``Image.PERSPECTIVE`` coefficients mapping output points ``dst`` (4, 2)
    to input points ``src`` (4, 2): x = (a x' + b y' + c) / (g x' + h y' + 1), y likewise."""
    rows, rhs = [], []
    for (x, y), (u, v) in zip(src, dst, strict=True):
        rows.append([u, v, 1, 0, 0, 0, -x * u, -x * v])
        rows.append([0, 0, 0, u, v, 1, -y * u, -y * v])
        rhs += [x, y]
    return tuple(float(c) for c in np.linalg.solve(np.array(rows, np.float64),
                                                   np.array(rhs, np.float64)))


def quad_sides(quad: Quad) -> tuple[float, float]:
    """The mean lengths of the quad's top and bottom sides, and of its left and right ones."""
    p = quad.points()
    return (float(np.linalg.norm(p[1] - p[0]) + np.linalg.norm(p[2] - p[3])) / 2,
            float(np.linalg.norm(p[3] - p[0]) + np.linalg.norm(p[2] - p[1])) / 2)


def crop_size(quad: Quad, long_side: int) -> tuple[int, int]:
    """(width, height) of the straightened quad, its longer side ``long_side`` pixels."""
    w, h = quad_sides(quad)
    scale = long_side / max(w, h, 1e-6)
    return max(1, round(w * scale)), max(1, round(h * scale))


def rectify(image: Image.Image, quad: Quad, long_side: int) -> Image.Image:
    """The quad of ``image`` (in its pixel coordinates) warped to an upright rectangle; parts
    of the quad outside the image come out black."""
    w, h = crop_size(quad, long_side)
    dst = np.array([(0, 0), (w, 0), (w, h), (0, h)], np.float64)
    coeffs = perspective_coefficients(quad.points(), dst)
    return image.transform((w, h), Image.Transform.PERSPECTIVE, coeffs,
                           Image.Resampling.BILINEAR)


def crop_device(source: Source, localiser: Localiser, long_side: int = 448, *,
                max_pixels: int = DEFAULT_MAX_PIXELS) -> tuple[Localisation, Image.Image]:
    """(the localisation, the rectified crop) of one photo: localised on a small decode, then
    cropped from a decode whose device is at least ``long_side`` pixels long (JPEG DCT
    scaling keeps it cheap; other formats decode at full size once)."""
    small, size = open_image_sized(source, max_pixels=max_pixels,
                                   draft_size=localiser.pre.img_size)
    loc = localiser.localise_images([small], [size])[0]
    return loc, crop_decoded(source, small, size, loc.device, long_side, max_pixels=max_pixels)


def crop_decoded(source: Source, small: Image.Image, size: tuple[int, int], device: Quad,
                 long_side: int, *, max_pixels: int = DEFAULT_MAX_PIXELS) -> Image.Image:
    """The rectified crop of ``device`` (in the photo's upright pixels as uploaded, ``size``)
    from ``small``, the photo already decoded, or from a second decode of ``source`` when
    ``small`` gives the device fewer than ``long_side`` pixels and the upload has more."""
    # the photo's shorter side at which the device's longer side is long_side pixels (never
    # more than the photo has)
    need = min(long_side / max(*quad_sides(device), 1.0), 1.0) * min(size)
    image = small
    if min(small.size) < need:
        image, _ = open_image_sized(source, max_pixels=max_pixels,
                                    draft_size=int(np.ceil(need)))
    scale = (image.width / size[0], image.height / size[1])  # upload -> decoded pixels
    quad = Quad.from_points((device.points() * scale).tolist(), image.width, image.height)
    return rectify(image, quad, long_side)


def warp_to_photo(values: np.ndarray, corners: np.ndarray, size: tuple[int, int]
                  ) -> np.ndarray:
    """A map over a crop (h, w), e.g. a heatmap, drawn back where the crop came from: an
    array of ``size`` = (width, height) whose pixels inside the quad ``corners`` (4, 2, as
    fractions of the photo's width and height) take the map's values and the others 0."""
    h, w = values.shape
    quad = np.asarray(corners, np.float64) * size
    src = np.array([(0, 0), (w, 0), (w, h), (0, h)], np.float64)
    coeffs = perspective_coefficients(src, quad)  # photo pixel -> map pixel
    im = Image.fromarray(np.ascontiguousarray(values, np.float32))  # mode "F"
    out = im.transform(size, Image.Transform.PERSPECTIVE, coeffs, Image.Resampling.BILINEAR)
    return np.asarray(out, np.float32)
