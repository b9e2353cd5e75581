"""Part conditions: what a photo of the front (screen) or back (shell) can show."""

from __future__ import annotations

from typing import Literal

from vision.errors import PhotogradeError

Part = Literal["screen", "shell"]

SCREEN_CONDITIONS: tuple[str, ...] = ("flawless", "light_scratches", "heavy_scratches", "cracked")
SHELL_CONDITIONS: tuple[str, ...] = ("flawless", "light_wear", "heavy_wear", "cracked")

CONDITIONS: dict[str, tuple[str, ...]] = {"screen": SCREEN_CONDITIONS, "shell": SHELL_CONDITIONS}
#: The parts a photo can show, in head order (the model's first head is the screen's).
PARTS: tuple[str, ...] = tuple(CONDITIONS)
#: Which photo shows which part.
PART_VIEW: dict[str, str] = {"screen": "front", "shell": "back"}
VIEWS: tuple[str, ...] = tuple(PART_VIEW.values())  # front, back: the photos of a device
NOT_CRACKED: dict[str, frozenset[str]] = {
    part: frozenset(c for c in classes if c != "cracked") for part, classes in CONDITIONS.items()
}


class ConditionError(PhotogradeError):
    """A condition label is not one of the part's conditions."""


def parse_condition_set(text: str, part: str) -> frozenset[str] | None:
    """Parse a condition cell: one condition, a coarse label ``a|b|c``, or empty (unknown).

    Returns the set of allowed conditions, or None when the cell is empty.
    Raises ConditionError naming the unknown label(s).
    """
    classes = CONDITIONS[part]
    text = text.strip()
    if not text:
        return None
    labels = [t.strip() for t in text.split("|")]
    unknown = [t for t in labels if t not in classes]
    if unknown:
        raise ConditionError(
            f"unknown {part} condition {', '.join(map(repr, unknown))}; "
            f"expected one of {', '.join(classes)} (or several joined by '|')"
        )
    return frozenset(labels)


def format_condition_set(allowed: frozenset[str] | None, part: str) -> str:
    """Inverse of :func:`parse_condition_set`, in the scale's order."""
    if not allowed:
        return ""
    return "|".join(c for c in CONDITIONS[part] if c in allowed)
