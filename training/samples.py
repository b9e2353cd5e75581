"""Labelled photos of manifests: one sample per (photo, part), and the validation split.

A front photo is a sample of the screen head and a back photo one of the shell head. A label is
a set of allowed classes: exact labels allow one, coarse labels (``a|b|c``) several; photos
with no label are skipped. Torch-free: evaluating a bundle uses it too.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

from training.manifest import CROP_SUFFIX, Manifest
from vision.conditions import CONDITIONS, PART_VIEW, PARTS


@dataclass(frozen=True)
class Sample:
    device_id: str
    path: Path
    part: str  # screen | shell
    allowed: tuple[bool, ...]  # per class of the part

    @property
    def exact(self) -> int:
        """The class index when the label is exact, else -1."""
        return self.allowed.index(True) if sum(self.allowed) == 1 else -1

    @property
    def group(self) -> tuple[str, tuple[bool, ...]]:
        return self.part, self.allowed


def samples_from(manifests: list[Manifest]) -> list[Sample]:
    out = []
    for m in manifests:
        for row in m.rows:
            for part in PARTS:
                path, allowed = row.photo(PART_VIEW[part]), row.condition(part)
                if path is None or not allowed:
                    continue
                out.append(Sample(row.device_id, path, part,
                                  tuple(c in allowed for c in CONDITIONS[part])))
    return out


def split(samples: list[Sample], val_fraction: float, seed: int) -> tuple[list[Sample],
                                                                         list[Sample]]:
    """Deterministic split by device (both photos of a device fall on the same side, and so
    do its crops' row of a ``mixed.csv``, whose id ends in :data:`CROP_SUFFIX`)."""
    def is_val(s: Sample) -> bool:
        device = s.device_id.removesuffix(CROP_SUFFIX)
        h = hashlib.sha1(f"{seed}:{device}".encode(), usedforsecurity=False).digest()
        return int.from_bytes(h[:8], "big") / 2**64 < val_fraction

    train = [s for s in samples if not is_val(s)]
    val = [s for s in samples if is_val(s)]
    return train, val
