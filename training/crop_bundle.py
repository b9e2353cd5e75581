"""Put a localiser into a bundle (issue 19's two-stage pipeline): ``photograde export
--localiser RUN``. The runtime then localises the device in each photo of the chosen views and
grades its rectified crop (:class:`fusion.bundle.CropInfo`, :func:`vision.crop.crop_decoded`),
so the bundle's vision model must have been trained on such crops (``scripts/crop-manifest``
cuts a manifest's photos the same way)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np

from fusion.bundle import (
    LOCALISER_CONFIG_FILE,
    LOCALISER_FILE,
    CropInfo,
    load_manifest,
    write_new_version,
)
from vision.conditions import VIEWS
from vision.localise import Localiser, LocaliserError
from vision.preprocess import normalize, open_image_sized, resize_rgb


def parse_views(text: str) -> list[str]:
    """``front,back`` -> ['front', 'back']; ValueError naming an unknown view."""
    views = [v.strip() for v in text.split(",") if v.strip()]
    unknown = [v for v in views if v not in VIEWS]
    if unknown or not views:
        raise ValueError(f"crop views: {', '.join(unknown) or 'none'}: expected front, back "
                         "or both (comma-separated)")
    return list(dict.fromkeys(views))


def add_localiser(bundle: Path, run: Path, views: list[str], long_side: int = 448, *,
                  int8: bool = False) -> str:
    """Copy the localiser of ``run`` (a ``train localiser`` directory) into ``bundle`` with
    its crop settings (``int8``: quantised, :func:`quantize_localiser`); returns the new
    bundle version."""
    fp32 = Localiser(run)  # refuses what is not a localiser, naming the file
    manifest = load_manifest(bundle, verify_hashes=True)
    calibration = calibration_photos(fp32, run) if int8 else []  # before anything is written
    shutil.copy(run / LOCALISER_CONFIG_FILE, bundle / LOCALISER_CONFIG_FILE)
    config = json.loads((run / LOCALISER_CONFIG_FILE).read_text("utf-8"))
    info = {k: config.get(k) for k in ("backbone", "presence_head", "threshold",
                                       "parity_max_abs_diff", "training")}
    if int8:
        info["int8"] = quantize_localiser(fp32, calibration, run / LOCALISER_FILE,
                                          bundle / LOCALISER_FILE)
    else:
        shutil.copy(run / LOCALISER_FILE, bundle / LOCALISER_FILE)
    manifest.crop = CropInfo.model_validate({"views": views, "long_side": long_side,
                                             "localiser": info})
    return write_new_version(bundle, manifest, (LOCALISER_FILE, LOCALISER_CONFIG_FILE))


def calibration_photos(fp32: Localiser, run: Path, n: int = 96, seed: int = 0) -> list[Path]:
    """``n`` front and back photos of the manifests the localiser of ``run`` trained on."""
    from training.photocheck_data import manifest_photos

    manifests = [Path(m) for m in fp32.config.training.get("manifests", [])]
    if not manifests or not all(m.is_file() for m in manifests):
        where = ", ".join(map(str, manifests)) or "none recorded"
        raise LocaliserError(f"{run}: the manifests its localiser trained on ({where}) are not "
                             "here to calibrate its int8 version; export without --int8, or "
                             "from where they are")
    return [p for m in manifests for view in VIEWS
            for p in manifest_photos(m, view, n // 2, seed)][:n]


def quantize_localiser(fp32: Localiser, paths: list[Path], onnx: Path, out: Path
                       ) -> dict[str, float]:
    """The localiser ``onnx`` quantised to int8 at ``out`` (static, as the vision model:
    :func:`training.export.quantize_int8`), calibrated on ``paths``; returns how far its
    corners move on them (fractions of the photo's width and height) and how many were used.
    ``out``'s config must be beside it."""
    from training.export import quantize_int8

    pre = fp32.pre
    x = np.stack([normalize(resize_rgb(open_image_sized(p, draft_size=pre.img_size)[0], pre),
                            pre) for p in paths]).astype(np.float32)
    quantize_int8(onnx, out, x)
    corners32, _ = fp32.run(x)
    corners8, _ = Localiser(out).run(x)
    change = np.abs(corners8 - corners32)
    return {"calibration_photos": len(x), "corner_change_mean": float(change.mean()),
            "corner_change_max": float(change.max())}
