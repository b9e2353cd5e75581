"""The served precision, a measured choice: int8 only where it changes no measured accuracy
by more than half a point.

A bundle's int8 vision model records how it compares with fp32 (:class:`~fusion.bundle.
Int8Info`): macro-F1 per head on held-out synthetic photos (``export --int8 --int8-eval``) and
the screen head on labelled real fronts (``photograde evaluate precision``). ``auto`` serves
int8 when both were measured and every change is within :data:`MAX_CHANGE_POINTS`; otherwise
fp32, and the reason says which figure is missing or too large. The choice and its reason are logged
at start-up and reported by ``/v1/model``: never a silent precision change.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel

from fusion.bundle import BundleError, Int8Info

Precision = Literal["fp32", "int8"]
Wanted = Literal["auto", "fp32", "int8"]
#: the largest accuracy change (either way, in points) ``auto`` accepts for int8
MAX_CHANGE_POINTS = 0.5


class PrecisionChoice(BaseModel):
    """The vision model's served precision, why, and int8's measured changes (points)."""

    precision: Precision
    setting: Wanted
    reason: str
    int8_change_points: dict[str, float] = {}


def int8_changes(info: Int8Info) -> dict[str, float]:
    """Every measured accuracy change of int8 vs fp32, in points, by name."""
    changes = {f"synthetic macro-F1 {head}": float(v)
               for head, v in info.macro_f1_change_points.items()}
    if info.real_screen is not None:
        changes |= info.real_screen.change_points()
    return {k: round(v, 2) for k, v in changes.items()}


def _listed(changes: dict[str, float]) -> str:
    return ", ".join(f"{k} {v:+.2f}" for k, v in changes.items())


def choose_precision(info: Int8Info | None, wanted: Wanted, bundle: str = "the bundle",
                     max_points: float = MAX_CHANGE_POINTS) -> PrecisionChoice:
    """The precision to serve for the ``precision`` setting ``wanted`` (BundleError: int8 asked
    for and the bundle has none)."""
    changes = int8_changes(info) if info is not None else {}
    if wanted == "fp32":
        return PrecisionChoice(precision="fp32", setting=wanted, reason="precision=fp32",
                               int8_change_points=changes)
    if info is None:
        if wanted == "int8":
            raise BundleError(f"{bundle}: no int8 model in this bundle (export with --int8)")
        return PrecisionChoice(precision="fp32", setting=wanted,
                               reason="auto: the bundle has no int8 model")
    if wanted == "int8":
        return PrecisionChoice(precision="int8", setting=wanted, int8_change_points=changes,
                               reason=f"precision=int8; measured change (points): "
                                      f"{_listed(changes) or 'none measured'}")
    missing = [what for what, ok in (("synthetic macro-F1", info.macro_f1_change_points),
                                     ("real-screen figures", info.real_screen)) if not ok]
    if missing:
        return PrecisionChoice(precision="fp32", setting=wanted, int8_change_points=changes,
                               reason=f"auto: int8 has no {' or '.join(missing)} measured "
                                      "(photograde evaluate precision)")
    over = {k: v for k, v in changes.items() if abs(v) > max_points}
    if over:
        return PrecisionChoice(precision="fp32", setting=wanted, int8_change_points=changes,
                               reason=f"auto: int8 changes {_listed(over)} points "
                                      f"(more than {max_points:g})")
    return PrecisionChoice(precision="int8", setting=wanted, int8_change_points=changes,
                           reason=f"auto: every measured int8 change within {max_points:g} "
                                  f"point ({_listed(changes)})")
