"""The tabular model's inputs and the functional state, for training and serving (numpy only).

:func:`tabular_features` turns device facts, checks and an announced grade into one row of
named raw columns (:data:`FEATURE_NAMES`: the facts', then the photos' and history's from
:mod:`tabular.evidence`), among them ``announced_rank`` (0 = best grade) and
``functional_gap``: how many steps the announced grade is better than the best grade the failed
checks and battery allow (exact, by the policy; 0 when they cap nothing).
:func:`to_onnx_inputs` stacks rows into the exported model's inputs, one 2-D array per column.
:func:`functional_state` is the part of the grade the checklist decides exactly, by the policy.

Unknown values (possible in training manifests; at serving time ``battery_health_pct`` and
the evidence a request lacks) are NaN for numeric columns and ``""`` for brand and model;
the model imputes them.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from fusion.policy import GradingPolicy
from tabular.evidence import EVIDENCE_FEATURES, Evidence, evidence_features
from tabular.schema import CHECKS

#: String columns (one-hot encoded by the model; unseen values are ignored).
STRING_FEATURES: tuple[str, ...] = ("brand", "model")
#: Float32 columns of the device's facts and announced grade (imputed and scaled by the model).
FACT_FEATURES: tuple[str, ...] = (
    "storage_log2", "unlocked", "battery_health_pct", "battery_known", *CHECKS,
    "n_failed_checks", "announced_rank", "functional_gap",
)
#: Every float32 column: the facts', then what the photos and history say.
NUMERIC_FEATURES: tuple[str, ...] = (*FACT_FEATURES, *EVIDENCE_FEATURES)
#: Every model input, in ONNX input order.
FEATURE_NAMES: tuple[str, ...] = (*STRING_FEATURES, *NUMERIC_FEATURES)
#: The inputs of a model trained without evidence (facts and announced grade only).
FACT_FEATURE_NAMES: tuple[str, ...] = (*STRING_FEATURES, *FACT_FEATURES)

_TRUE = {"true", "1", "yes", "y", "t"}
_FALSE = {"false", "0", "no", "n", "f"}


def _get(obj: Any, name: str) -> Any:
    if obj is None:
        return None
    if isinstance(obj, Mapping):
        return obj.get(name)
    return getattr(obj, name, None)


def _check(info: Any, name: str) -> Any:
    checks = _get(info, "checks")
    if checks is None and isinstance(info, Mapping):
        return info.get(name)  # a flat manifest-like row
    return _get(checks, name)


def _flag(value: Any) -> bool | None:
    if value is None:
        return None
    if isinstance(value, str):
        low = value.strip().lower()
        if low in _TRUE:
            return True
        if low in _FALSE:
            return False
        if not low:
            return None
        raise ValueError(f"expected true/false, got {value!r}")
    return bool(value)


def _float01(value: bool | None) -> float:
    return math.nan if value is None else float(value)


def _text(value: Any) -> str:
    return "" if value is None else " ".join(str(value).split()).lower()


def failed_checks(info: Any) -> list[str]:
    """Checks explicitly failed (unknown ones are not failures), in form order."""
    return [c for c in CHECKS if _flag(_check(info, c)) is False]


def tabular_features(info: Any, announced_grade: str, policy: GradingPolicy,
                     evidence: Evidence | None = None) -> dict[str, Any]:
    """One row of raw model inputs (every column of :data:`FEATURE_NAMES`) for a device
    listed at ``announced_grade``, with what the photos and history say (``evidence``; its
    columns NaN without it).

    ``info`` is a :class:`~tabular.schema.DeviceInfo`, a manifest row, or a mapping (nested
    ``checks`` or flat check columns). Raises ValueError for a grade not on the scale.
    """
    storage = _get(info, "storage_gb")
    battery = _get(info, "battery_health_pct")
    checks = {c: _flag(_check(info, c)) for c in CHECKS}
    row: dict[str, Any] = {
        "brand": _text(_get(info, "brand")),
        "model": _text(_get(info, "model")),
        "storage_log2": np.float32(math.log2(storage) if storage else math.nan),
        "unlocked": np.float32(_float01(_flag(_get(info, "unlocked")))),
        "battery_health_pct": np.float32(math.nan if battery is None else float(battery)),
        "battery_known": np.float32(battery is not None),
    }
    row.update({c: np.float32(_float01(v)) for c, v in checks.items()})
    row["n_failed_checks"] = np.float32(sum(v is False for v in checks.values()))
    rank = policy.rank(announced_grade)
    cap = functional_state(info, policy)["cap"]
    row["announced_rank"] = np.float32(rank)
    row["functional_gap"] = np.float32(max(0, policy.rank(cap) - rank) if cap else 0)
    row.update(evidence_features(evidence, rank))
    return row


def to_onnx_inputs(rows: Sequence[Mapping[str, Any]], names: Sequence[str] = FEATURE_NAMES
                   ) -> dict[str, np.ndarray]:
    """The model's ONNX inputs (the columns ``names``) for feature rows: strings as object
    (N, 1), the rest float32."""
    if not rows:
        raise ValueError("no feature rows")
    out: dict[str, np.ndarray] = {}
    for name in names:
        if name in STRING_FEATURES:
            out[name] = np.array([str(r[name]) for r in rows], dtype=object).reshape(-1, 1)
        else:
            out[name] = np.array([r[name] for r in rows], dtype=np.float32).reshape(-1, 1)
    return out


def functional_state(info: Any, policy: GradingPolicy) -> dict[str, Any]:
    """What the checklist decides by the policy: failed checks, battery, and the grade cap.

    ``battery_ok`` is None when the battery health is unknown or the policy has no battery rule;
    ``cap`` is the best grade the failed checks and battery allow (None: no cap).
    """
    failed = failed_checks(info)
    battery = _get(info, "battery_health_pct")
    battery_ok = None
    if battery is not None and policy.min_battery_health_pct is not None:
        battery_ok = battery >= policy.min_battery_health_pct
    caps = policy.caps(failed_checks=failed, battery_health_pct=battery)
    return {
        "failed_checks": failed,
        "battery_ok": battery_ok,
        "functional_ok": not failed and battery_ok is not False,
        "cap": policy.worst(*(c.grade for c in caps)) if caps else None,
    }
