"""``photograde export``: one versioned bundle directory for torch-free serving.

The bundle's files and manifest are the contract of :mod:`fusion.bundle`: the fp32 vision
model (and, with --int8, an int8 one calibrated on training photos), the return-risk model,
the fusion parameters with the grading config, sample inputs with their expected outputs, the
heads' weights for heatmaps, and ``manifest.json`` with the sha256 of every file.

Export checks parity between torch and ONNX Runtime on the sample inputs (max |difference| of
the logits <= 1e-4 and the same argmax) and fails loudly otherwise.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import math
import shutil
import time
from importlib.metadata import version
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
import torch

from fusion.bundle import (
    BUNDLE_FORMAT,
    FUSION_FILE,
    HEADS_FILE,
    PARITY_TOL,
    TABULAR_FILE,
    TABULAR_META_FILE,
    VISION_FILE,
    VISION_INPUT,
    VISION_INT8_FILE,
    VISION_OUTPUTS,
    BundleManifest,
    bundle_version,
    hash_files,
    save_heads,
    save_samples,
    write_manifest,
)
from training.image_cache import load_images
from training.manifest import load_manifest
from training.metrics import head_metrics
from training.samples import samples_from
from training.vision_run import RunDir, load_run, run_samples
from vision.conditions import CONDITIONS, PARTS
from vision.errors import PhotogradeError
from vision.model import ConditionModel
from vision.preprocess import PreprocessConfig, normalize, preprocess

log = logging.getLogger("photograde.export")

INT8_CALIBRATION = 128  # training photos used to calibrate int8 activations


class ExportError(PhotogradeError):
    """Export failed a check (parity, missing inputs); the message says which."""


class _Exported(torch.nn.Module):
    def __init__(self, model: ConditionModel):
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor):
        fmap = self.model.forward_features_map(x)
        screen, shell = self.model.heads_from_features(fmap)
        return screen, shell, fmap


def _version() -> str:
    try:
        return version("photograde")
    except Exception:
        return "0+unknown"


def static_same_padding(model: ConditionModel) -> int:
    """Freeze TF-style "same" padding at the model's input size; returns the layers changed.

    ``tf_*`` backbones pad stride-2 convolutions at run time from the input's shape, which the
    exporter writes as a chain of Shape/Gather/Ceil ops per layer and ONNX Runtime cannot fold.
    The model input size is fixed, so the padding is too: timm's export-friendly class computes
    it once (same weights, same arithmetic) and the graph gets constant pads (~15% faster on
    CPU here, and cleaner int8 quantisation).
    """
    return freeze_same_padding(model, model.preprocess.img_size)


def freeze_same_padding(model: torch.nn.Module, size: int) -> int:
    """:func:`static_same_padding` for any module run at ``size`` x ``size``."""
    from timm.layers.conv2d_same import Conv2dSame, Conv2dSameExport

    changed = 0
    for m in model.modules():
        if type(m) is Conv2dSame:
            conv: Any = m  # a live class swap: beyond what the types describe
            conv.__class__ = Conv2dSameExport
            conv.pad, conv.pad_input_size = None, (0, 0)
            changed += 1
    with torch.no_grad():  # an eager pass fixes each layer's padding as plain integers
        model.eval()(torch.zeros(1, 3, size, size))
    return changed


def export_onnx(model: ConditionModel, path: Path, opset: int = 17) -> None:
    import warnings

    model.eval()
    static_same_padding(model)
    size = model.preprocess.img_size
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the TorchScript exporter's deprecation notice
        torch.onnx.export(
            _Exported(model), (torch.zeros(2, 3, size, size),), str(path), dynamo=False,
            input_names=[VISION_INPUT], output_names=list(VISION_OUTPUTS), opset_version=opset,
            dynamic_axes={n: {0: "batch"} for n in (VISION_INPUT, *VISION_OUTPUTS)})
    model.eval()  # the exporter leaves the module in training mode


def session(path: Path, threads: int = 0) -> ort.InferenceSession:
    opts = ort.SessionOptions()
    if threads:
        opts.intra_op_num_threads = threads
    return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])


def check_parity(model: ConditionModel, onnx_path: Path, x: np.ndarray) -> float:
    """Max |torch - onnxruntime| over both heads' logits; raises ExportError past tolerance."""
    with torch.no_grad():
        ref = [t.numpy() for t in model.eval()(torch.from_numpy(x))]
    got = session(onnx_path).run(list(VISION_OUTPUTS[:2]), {VISION_INPUT: x})
    diff = max(float(np.abs(a - b).max()) for a, b in zip(ref, got, strict=True))
    same = all((a.argmax(1) == b.argmax(1)).all() for a, b in zip(ref, got, strict=True))
    if diff > PARITY_TOL or not same:
        raise ExportError(f"ONNX parity check failed: max |torch - onnxruntime| = {diff:.2e} "
                          f"(tolerance {PARITY_TOL:.0e}), same argmax: {same}")
    return diff


def quantize_int8(fp32: Path, out: Path, calib: np.ndarray) -> list[str]:
    """Static QDQ int8 quantisation (per-channel weights, entropy-calibrated activations on
    training photos); returns the nodes kept in float.

    The stem convolution (it sees raw normalised pixels) and the two linear heads stay fp32:
    they cost little time, and quantising them is where most of the accuracy went.
    """
    import onnx
    from onnxruntime.quantization import (
        CalibrationDataReader,
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_static,
    )
    from onnxruntime.quantization.shape_inference import quant_pre_process

    class Reader(CalibrationDataReader):
        """One photo per call (the entropy calibrator needs equal-sized batches), in ranges."""

        def __init__(self) -> None:
            self.set_range(0, len(calib))

        def __len__(self) -> int:
            return len(calib)

        def set_range(self, start_index: int, end_index: int) -> None:
            self.batches = iter([{VISION_INPUT: calib[i:i + 1]} for i in range(start_index,
                                                                          end_index)])

        def get_next(self):
            return next(self.batches, None)

    pre = out.with_suffix(".pre.onnx")
    quant_pre_process(str(fp32), str(pre), skip_symbolic_shape=True)
    nodes = onnx.load(str(pre)).graph.node
    convs = [n.name for n in nodes if n.op_type == "Conv"]
    keep = convs[:1] + [n.name for n in nodes if n.op_type == "Gemm"]
    quantize_static(str(pre), str(out), Reader(), quant_format=QuantFormat.QDQ,
                    per_channel=True, activation_type=QuantType.QUInt8,
                    weight_type=QuantType.QInt8, calibrate_method=CalibrationMethod.Entropy,
                    nodes_to_exclude=keep,
                    # histograms merged every 32 photos: every activation of all the
                    # calibration photos held at once took 9-15 GB at 224-288 px
                    extra_options={"CalibStridedMinMax": math.gcd(len(calib), 32)})
    pre.unlink()
    return keep


def _macro_f1(sess: ort.InferenceSession, images: np.ndarray, pre: PreprocessConfig,
              parts: list[str], allowed: np.ndarray) -> dict[str, float]:
    logits = np.concatenate([
        np.stack(sess.run(list(VISION_OUTPUTS[:2]), {VISION_INPUT: np.stack(
            [normalize(im, pre) for im in images[i:i + 16]])}), 1)
        for i in range(0, len(images), 16)])
    out = {}
    for k, part in enumerate(PARTS):
        sel = np.array([p == part for p in parts])
        if sel.any():
            m = head_metrics(logits[sel, k], allowed[sel], CONDITIONS[part])
            out[part] = m.get("macro_f1", m.get("cracked_vs_rest", {}).get("macro_f1"))
    return out


def _latency_ms(sess: ort.InferenceSession, x: np.ndarray, repeat: int = 20) -> float:
    sess.run(None, {VISION_INPUT: x})
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        sess.run(None, {VISION_INPUT: x})
        times.append(time.perf_counter() - t0)
    return float(np.median(times) * 1000)


def _manifest(out: Path, vision_run: str | Path, config: dict[str, Any],
              pre: PreprocessConfig, temps: dict[str, float], diff: float,
              int8_info: dict[str, Any] | None, fusion: dict[str, Any],
              demo: bool) -> BundleManifest:
    """The manifest of the files now in ``out`` (the last step of the export)."""
    vision_summary = RunDir(vision_run).read_summary()
    files = hash_files(out)
    created = dt.datetime.now(dt.UTC).replace(microsecond=0)
    return BundleManifest.model_validate({
        "bundle_format": BUNDLE_FORMAT,
        "bundle_version": bundle_version(files, created),
        "photograde_version": _version(),
        "created_at": created.isoformat(),
        "demo": demo,
        "vision": {"file": VISION_FILE, "backbone": config["backbone"],
                   "input_size": pre.img_size, "preprocess": pre.to_dict(),
                   "inputs": [VISION_INPUT], "outputs": list(VISION_OUTPUTS),
                   "classes": config["classes"], "temperatures": temps,
                   "head_weights": HEADS_FILE, "parity_max_abs_diff": diff, "int8": int8_info,
                   "weights_source": config["weights_source"],
                   "training_data": config["data"], "metrics": vision_summary.get("val")},
        "tabular": json.loads((out / TABULAR_META_FILE).read_text()),
        "fusion": {"file": FUSION_FILE, "metrics": fusion.get("metrics")},
        "grading": fusion["grading"],
        "versions": {"torch": torch.__version__, "onnxruntime": ort.__version__,
                     "onnx": version("onnx")},
        "files": files,
    })


def export_bundle(vision_run: str | Path, tabular_run: str | Path, fusion_run: str | Path,
                  out: str | Path, *, int8: bool = False, cache_dir: str | None = None,
                  n_samples: int = 4, overwrite: bool = False, demo: bool = False,
                  int8_eval: str | Path | None = None, model_name: str | None = None
                  ) -> BundleManifest:
    """Write the bundle; returns its manifest. ``demo``: a bundle trained on synthetic data
    only, flagged in its manifest (the UI shows a banner). ``int8_eval``: a held-out manifest
    on which to compare int8 with fp32 (default: the run's validation photos). ``model_name``:
    recorded in the manifest (``photograde-base`` for the shipped model)."""
    out = Path(out)
    if out.exists() and any(out.iterdir()):
        if not overwrite:
            raise ExportError(f"{out} is not empty (pass --overwrite to replace it)")
        shutil.rmtree(out)
    out.mkdir(parents=True, exist_ok=True)
    tabular_run, fusion_run = Path(tabular_run), Path(fusion_run)
    for path in (tabular_run / TABULAR_FILE, tabular_run / TABULAR_META_FILE,
                 fusion_run / FUSION_FILE):
        if not path.is_file():
            raise ExportError(f"{path} not found (train it first: photograde train "
                              f"{'tabular' if 'tabular' in path.name else 'fusion'})")
    model, config, temps = load_run(vision_run)
    pre = model.preprocess

    export_onnx(model, out / VISION_FILE)
    train_s, val_s = run_samples(vision_run, config)
    sample_x = np.stack([preprocess(s.path, pre) for s in val_s[:n_samples]])
    diff = check_parity(model, out / VISION_FILE, sample_x)
    log.info("%s: parity max |torch - onnxruntime| = %.2e", VISION_FILE, diff)
    expected = session(out / VISION_FILE).run(list(VISION_OUTPUTS[:2]), {VISION_INPUT: sample_x})

    int8_info: dict[str, Any] | None = None
    if int8:
        calib_s = train_s[::max(1, len(train_s) // INT8_CALIBRATION)][:INT8_CALIBRATION]
        calib = load_images([s.path for s in calib_s], pre.img_size, cache_dir, progress=False)
        calib_x = np.stack([normalize(im, pre) for im in calib])
        log.info("int8: calibrating on %d training photos", len(calib_x))
        kept = quantize_int8(out / VISION_FILE, out / VISION_INT8_FILE, calib_x)
        eval_s = samples_from([load_manifest(int8_eval)]) if int8_eval else val_s
        parts = [s.part for s in eval_s]
        allowed = np.array([s.allowed for s in eval_s])
        images = load_images([s.path for s in eval_s], pre.img_size, cache_dir)
        fp, q = session(out / VISION_FILE, 1), session(out / VISION_INT8_FILE, 1)
        f1_fp = _macro_f1(fp, images, pre, parts, allowed)
        f1_q = _macro_f1(q, images, pre, parts, allowed)
        one = np.stack([normalize(im, pre) for im in images[:2]])
        t_fp, t_q = _latency_ms(fp, one), _latency_ms(q, one)
        int8_info = {"file": VISION_INT8_FILE, "calibration_photos": len(calib_x),
                     "float_nodes": kept,
                     "evaluated_on": str(int8_eval) if int8_eval else "validation split",
                     "evaluation_photos": len(images), "macro_f1_fp32": f1_fp,
                     "macro_f1_int8": f1_q,
                     "macro_f1_change_points": {k: 100 * (f1_q[k] - f1_fp[k]) for k in f1_fp},
                     "cpu_ms_fp32_batch2_1thread": t_fp, "cpu_ms_int8_batch2_1thread": t_q,
                     "speedup": t_fp / t_q}
        log.info("int8: macro-F1 %s -> %s, CPU %.1f ms -> %.1f ms (%.2fx)",
                 {k: round(v, 4) for k, v in f1_fp.items()},
                 {k: round(v, 4) for k, v in f1_q.items()}, t_fp, t_q, t_fp / t_q)

    for name in (TABULAR_FILE, TABULAR_META_FILE):
        shutil.copy(tabular_run / name, out / name)
    fusion = json.loads((fusion_run / FUSION_FILE).read_text())
    shutil.copy(fusion_run / FUSION_FILE, out / FUSION_FILE)
    save_samples(out, sample_x, expected[0], expected[1])
    save_heads(out, {p: model.head(p).weight.detach().numpy() for p in PARTS})
    manifest = _manifest(out, vision_run, config, pre, temps, diff, int8_info, fusion, demo)
    manifest.model_name = model_name
    write_manifest(out, manifest)
    log.info("bundle %s written to %s", manifest.bundle_version, out)
    return manifest
