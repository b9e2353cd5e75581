"""A vision run directory, written and read by this module only; loading and inference.

    RUN_DIR/config.json        training configuration (backbone, preprocessing, data, ...)
    RUN_DIR/split.json         the validation split: the devices validated on, and how
    RUN_DIR/best.pt            the best model (by validation score): weights + config
    RUN_DIR/last.pt            full training state, for --resume
    RUN_DIR/log.jsonl          one line per epoch
    RUN_DIR/calibration.json   per-head temperatures fitted on validation data
    RUN_DIR/summary.json       best validation score, epochs run, temperatures, metrics

Export and fusion training read the validation split from ``split.json``; for a run written
before that file existed they recompute the same seeded split from the run's config.

A shipped model directory (e.g. ``models/photograde-base``: an exported bundle) also holds
``vision.fp16.safetensors`` (:func:`save_fp16_weights`): the best model in float16 with the
run's config and temperatures in its metadata. :func:`load_run` and :func:`init_from_run`
accept such a directory in place of a run directory.
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from training.manifest import Manifest, load_manifest
from training.samples import Sample, samples_from, split
from training.train_config import TrainConfigError
from vision.conditions import CONDITIONS, PARTS
from vision.errors import PhotogradeError
from vision.model import ConditionModel, build_model
from vision.preprocess import PreprocessConfig

log = logging.getLogger("photograde.train")

CONFIG, SPLIT, BEST, LAST = "config.json", "split.json", "best.pt", "last.pt"
FP16_WEIGHTS = "vision.fp16.safetensors"
LOG, CALIBRATION, SUMMARY = "log.jsonl", "calibration.json", "summary.json"
SPLIT_FORMAT = "photograde-split/1"


class RunError(PhotogradeError):
    """A vision run directory is missing or holds no finished run."""


@dataclass(frozen=True)
class ValidationSplit:
    """Which devices a run validated on: a seeded split of its training manifests by device
    (``method="device_split"``) or its ``--val-manifest`` (``"val_manifests"``)."""

    method: str
    seed: int
    val_fraction: float
    val_device_ids: tuple[str, ...]
    val_photos: int
    format: str = SPLIT_FORMAT

    @classmethod
    def of(cls, val: list[Sample], method: str, seed: int, val_fraction: float
           ) -> ValidationSplit:
        ids = tuple(dict.fromkeys(s.device_id for s in val))  # unique, in sample order
        return cls(method, seed, val_fraction, ids, len(val))


class RunDir:
    """The files of one vision run directory (nothing is written on construction)."""

    def __init__(self, path: str | Path):
        self.path = Path(path)

    def __truediv__(self, name: str) -> Path:
        return self.path / name

    def create(self) -> None:
        self.path.mkdir(parents=True, exist_ok=True)

    def _write_json(self, name: str, data: Any) -> None:
        (self.path / name).write_text(json.dumps(data, indent=2))

    def _read_json(self, name: str) -> Any | None:
        path = self.path / name
        return json.loads(path.read_text()) if path.is_file() else None

    # -- config, split, log, temperatures, summary ----------------------------------------
    def write_config(self, config: dict[str, Any]) -> None:
        self._write_json(CONFIG, config)

    def read_config(self) -> dict[str, Any]:
        config = self._read_json(CONFIG)
        if config is None:
            raise RunError(f"{self.path}: no {CONFIG} (not a vision run directory)")
        return config

    def write_split(self, val_split: ValidationSplit) -> None:
        self._write_json(SPLIT, asdict(val_split))

    def read_split(self) -> ValidationSplit | None:
        """The saved validation split; None for a run written before ``split.json``."""
        data = self._read_json(SPLIT)
        if data is None:
            return None
        if data.get("format") != SPLIT_FORMAT:
            raise RunError(f"{self.path / SPLIT}: unknown format {data.get('format')!r} "
                           f"(expected {SPLIT_FORMAT})")
        return ValidationSplit(**{**data, "val_device_ids": tuple(data["val_device_ids"])})

    def append_log(self, entry: dict[str, Any]) -> None:
        with (self.path / LOG).open("a") as f:
            f.write(json.dumps(entry) + "\n")

    def read_log(self) -> list[dict[str, Any]]:
        """One entry per epoch (none for a run without a log)."""
        path = self.path / LOG
        return [json.loads(line) for line in path.read_text().splitlines()] \
            if path.is_file() else []

    def write_temperatures(self, temps: dict[str, float]) -> None:
        self._write_json(CALIBRATION, temps)

    def read_temperatures(self) -> dict[str, float]:
        """Per-head temperatures (1.0 for a head without one)."""
        temps = self._read_json(CALIBRATION) or {}
        return {p: float(temps.get(p, 1.0)) for p in PARTS}

    def write_summary(self, summary: dict[str, Any]) -> None:
        self._write_json(SUMMARY, summary)

    def read_summary(self) -> dict[str, Any]:
        """The finished run's summary (empty when training did not finish)."""
        return self._read_json(SUMMARY) or {}

    # -- checkpoints ------------------------------------------------------------------------
    def has_checkpoint(self) -> bool:
        """Whether a training state (``last.pt``) is there to resume."""
        return (self.path / LAST).is_file()

    def save_best(self, model: torch.nn.Module, config: dict[str, Any]) -> None:
        torch.save({"model": model.state_dict(), "config": config}, self.path / BEST)

    def save_last(self, state: dict[str, Any]) -> None:
        torch.save(state, self.path / LAST)

    def load_last(self) -> dict[str, Any]:
        """The full training state (model, optimiser, scheduler, history, ...)."""
        return torch.load(self.path / LAST, map_location="cpu", weights_only=False)


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


def _weights_file(path: Path, checkpoint: str = BEST) -> Path:
    """The checkpoint of a run directory, the fp16 weights of a shipped model directory (one
    without the checkpoint), or ``path`` itself when it is not a directory."""
    if not path.is_dir():
        return path
    if not (path / checkpoint).is_file() and (path / FP16_WEIGHTS).is_file():
        return path / FP16_WEIGHTS
    return path / checkpoint


def _read_fp16(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, Any], dict[str, float]]:
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
            state = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118 (not a dict)
    except SafetensorError as e:
        raise RunError(f"{path} is not a photograde vision checkpoint ({e})") from None
    if "config" not in meta:
        raise RunError(f"{path} is not a photograde vision checkpoint (no config metadata)")
    state = {k: v.float() if v.dtype == torch.float16 else v for k, v in state.items()}
    temps = json.loads(meta.get("temperatures") or "{}")
    return state, json.loads(meta["config"]), {p: float(temps.get(p, 1.0)) for p in PARTS}


def _read_weights(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, Any],
                                       dict[str, float] | None]:
    """(float32 state dict, config, temperatures) of a checkpoint or fp16 weights file; the
    temperatures are None for a checkpoint (they live in its run directory)."""
    if path.suffix == ".safetensors":
        return _read_fp16(path)
    state = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(state, dict) or "model" not in state or "config" not in state:
        raise RunError(f"{path} is not a photograde vision checkpoint")
    return state["model"], state["config"], None


def load_run(run_dir: str | Path, checkpoint: str = BEST
             ) -> tuple[ConditionModel, dict[str, Any], dict[str, float]]:
    """(model in eval mode, config, temperatures) of a finished run or a shipped model."""
    run = RunDir(run_dir)
    path = _weights_file(run.path, checkpoint)
    if not path.is_file():
        raise RunError(f"{path} not found: is {run.path} a vision run directory "
                       f"(photograde train vision --out {run.path}) or a shipped model "
                       f"directory (with {FP16_WEIGHTS})?")
    state, config, temps = _read_weights(path)
    model = model_from_config(config)
    model.load_state_dict(state)
    model.eval()
    return model, config, temps if temps is not None else run.read_temperatures()


def save_fp16_weights(run_dir: str | Path, out_dir: str | Path) -> Path:
    """Write the run's best model as float16 safetensors, with its config and temperatures
    in the metadata, to ``out_dir/FP16_WEIGHTS`` (the weights of a shipped model)."""
    from safetensors.torch import save_file

    model, config, temps = load_run(run_dir)
    state = {k: (v.half() if v.is_floating_point() else v).contiguous()
             for k, v in model.state_dict().items()}
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    save_file(state, str(out / FP16_WEIGHTS),
              metadata={"config": json.dumps(config), "temperatures": json.dumps(temps)})
    return out / FP16_WEIGHTS


def init_from_run(model: ConditionModel, path: str | Path, backbone: str) -> str:
    """Load a finished run's (or a shipped model's) whole model, backbone and heads, into
    ``model``, e.g. to go on training it at a larger input size or on other data; returns the
    weights source to record."""
    ckpt = _weights_file(Path(path))
    if not ckpt.is_file():
        raise TrainConfigError(f"--init-from: {ckpt} not found (pass a vision run directory, "
                               f"its {BEST}, or a shipped model directory with {FP16_WEIGHTS})")
    try:
        state, theirs, _ = _read_weights(ckpt)
    except RunError as e:
        raise TrainConfigError(f"--init-from: {e}") from None
    if theirs["backbone"] != backbone:
        raise TrainConfigError(f"--init-from: {ckpt} was trained with backbone "
                               f"{theirs['backbone']!r}, not {backbone!r}")
    if theirs.get("classes") != {p: list(CONDITIONS[p]) for p in PARTS}:
        raise TrainConfigError(f"--init-from: {ckpt} has other condition classes "
                               f"({theirs.get('classes')})")
    model.load_state_dict(state)
    log.info("initialised from %s (trained at %d px)", ckpt, theirs["img_size"])
    return f"{theirs.get('weights_source', 'unknown')} -> {ckpt}"


# -- the validation split, read back --------------------------------------------------------
def run_samples(run_dir: str | Path, config: dict[str, Any]
                ) -> tuple[list[Sample], list[Sample]]:
    """The run's training and validation photos, split exactly as training split them."""
    tc = config["train_config"]
    train = samples_from([load_manifest(m) for m in tc["manifests"]])
    if tc.get("val_manifests"):
        return train, samples_from([load_manifest(m) for m in tc["val_manifests"]])
    saved = RunDir(run_dir).read_split()
    if saved is None:  # a run from before split.json: the same seeded split, recomputed
        return split(train, tc["val_fraction"], tc["seed"])
    val_ids = set(saved.val_device_ids)
    return ([s for s in train if s.device_id not in val_ids],
            [s for s in train if s.device_id in val_ids])


def validation_devices(run_dir: str | Path, config: dict[str, Any],
                       manifest: Manifest) -> set[str]:
    """The devices of ``manifest`` (one the run trained on) in the run's validation split."""
    saved = RunDir(run_dir).read_split()
    if saved is None:  # a run from before split.json: the same seeded split, recomputed
        tc = config["train_config"]
        _, val = split(samples_from([manifest]), tc["val_fraction"], tc["seed"])
        return {s.device_id for s in val}
    return {r.device_id for r in manifest.rows} & set(saved.val_device_ids)


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


def cracked_probability(model: ConditionModel, temperatures: dict[str, float],
                        images: np.ndarray, part: str, device: str = "cpu") -> np.ndarray:
    """The calibrated P(cracked) of each image (cached uint8) by ``part``'s head."""
    from training.metrics import softmax

    logits = predict_logits(model, images, [part] * len(images), device=device)
    return softmax(logits, temperatures[part])[:, CONDITIONS[part].index("cracked")]
