"""Train the device localiser: ``photograde train localiser`` (issue 19, item 2).

A timm backbone (``tf_efficientnet_lite0``, offline ImageNet weights: :mod:`vision.weights`)
and a small head on its last feature map (1x1 conv, flatten, two linear layers; the flatten
keeps where things are, which global pooling would average away) regress the 8 corner
coordinates of the device outline as fractions of the photo's width and height, plus one
"device present" logit. Labels: the manifests' geometry sidecars
(:mod:`training.annotations`). Negatives: the generator's scenes without a phone
(:func:`training.photocheck_data.empty_scenes`); with ``negatives=0`` the presence head is
not trained and the config says so. Loss: smooth-L1 on the corners in order (photos with a
device only) + binary cross-entropy on presence. Augmentation: a mirror that swaps the
corners left for right (so the order stays top-left, top-right, ...) and brightness /
contrast jitter. Export: ONNX with a parity check against torch
(:data:`fusion.bundle.PARITY_TOL`). The torch-free runtime is :mod:`vision.localise`.
"""

from __future__ import annotations

import logging
import time
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn
from tqdm import tqdm

from fusion.bundle import PARITY_TOL
from training.manifest import DatasetError, load_manifest
from vision.errors import PhotogradeError
from vision.localise import (
    CONFIG_FILE,
    INPUT,
    LOCALISER_FILE,
    OUTPUTS,
    Localiser,
    LocaliserConfig,
    write_config,
)
from vision.preprocess import PreprocessConfig, normalize, open_image, resize_rgb

log = logging.getLogger("photograde.training")
BACKBONE = "tf_efficientnet_lite0"
CHECKPOINT_FILE = "localiser.pt"
#: Mirror: new corner k is old corner MIRROR[k] (top-left <-> top-right, bottom-right <->
#: bottom-left), with x -> 1 - x.
MIRROR = (1, 0, 3, 2)
#: A typical device outline (fractions), the corner layer's starting bias.
PRIOR = (0.3, 0.2, 0.7, 0.2, 0.7, 0.8, 0.3, 0.8)


class LocaliseError(PhotogradeError):
    """Localiser training or export cannot proceed (no geometry, a failed parity check)."""


@dataclass
class LocaliseConfig:
    """Options of ``train localiser``."""

    manifests: list[str]
    out: str
    img_size: int = 160
    epochs: int = 8
    batch_size: int = 32
    lr: float = 1e-3
    weight_decay: float = 1e-4
    negatives: int = 200
    seed: int = 0
    pretrained: bool = True
    weights: str | None = None
    progress: bool = True


@dataclass
class LocaliseData:
    """Photos squashed to the input size (uint8 N x S x S x 3), their corners as fractions
    (N x 8; zeros for a photo without a device) and whether a device is there (N)."""

    images: np.ndarray
    corners: np.ndarray
    present: np.ndarray
    sides: list[str]


def load_data(manifests: list[str], pre: PreprocessConfig, negatives: int = 0, seed: int = 0,
              progress: bool = True) -> LocaliseData:
    """Every photo of ``manifests`` with a device outline, and ``negatives`` scenes without
    a phone; raises :class:`~training.manifest.DatasetError` when no photo has geometry."""
    items: list[tuple[Any, np.ndarray | None, str]] = []
    for m in manifests:
        for row in load_manifest(m).rows:
            for side in ("front", "back"):
                g, path = row.geometry(side), row.photo(side)
                if g is not None and path is not None:
                    items.append((path, g.device.points().ravel() / ((g.width, g.height) * 4),
                                  side))
    if not items:
        raise DatasetError(f"no photo of {', '.join(manifests)} has a device outline: the "
                           "localiser needs a geometry sidecar (<stem>.annotations.json; "
                           "'photograde synth' writes one)")
    if negatives:
        from training.photocheck_data import empty_scenes

        items += [(s, None, "none") for s in empty_scenes(negatives, seed + 11)]
    images = np.zeros((len(items), pre.img_size, pre.img_size, 3), np.uint8)
    for i, (src, _, _) in enumerate(tqdm(items, desc="decode", unit="photo", leave=False,
                                         disable=not progress)):
        images[i] = resize_rgb(open_image(src, draft_size=pre.img_size), pre)
    corners = np.array([c if c is not None else np.zeros(8) for _, c, _ in items], np.float32)
    present = np.array([c is not None for _, c, _ in items], np.float32)
    return LocaliseData(images, corners, present, [s for _, _, s in items])


class LocaliserNet(nn.Module):
    """Backbone feature map -> 1x1 conv -> flatten -> MLP -> 8 corners + 1 presence logit."""

    def __init__(self, backbone: nn.Module, channels: int, grid: int, hidden: int = 256):
        super().__init__()
        self.backbone = backbone
        self.reduce = nn.Sequential(nn.Conv2d(channels, 32, 1), nn.BatchNorm2d(32), nn.ReLU())
        self.mlp = nn.Sequential(nn.Flatten(), nn.Linear(32 * grid * grid, hidden), nn.ReLU(),
                                 nn.Linear(hidden, 9))
        last: Any = self.mlp[-1]
        with torch.no_grad():
            last.weight.mul_(0.1)
            last.bias.copy_(torch.tensor([*PRIOR, 0.0]))

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        feats: Any = self.backbone
        out = self.mlp(self.reduce(feats.forward_features(x)))
        return out[:, :8], out[:, 8]


def build_net(cfg: LocaliseConfig) -> tuple[LocaliserNet, PreprocessConfig, str]:
    """The network, its input transform and where the backbone's weights came from."""
    from vision.weights import create_backbone, pretrained_cfg

    net, source = create_backbone(BACKBONE, pretrained=cfg.pretrained,
                                       weights=cfg.weights, allow_download=False)
    backbone: Any = net  # a timm model: forward_features is beyond nn.Module's type
    pc = pretrained_cfg(backbone)
    pre = PreprocessConfig(img_size=cfg.img_size, mean=pc["mean"], std=pc["std"])
    with torch.no_grad():
        fmap = backbone.eval().forward_features(torch.zeros(1, 3, cfg.img_size, cfg.img_size))
    return LocaliserNet(backbone, fmap.shape[1], fmap.shape[2]), pre, source


def _batch(d: LocaliseData, idx: np.ndarray, pre: PreprocessConfig, rng: np.random.Generator,
           augment: bool) -> tuple[Tensor, Tensor, Tensor]:
    images, corners = d.images[idx].astype(np.float32), d.corners[idx].copy()
    if augment:
        flip = rng.random(len(idx)) < 0.5
        images[flip] = images[flip, :, ::-1]
        c = corners[flip].reshape(-1, 4, 2)[:, MIRROR]
        c[..., 0] = 1 - c[..., 0]
        corners[flip] = np.where(d.present[idx][flip, None] > 0, c.reshape(-1, 8), 0)
        gain = rng.uniform(0.7, 1.3, (len(idx), 1, 1, 1))
        shift = rng.uniform(-25, 25, (len(idx), 1, 1, 1))
        images = np.clip(images * gain + shift, 0, 255)
    x = np.stack([normalize(im.astype(np.uint8), pre) for im in images])
    return torch.from_numpy(x), torch.from_numpy(corners), torch.from_numpy(d.present[idx])


def loss_fn(corners: Tensor, presence: Tensor, y: Tensor, present: Tensor,
            presence_head: bool) -> Tensor:
    """Smooth-L1 on the corners of photos with a device (+ BCE on presence)."""
    mask = present > 0
    loss = (nn.functional.smooth_l1_loss(corners[mask], y[mask], beta=0.02) / 0.02
            if mask.any() else corners.sum() * 0)
    if presence_head:
        loss = loss + nn.functional.binary_cross_entropy_with_logits(presence, present)
    return loss


def fit(net: LocaliserNet, d: LocaliseData, pre: PreprocessConfig, cfg: LocaliseConfig,
        presence_head: bool) -> list[float]:
    """AdamW with a one-cycle schedule; returns the mean loss of each epoch."""
    rng = np.random.default_rng(cfg.seed)
    torch.manual_seed(cfg.seed)
    steps = max(1, -(-len(d.present) // cfg.batch_size))
    opt = torch.optim.AdamW(net.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=cfg.lr, total_steps=steps *
                                                cfg.epochs, pct_start=0.15)
    losses = []
    for epoch in range(cfg.epochs):
        net.train()
        order, total = rng.permutation(len(d.present)), 0.0
        bar = tqdm(range(steps), desc=f"epoch {epoch + 1}/{cfg.epochs}", unit="batch",
                   leave=False, disable=not cfg.progress)
        for k in bar:
            x, y, present = _batch(d, order[k * cfg.batch_size:(k + 1) * cfg.batch_size],
                                   pre, rng, augment=True)
            corners, presence = net(x)
            loss = loss_fn(corners, presence, y, present, presence_head)
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            total += loss.item()
            bar.set_postfix(loss=f"{total / (k + 1):.4f}")
        losses.append(total / steps)
        log.info("localiser epoch %d/%d: loss %.4f", epoch + 1, cfg.epochs, losses[-1])
    return losses


class _Exported(nn.Module):
    def __init__(self, net: LocaliserNet):
        super().__init__()
        self.net = net

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        return self.net(x)


def export(net: LocaliserNet, path: Path, size: int) -> None:
    """ONNX (opset 17, dynamic batch) of ``net`` at ``size`` px."""
    from training.export import freeze_same_padding

    net.eval()
    freeze_same_padding(net, size)
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")  # the TorchScript exporter's deprecation notice
        torch.onnx.export(_Exported(net), (torch.zeros(2, 3, size, size),), str(path),
                          dynamo=False, input_names=[INPUT], output_names=list(OUTPUTS),
                          opset_version=17,
                          dynamic_axes={n: {0: "batch"} for n in (INPUT, *OUTPUTS)})
    net.eval()


def check_parity(net: LocaliserNet, run: Path, x: np.ndarray) -> float:
    """Max |torch - onnxruntime| over corners and presence logits; raises past tolerance."""
    with torch.no_grad():
        ref = [t.numpy() for t in net.eval()(torch.from_numpy(x))]
    got = Localiser(run).session.run(list(OUTPUTS), {INPUT: x})
    diff = max(float(np.abs(a - b).max()) for a, b in zip(ref, got, strict=True))
    if diff > PARITY_TOL:
        raise LocaliseError(f"localiser ONNX parity check failed: max |torch - onnxruntime| "
                            f"= {diff:.2e} (tolerance {PARITY_TOL:.0e})")
    return diff


def train_localiser(cfg: LocaliseConfig) -> dict[str, Any]:
    """Train, export and check a localiser into ``cfg.out``; returns its config as a dict."""
    start = time.perf_counter()
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    net, pre, source = build_net(cfg)
    d = load_data(cfg.manifests, pre, cfg.negatives, cfg.seed, cfg.progress)
    presence_head = bool(cfg.negatives)
    losses = fit(net, d, pre, cfg, presence_head)
    torch.save(net.state_dict(), out / CHECKPOINT_FILE)
    counts = {s: d.sides.count(s) for s in ("front", "back", "none")}
    config = LocaliserConfig(
        backbone=BACKBONE, preprocess=pre.to_dict(), presence_head=presence_head,
        training={**{k: v for k, v in asdict(cfg).items() if k != "progress"},
                  "weights_source": source, "photos": counts, "epoch_losses": losses,
                  "seconds": round(time.perf_counter() - start, 1)})
    write_config(out / CONFIG_FILE, config)
    export(net, out / LOCALISER_FILE, cfg.img_size)
    sample = np.random.default_rng(0).choice(len(d.present), min(8, len(d.present)),
                                             replace=False)
    x = np.stack([normalize(im, pre) for im in d.images[sample]]).astype(np.float32)
    config.parity_max_abs_diff = check_parity(net, out, x)
    write_config(out / CONFIG_FILE, config)
    log.info("localiser written to %s (parity %.2e)", out, config.parity_max_abs_diff)
    return config.model_dump()
