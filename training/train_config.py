"""The options of ``train vision`` and ``cv vision`` (torch-free): :class:`TrainConfig`, its
defaults and checks, so that the command line is built without importing torch."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from vision.backbone import DEFAULT_BACKBONE
from vision.errors import PhotogradeError


class TrainConfigError(PhotogradeError):
    """Training options that cannot work (bad values, or a run directory that does not fit)."""


def _option(default: Any, help: str, **cli: Any) -> Any:
    """A field that is also an option of ``train vision`` and ``cv vision``: the option is
    ``--field-name`` (or ``flag``, a switch that turns a true field off), with this default
    and help; ``type`` and ``metavar`` go to argparse (see :mod:`training.cli`)."""
    return field(default=default, metadata={"help": help, **cli})


@dataclass
class TrainConfig:
    """Training options: the fields made with :func:`_option` are the command's options."""

    manifests: list[str]
    out: str
    val_manifests: list[str] = field(default_factory=list)
    backbone: str = _option(DEFAULT_BACKBONE, "any timm model name")
    img_size: int = _option(224, "input size in pixels (square)")
    epochs: int = _option(10, "training epochs")
    batch_size: int = _option(32, "photos per batch (per process)")
    lr: float = _option(1e-3, "heads' learning rate")
    backbone_lr_mult: float = _option(0.3, "backbone learning rate = lr x this")
    weight_decay: float = 1e-4
    warmup_frac: float = 0.05
    accum_steps: int = _option(1, "gradient accumulation")
    patience: int = _option(4, "early stopping, in epochs")
    val_fraction: float = _option(0.15, "share of the training photos held out for "
                                  "validation")
    freeze_backbone: bool = _option(False, "baseline: linear probe on frozen pretrained "
                                    "features")
    freeze_stages: int = _option(3, "keep the stem and this many early backbone stages frozen "
                                 "(0: fine-tune everything)")
    head_epochs: int = _option(0, "staged fine-tuning: train the heads alone for this many "
                               "epochs first")
    pretrained: bool = _option(True, "train from scratch", flag="--no-pretrained")
    weights: str | None = _option(None, "backbone weights (safetensors or state dict)",
                                  type=Path)
    init_from: str | None = _option(None, "start from a finished run's model (backbone and "
                                    "heads) or a shipped model directory (e.g. "
                                    "models/photograde-base), e.g. to fine-tune it at a larger "
                                    "--img-size or on your photos", type=Path, metavar="RUN_DIR")
    drop_rate: float = 0.2
    device: str = _option("auto", "auto, cpu, cuda, cuda:N")
    amp: bool = _option(True, "no mixed precision (default: on for CUDA and bf16-capable "
                        "CPUs)", flag="--no-amp")
    seed: int = _option(0, "random seed (validation split, initialisation, augmentation)")
    workers: int = _option(-1, "DataLoader workers (-1: auto)")
    cache_dir: str | None = _option(None, "decoded-image cache (default: $PHOTOGRADE_CACHE "
                                    "or ~/.cache/photograde/images)", type=Path)
    grading: str | None = None
    resume: bool = False
    progress: bool = _option(True, "no progress bars", flag="--quiet")

    def check(self) -> None:
        """Raise :class:`TrainConfigError` for values that cannot work."""
        if not self.manifests:
            raise TrainConfigError("--manifest is required (one or more)")
        for name in ("epochs", "batch_size", "accum_steps", "img_size"):
            if getattr(self, name) < 1:
                raise TrainConfigError(f"--{name.replace('_', '-')} must be at least 1")
        if not 0 <= self.val_fraction < 1:
            raise TrainConfigError("--val-fraction must be in [0, 1)")
        if self.lr <= 0:
            raise TrainConfigError("--lr must be positive")
        if self.init_from and self.weights:
            raise TrainConfigError("--init-from and --weights exclude each other: --init-from "
                                   "already sets every weight")
