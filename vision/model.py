"""The condition model: one shared timm backbone, two linear heads (screen, shell).

Why one backbone with two heads rather than two models:

* one ONNX graph to export, version and serve; the front and back photos of a phone go through
  it batched in a single inference call;
* half the weights and half the memory / cold-start cost;
* glass reflections, scratches, scuffs and cracks are the same low-level features on both
  views, so both parts' labels train the shared features; only the heads specialise.

Every image gets both heads' logits; the caller keeps screen logits for front photos and shell
logits for back photos (see ``vision.conditions.PART_VIEW``). The heads are linear on the
average-pooled last feature map, so a class activation map is exact:
``CAM[class] = sum_c w[class, c] * fmap[c]`` and ``logit = mean(CAM) + bias``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from vision.conditions import CONDITIONS, SCREEN_CONDITIONS, SHELL_CONDITIONS
from vision.preprocess import PreprocessConfig
from vision.weights import DEFAULT_BACKBONE, create_backbone, pretrained_cfg


class ConditionModel(nn.Module):
    """Shared backbone + ``screen`` and ``shell`` heads; ``forward`` returns both logits."""

    def __init__(
        self,
        backbone: nn.Module,
        *,
        backbone_name: str,
        preprocess: PreprocessConfig,
        drop_rate: float = 0.2,
        weights_source: str = "scratch",
    ) -> None:
        super().__init__()
        # A timm model: its API (reset_classifier, forward_head, num_features, blocks, ...) is
        # beyond nn.Module's type, which has every other attribute as Tensor | Module.
        net: Any = backbone
        net.reset_classifier(0)  # drop the ImageNet classifier, keep global_pool="avg"
        if getattr(net, "drop_rate", 0.0):
            net.drop_rate = 0.0  # the heads own the dropout; avoid dropping twice
        self.backbone: Any = net
        self.backbone_name = backbone_name
        self.preprocess = preprocess
        self.weights_source = weights_source
        self.drop_rate = drop_rate
        self.backbone_frozen = False
        self.frozen_modules: list[nn.Module] = []
        n = int(net.num_features)
        self.dropout = nn.Dropout(drop_rate)
        self.screen = nn.Linear(n, len(SCREEN_CONDITIONS))
        self.shell = nn.Linear(n, len(SHELL_CONDITIONS))

    def forward_features_map(self, x: Tensor) -> Tensor:
        """Last feature map before pooling, (B, C, h, w)."""
        return self.backbone.forward_features(x)

    def heads_from_features(self, fmap: Tensor) -> tuple[Tensor, Tensor]:
        """(screen_logits, shell_logits) from a feature map: avg pool, dropout, linear."""
        z = self.dropout(self.backbone.forward_head(fmap, pre_logits=True))
        return self.screen(z), self.shell(z)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """(screen_logits (B, 4), shell_logits (B, 4)) for every image of the batch."""
        return self.heads_from_features(self.forward_features_map(x))

    def head(self, part: str) -> nn.Linear:
        """The linear head of ``part`` ("screen" or "shell")."""
        if part not in CONDITIONS:
            raise ValueError(f"unknown part {part!r}; expected one of {', '.join(CONDITIONS)}")
        return self.screen if part == "screen" else self.shell

    def cam(self, fmap: Tensor, part: str, class_index: int) -> Tensor:
        """Class activation map (B, h, w): ``sum_c w[class, c] * fmap[:, c]`` (bias excluded)."""
        w = self.head(part).weight[class_index]
        return torch.einsum("c,bchw->bhw", w, fmap)

    def train(self, mode: bool = True) -> ConditionModel:
        """As ``nn.Module.train``, but a frozen backbone stays in eval mode (BN stats fixed)."""
        super().train(mode)
        if self.backbone_frozen:
            self.backbone.eval()
        for module in self.frozen_modules:
            module.eval()
        return self


def freeze_backbone(model: ConditionModel, frozen: bool) -> None:
    """Freeze (or unfreeze) the backbone: no gradients, and BatchNorm statistics kept fixed."""
    model.backbone_frozen = frozen
    early = {id(p) for m in model.frozen_modules for p in m.parameters()}
    for p in model.backbone.parameters():
        p.requires_grad_(not frozen and id(p) not in early)
    model.train(model.training)


def freeze_early_stages(model: ConditionModel, stages: int) -> int:
    """Freeze the stem and the first ``stages`` stages of the backbone (weights and BatchNorm
    statistics). Early stages see generic edges and textures and cost most of the backward pass
    at high resolution; freezing them makes CPU fine-tuning several times faster.

    Works for backbones with ``conv_stem``/``bn1``/``blocks`` (EfficientNet, MobileNet, ...);
    returns the number of stages frozen (0 for other architectures).
    """
    net = model.backbone
    if stages <= 0 or not hasattr(net, "blocks") or not hasattr(net, "conv_stem"):
        model.frozen_modules = []
        return 0
    modules = [net.conv_stem, getattr(net, "bn1", nn.Identity()), *list(net.blocks)[:stages]]
    for m in modules:
        for p in m.parameters():
            p.requires_grad_(False)
    model.frozen_modules = modules
    model.train(model.training)
    return min(stages, len(net.blocks))


def build_model(
    backbone: str = DEFAULT_BACKBONE,
    *,
    pretrained: bool = True,
    weights: str | Path | None = None,
    allow_download: bool = True,
    drop_rate: float = 0.2,
    img_size: int | None = None,
) -> tuple[ConditionModel, str]:
    """Create the condition model and say where the backbone weights came from.

    The preprocessing (mean/std) follows the backbone's pretrained config; ``img_size``
    defaults to its input size. See :func:`vision.weights.create_backbone` for the weights.
    """
    net, source = create_backbone(
        backbone, pretrained=pretrained, weights=weights, allow_download=allow_download
    )
    cfg = pretrained_cfg(net)
    pre = PreprocessConfig(
        img_size=img_size or cfg["input_size"][-1], mean=cfg["mean"], std=cfg["std"]
    )
    model = ConditionModel(
        net, backbone_name=backbone, preprocess=pre, drop_rate=drop_rate, weights_source=source
    )
    return model, source
