"""Real-size synthetic phone photos for the benchmarks (12 MP JPEGs by default)."""

from __future__ import annotations

import io
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image

from training.synth.phone import PhoneLook, render_back, render_front
from training.synth.scene import photograph


def phone_jpegs(out: Path, n: int = 2, size: tuple[int, int] = (3000, 4000),
                quality: int = 90) -> list[Path]:
    """``n`` photos (alternating front and back) of ``size`` pixels, like a phone camera's."""
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(n):
        rng = np.random.default_rng([7, i])
        look = PhoneLook.sample(rng, height=int(size[1] * 0.45))
        render = render_front if i % 2 == 0 else render_back
        part = render(rng, look, "light_scratches" if i % 2 == 0 else "light_wear")
        rgb = photograph(rng, part.rgb, part.alpha, size)
        path = out / f"photo{i}_{size[0]}x{size[1]}.jpg"
        buf = io.BytesIO()
        Image.fromarray(rgb).save(buf, "JPEG", quality=quality)
        path.write_bytes(buf.getvalue())
        paths.append(path)
    return paths


def upload_bytes(n: int = 2, size: str = "3000x4000") -> list[bytes]:
    """The bytes of :func:`phone_jpegs` (``size`` as WxH), as an upload arrives."""
    w, h = (int(v) for v in size.split("x"))
    return [p.read_bytes() for p in phone_jpegs(Path(tempfile.mkdtemp()), n, (w, h))]
