"""The vision training objective: a partial-label loss on each photo's own head, and the
learning-rate schedule (linear warm-up, then cosine decay)."""

from __future__ import annotations

import math
from collections.abc import Callable

import torch


def partial_label_loss(logits: torch.Tensor, allowed: torch.Tensor,
                       weights: torch.Tensor) -> torch.Tensor:
    """Weighted mean of -log sum_{c allowed} softmax(logits)_c."""
    logits = logits.float()
    lse_all = torch.logsumexp(logits, 1)
    lse_ok = torch.logsumexp(logits.masked_fill(~allowed, float("-inf")), 1)
    return ((lse_all - lse_ok) * weights).sum() / weights.sum().clamp_min(1e-8)


def select_head(screen: torch.Tensor, shell: torch.Tensor, part: torch.Tensor) -> torch.Tensor:
    """Each row's own head's logits (part 0: screen, 1: shell)."""
    return torch.where((part == 0)[:, None], screen, shell)


def warmup_cosine(total: int, warmup: int) -> Callable[[int], float]:
    """Learning-rate factor per optimiser step, for ``LambdaLR``."""
    def f(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        progress = (step - warmup) / max(1, total - warmup)
        return 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))
    return f
