"""``photograde train vision``: fine-tune the condition model on one or more manifests.

AdamW with linear warm-up then cosine decay; class-balanced loss; coarse labels trained as
partial labels (maximise the probability mass of the allowed set); AMP on CUDA; gradient
accumulation; early stopping on validation macro-F1; checkpoints and ``--resume``; seeded;
multi-GPU / multi-node through ``torchrun`` (DDP, DistributedSampler; gloo on CPU).

:class:`~training.train_config.TrainConfig` holds every training default (torch-free, re-exported
here); :class:`~training.vision_trainer.VisionTrainer` runs the training; the run directory is
:mod:`training.vision_run`.
"""

from __future__ import annotations

from typing import Any

from training.train_config import TrainConfig, TrainConfigError

__all__ = ["TrainConfig", "TrainConfigError", "train_vision"]


def train_vision(cfg: TrainConfig) -> dict[str, Any]:
    """Train; returns the summary written to RUN_DIR/summary.json (empty on ranks > 0)."""
    from training.vision_trainer import VisionTrainer  # torch: only when training runs

    return VisionTrainer(cfg).run()
