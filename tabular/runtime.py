"""Serving the return-risk model with ONNX Runtime (no scikit-learn, no torch)."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort

from fusion.policy import GradingPolicy
from tabular.evidence import EVIDENCE_FEATURES, Evidence
from tabular.features import FEATURE_NAMES, tabular_features, to_onnx_inputs
from tabular.schema import DeviceInfo, parse_device_info
from vision.errors import PhotogradeError
from vision.ort_options import session_options

ONNX_FILE, META_FILE = "tabular.onnx", "tabular.json"


class TabularModelError(PhotogradeError):
    """A return-risk model's files are missing or do not fit this version or grading scale."""


class ReturnRiskModel:
    """P(returned within 30 days) of a device listed at a grade, from ``train tabular`` files."""

    def __init__(self, onnx_path: str | Path, meta: Mapping[str, Any], threads: int | None = 1):
        names = list(meta.get("feature_names", []))
        unknown = [n for n in names if n not in FEATURE_NAMES]
        if not names:
            raise TabularModelError(f"{onnx_path}: its tabular.json names no feature_names "
                                    "(made by photograde train tabular or train return-risk)")
        if unknown:
            raise TabularModelError(f"{onnx_path}: the model was trained with features this "
                                    f"version does not compute ({', '.join(unknown)}); "
                                    "retrain it with this version")
        #: the model's inputs: every column, or the facts only (a model trained without
        #: evidence, e.g. by an earlier version)
        self.feature_names: tuple[str, ...] = tuple(names)
        self.meta = dict(meta)
        self.grades: tuple[str, ...] = tuple(meta["scale"]["grades"])
        self.proba_output: str = meta["outputs"]["probabilities"]
        self.positive_column: int = int(meta["outputs"].get("positive_column", 1))
        opts = session_options(threads or 1)  # a tiny model: one thread is enough
        self.session = ort.InferenceSession(str(onnx_path), sess_options=opts,
                                            providers=["CPUExecutionProvider"])
        inputs = [i.name for i in self.session.get_inputs()]
        if inputs != names:
            raise TabularModelError(f"{onnx_path}: ONNX inputs {inputs} do not match the "
                                    "features")

    @classmethod
    def from_dir(cls, path: str | Path, threads: int | None = 1) -> ReturnRiskModel:
        """Load ``tabular.onnx`` and ``tabular.json`` from a run (or bundle) directory."""
        path = Path(path)
        for name in (ONNX_FILE, META_FILE):
            if not (path / name).is_file():
                raise TabularModelError(f"{path / name} not found (made by photograde "
                                        "train tabular)")
        return cls(path / ONNX_FILE, json.loads((path / META_FILE).read_text()), threads)

    def predict_features(self, rows: Sequence[Mapping[str, Any]]) -> np.ndarray:
        """Return risk of feature rows (:func:`~tabular.features.tabular_features`), shape (N,)."""
        proba = self.session.run([self.proba_output],
                                 to_onnx_inputs(rows, self.feature_names))[0]
        return np.asarray(proba)[:, self.positive_column]

    @property
    def uses_evidence(self) -> bool:
        """Whether the model reads the photos' and history's evidence (not the facts only)."""
        return any(n in EVIDENCE_FEATURES for n in self.feature_names)

    def predict(self, info: DeviceInfo | Mapping[str, Any], announced_grades: Sequence[str],
                policy: GradingPolicy, evidence: Evidence | None = None) -> dict[str, float]:
        """The risk if the device were listed at each of ``announced_grades`` (``evidence``:
        what the photos and history say, see :mod:`tabular.evidence`)."""
        if tuple(policy.grades) != self.grades:
            raise TabularModelError(f"the model was trained on the scale "
                                    f"{', '.join(self.grades)}, not {policy.name} "
                                    f"({', '.join(policy.grades)})")
        if not isinstance(info, DeviceInfo):
            info = parse_device_info(dict(info))
        if not announced_grades:
            return {}
        rows = [tabular_features(info, g, policy, evidence) for g in announced_grades]
        return {g: float(p) for g, p in zip(announced_grades, self.predict_features(rows),
                                            strict=True)}
