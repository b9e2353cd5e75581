"""Vision training data: one sample per (photo, part) from one or more manifests.

A front photo trains the screen head and a back photo the shell head. A label is a set of
allowed classes: exact labels allow one, coarse labels (``a|b|c``) several; photos with no label
are skipped.
"""

from __future__ import annotations

from collections import Counter

import numpy as np
import torch
from torch.utils.data import Dataset

from training.samples import Sample
from vision.conditions import PARTS
from vision.preprocess import PreprocessConfig


def balanced_weights(samples: list[Sample]) -> np.ndarray:
    """Per-sample loss weights so that every label group of a part weighs the same in total."""
    counts = Counter(s.group for s in samples)
    groups_per_part = Counter(part for part, _ in counts)
    per_part = Counter(s.part for s in samples)
    w = np.array([per_part[s.part] / (groups_per_part[s.part] * counts[s.group])
                  for s in samples], np.float32)
    return w / w.mean()


def normalize_batch(x: torch.Tensor, cfg: PreprocessConfig, device: str) -> torch.Tensor:
    """uint8 (N, 3, S, S) batch -> normalised float32 on ``device`` (channels-last).

    The same arithmetic as :func:`vision.preprocess.normalize`, done once per batch on the
    training device: DataLoader workers and host-to-device copies move 4x fewer bytes.
    """
    mean = torch.tensor(cfg.mean, dtype=torch.float32, device=device).view(1, 3, 1, 1)
    std = torch.tensor(cfg.std, dtype=torch.float32, device=device).view(1, 3, 1, 1)
    x = x.to(device, non_blocking=True).float().div_(255.0).sub_(mean).div_(std)
    return x.contiguous(memory_format=torch.channels_last)


class PhotoDataset(Dataset):
    """Cached uint8 images, augmented (train) or not (eval).

    Items: (image (3, S, S) uint8, part index (0 screen, 1 shell), allowed mask (4,) bool,
    loss weight). Augmentation is seeded per (seed, epoch, index): results do not depend on
    the number of DataLoader workers.
    """

    def __init__(self, samples: list[Sample], images: np.ndarray, augment=None,
                 weights: np.ndarray | None = None, seed: int = 0):
        self.samples, self.images, self.augment = samples, images, augment
        self.weights = weights if weights is not None else np.ones(len(samples), np.float32)
        self.seed, self.epoch = seed, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, i: int):
        img = self.images[i]
        if self.augment is not None:
            self.augment.set_random_seed((self.seed * 1_000_003 + self.epoch) * 10_000_019 + i)
            img = self.augment(image=img)["image"]
        s = self.samples[i]
        chw = torch.from_numpy(np.ascontiguousarray(img.transpose(2, 0, 1)))
        return chw, PARTS.index(s.part), torch.tensor(s.allowed), float(self.weights[i])
