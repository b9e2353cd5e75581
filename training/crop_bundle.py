"""Put a localiser into a bundle (issue 19's two-stage pipeline): ``photograde export
--localiser RUN``. The runtime then localises the device in each photo of the chosen views and
grades its rectified crop (:class:`fusion.bundle.CropInfo`, :func:`vision.crop.crop_decoded`),
so the bundle's vision model must have been trained on such crops (``scripts/crop-manifest``
cuts a manifest's photos the same way)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from fusion.bundle import (
    LOCALISER_CONFIG_FILE,
    LOCALISER_FILE,
    CropInfo,
    load_manifest,
    write_new_version,
)
from vision.localise import Localiser

VIEWS = ("front", "back")


def parse_views(text: str) -> list[str]:
    """``front,back`` -> ['front', 'back']; ValueError naming an unknown view."""
    views = [v.strip() for v in text.split(",") if v.strip()]
    unknown = [v for v in views if v not in VIEWS]
    if unknown or not views:
        raise ValueError(f"crop views: {', '.join(unknown) or 'none'}: expected front, back "
                         "or both (comma-separated)")
    return list(dict.fromkeys(views))


def add_localiser(bundle: Path, run: Path, views: list[str], long_side: int = 448) -> str:
    """Copy the localiser of ``run`` (a ``train localiser`` directory) into ``bundle`` with
    its crop settings; returns the new bundle version."""
    Localiser(run)  # refuses what is not a localiser, naming the file
    manifest = load_manifest(bundle, verify_hashes=True)
    shutil.copy(run / LOCALISER_FILE, bundle / LOCALISER_FILE)
    shutil.copy(run / LOCALISER_CONFIG_FILE, bundle / LOCALISER_CONFIG_FILE)
    config = json.loads((run / LOCALISER_CONFIG_FILE).read_text("utf-8"))
    manifest.crop = CropInfo.model_validate({
        "views": views, "long_side": long_side,
        "localiser": {k: config.get(k) for k in ("backbone", "presence_head", "threshold",
                                                 "parity_max_abs_diff", "training")}})
    return write_new_version(bundle, manifest, (LOCALISER_FILE, LOCALISER_CONFIG_FILE))
