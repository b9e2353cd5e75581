"""Damage heatmaps for the UI: kept from the submission, else recomputed from a stored photo."""

from __future__ import annotations

import base64
import threading
from collections import OrderedDict
from collections.abc import Mapping

from serve.runtime import Grader
from vision.heatmap import cam_from_features, overlay_png


class HeatmapCache:
    """A small in-memory LRU of heatmap PNGs by (evaluation id, part)."""

    def __init__(self, size: int = 128):
        self.size = size
        self.items: OrderedDict[tuple[str, str], bytes] = OrderedDict()
        self.lock = threading.Lock()

    def get(self, key: tuple[str, str]) -> bytes | None:
        with self.lock:
            png = self.items.get(key)
            if png is not None:
                self.items.move_to_end(key)
            return png

    def put(self, key: tuple[str, str], png: bytes) -> None:
        with self.lock:
            self.items[key] = png
            self.items.move_to_end(key)
            while len(self.items) > self.size:
                self.items.popitem(last=False)

    def put_b64(self, evaluation_id: str, maps: Mapping[str, str | None] | None) -> None:
        for part, value in (maps or {}).items():
            if value:
                self.put((evaluation_id, part), base64.b64decode(value))


def heatmap_png(grader: Grader, photo: bytes, part: str) -> bytes:
    """The class activation heatmap of ``part`` (screen: front photo, shell: back photo) for the
    condition the model sees, overlaid on the photo (PNG)."""
    decoded = grader.decode(photo, view="front" if part == "screen" else "back")
    screen, shell, features = grader.run_vision(decoded.x[None])
    logits = screen[0] if part == "screen" else shell[0]
    cam = cam_from_features(features[0], grader.head_weights[part], int(logits.argmax()))
    return overlay_png(decoded.image, decoded.on_photo(cam))
