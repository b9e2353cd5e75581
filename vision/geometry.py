"""Where the device is in a photo: its outline and glass region as four corners each.

Coordinates are continuous pixel coordinates of the upright image (after its EXIF orientation):
(0, 0) is the top-left corner of the top-left pixel and (width, height) the bottom-right corner
of the bottom-right pixel. Corners go top-left, top-right, bottom-right, bottom-left of the part
as seen upright in that photo (the device's own top, whatever the photo's rotation). A corner
outside the image (a close-up crops it) keeps its position and is marked not visible.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, model_validator

from vision.errors import PhotogradeError

#: Corner names, in order (COCO keypoint names of every category).
CORNERS: tuple[str, ...] = ("top_left", "top_right", "bottom_right", "bottom_left")


class GeometryError(PhotogradeError):
    """Device geometry that cannot be right (a corner outside its image, a wrong count)."""


class Corner(BaseModel):
    """One corner: its position and whether it lies in the image (COCO ``v`` 2, else 1)."""

    model_config = ConfigDict(frozen=True)

    x: float
    y: float
    visible: bool = True


class Quad(BaseModel):
    """Four corners: top-left, top-right, bottom-right, bottom-left."""

    model_config = ConfigDict(frozen=True)

    corners: tuple[Corner, Corner, Corner, Corner]

    @staticmethod
    def from_points(points: Sequence[Sequence[float]], width: int, height: int,
                    decimals: int = 2) -> Quad:
        """A quad from 4 (x, y) points, each visible when it lies in the image."""
        corners = []
        for x, y in points:
            x, y = round(float(x), decimals), round(float(y), decimals)
            corners.append(Corner(x=x, y=y, visible=0 <= x <= width and 0 <= y <= height))
        return Quad(corners=tuple(corners))

    def points(self) -> np.ndarray:
        """The corners as a (4, 2) float array."""
        return np.array([(c.x, c.y) for c in self.corners], np.float64)

    def area(self) -> float:
        """The polygon's area (shoelace), in square pixels."""
        x, y = self.points().T
        return float(abs(np.dot(x, np.roll(y, -1)) - np.dot(y, np.roll(x, -1))) / 2)

    def bbox(self, width: int, height: int) -> tuple[float, float, float, float]:
        """(x, y, w, h) of the corners' bounding box, clipped to the image."""
        p = self.points()
        x0, y0 = np.clip(p.min(0), 0, (width, height))
        x1, y1 = np.clip(p.max(0), 0, (width, height))
        return float(x0), float(y0), float(x1 - x0), float(y1 - y0)


class DeviceGeometry(BaseModel):
    """A photo's device outline and glass regions, in the upright image of ``width`` x
    ``height`` pixels. ``screen``: the display of a front; ``camera``: a back's camera
    module (its bounding box on the back, as seen in the photo)."""

    model_config = ConfigDict(frozen=True)

    width: int = Field(gt=0)
    height: int = Field(gt=0)
    device: Quad
    screen: Quad | None = None
    camera: Quad | None = None

    @model_validator(mode="after")
    def _visible_corners_in_image(self) -> DeviceGeometry:
        for name, quad in self.regions().items():
            for label, c in zip(CORNERS, quad.corners, strict=True):
                if c.visible and not (0 <= c.x <= self.width and 0 <= c.y <= self.height):
                    raise ValueError(
                        f"{name} corner {label} ({c.x:g}, {c.y:g}) is outside the "
                        f"{self.width}x{self.height} image (mark it not visible, v=1, "
                        "when the photo crops it)")
        return self

    def regions(self) -> dict[str, Quad]:
        """The quads present, by name: ``device`` first, then ``screen`` and ``camera``."""
        found = {"device": self.device, "screen": self.screen, "camera": self.camera}
        return {k: v for k, v in found.items() if v is not None}
