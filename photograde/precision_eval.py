"""``photograde evaluate precision``: the bundle's int8 vision model against its fp32 one on
labelled real front photos, recorded in the manifest (``vision.int8.real_screen``), where the
service's ``precision = auto`` reads it (:mod:`fusion.precision`)."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

from fusion.bundle import (
    BundleManifest,
    Int8Info,
    RealScreenChange,
    load_manifest,
    write_manifest,
)
from fusion.precision import PrecisionChoice, choose_precision
from photograde.bundle_eval import BundleEvalError, evaluate_bundle


def real_screen_change(fp32: dict[str, Any], int8: dict[str, Any], evaluated_on: str
                       ) -> RealScreenChange:
    """The change from the ``screen`` figures of ``evaluate bundle`` with each model."""
    if fp32.get("roc_auc_cracked") is None or int8.get("roc_auc_cracked") is None:
        raise BundleEvalError(f"{evaluated_on}: needs cracked and intact real fronts "
                              "(no cracked ROC-AUC without both)")
    return RealScreenChange(
        evaluated_on=evaluated_on, photos=int(fp32["n"]),
        roc_auc_cracked_fp32=fp32["roc_auc_cracked"],
        roc_auc_cracked_int8=int8["roc_auc_cracked"],
        macro_f1_cracked_fp32=fp32["cracked_vs_rest"]["macro_f1"],
        macro_f1_cracked_int8=int8["cracked_vs_rest"]["macro_f1"])


def _int8_of(manifest: BundleManifest, bundle: Path) -> Int8Info:
    """The bundle's int8 model, or BundleEvalError."""
    if manifest.vision.int8 is None:
        raise BundleEvalError(f"{bundle}: no int8 model in this bundle (export with --int8)")
    return manifest.vision.int8


def record_real_screen(bundle: Path, change: RealScreenChange) -> PrecisionChoice:
    """Write ``change`` into the bundle's manifest; returns what ``precision=auto`` now
    serves."""
    manifest = load_manifest(bundle, verify_hashes=False)
    int8 = _int8_of(manifest, bundle)
    int8.real_screen = change
    write_manifest(bundle, manifest)
    return choose_precision(int8, "auto", str(bundle))


def evaluate_precision(bundle: Path, real: Path, threads: int | None = None,
                       progress: bool = True) -> PrecisionChoice:
    """Evaluate fp32 and int8 on the real fronts of manifest ``real``, record the change."""
    _int8_of(load_manifest(bundle), bundle)  # before two evaluations
    with tempfile.TemporaryDirectory() as tmp:
        screens = [evaluate_bundle(bundle, [real], Path(tmp) / name, int8=name == "int8",
                                   threads=threads, worst=0, progress=progress).get("screen")
                   or {} for name in ("fp32", "int8")]
    return record_real_screen(bundle, real_screen_change(screens[0], screens[1], str(real)))
