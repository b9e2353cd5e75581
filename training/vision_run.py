"""A vision run directory: its config, checkpoints and calibration; loading and inference.

    RUN_DIR/config.json        training configuration (backbone, preprocessing, data, ...)
    RUN_DIR/best.pt            the best model (by validation score): weights + config
    RUN_DIR/last.pt            full training state, for --resume
    RUN_DIR/log.jsonl          one line per epoch
    RUN_DIR/calibration.json   per-head temperatures fitted on validation data
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from vision.errors import PhotogradeError
from vision.model import ConditionModel, build_model
from vision.preprocess import PreprocessConfig

PARTS = ("screen", "shell")


class RunError(PhotogradeError):
    """A vision run directory is missing or holds no finished run."""


def model_from_config(config: dict[str, Any]) -> ConditionModel:
    """An untrained model with the run's architecture (weights loaded separately)."""
    quiet = logging.getLogger("photograde.vision")  # no "random initialisation" message here
    level = quiet.level
    quiet.setLevel(logging.WARNING)
    try:
        model, _ = build_model(config["backbone"], pretrained=False,
                               drop_rate=config["drop_rate"], img_size=config["img_size"])
    finally:
        quiet.setLevel(level)
    model.preprocess = PreprocessConfig.from_dict(config["preprocess"])
    return model


def load_run(run_dir: str | Path, checkpoint: str = "best.pt"
             ) -> tuple[ConditionModel, dict[str, Any], dict[str, float]]:
    """(model in eval mode, config, temperatures) of a finished run."""
    run_dir = Path(run_dir)
    path = run_dir / checkpoint
    if not path.is_file():
        raise RunError(f"{path} not found: is {run_dir} a vision run directory "
                       f"(photograde train vision --out {run_dir})?")
    state = torch.load(path, map_location="cpu", weights_only=True)
    model = model_from_config(state["config"])
    model.load_state_dict(state["model"])
    model.eval()
    cal_path = run_dir / "calibration.json"
    temps = json.loads(cal_path.read_text()) if cal_path.is_file() else {}
    return model, state["config"], {p: float(temps.get(p, 1.0)) for p in PARTS}


@torch.no_grad()
def predict_logits(model: ConditionModel, images: np.ndarray, parts: list[str] | np.ndarray,
                   batch_size: int = 64, device: str = "cpu", progress: bool = False
                   ) -> np.ndarray:
    """Logits (N, 4) of each image's own head (cached uint8 images, no augmentation)."""
    from vision.preprocess import normalize

    model.to(device).eval()
    out = np.empty((len(images), 4), np.float32)
    for start in tqdm(range(0, len(images), batch_size), desc="predict", leave=False,
                      disable=not progress):
        chunk = images[start:start + batch_size]
        x = torch.from_numpy(np.stack([normalize(im, model.preprocess) for im in chunk]))
        screen, shell = model(x.to(device))
        is_screen = torch.tensor([p == "screen" for p in parts[start:start + batch_size]],
                                 device=device)
        out[start:start + len(chunk)] = torch.where(is_screen[:, None], screen,
                                                    shell).float().cpu().numpy()
    return out
