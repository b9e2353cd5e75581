"""``photograde train vision``: fine-tune the condition model on one or more manifests.

AdamW with linear warm-up then cosine decay; class-balanced loss; coarse labels trained as
partial labels (maximise the probability mass of the allowed set); AMP on CUDA; gradient
accumulation; early stopping on validation macro-F1; checkpoints and ``--resume``; seeded;
multi-GPU / multi-node through ``torchrun`` (DDP, DistributedSampler; gloo on CPU).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import os
import random
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, DistributedSampler, RandomSampler
from tqdm import tqdm

from fusion.policy import load_policy
from training.augment import single_threaded_opencv, train_augmentation
from training.image_cache import load_images
from training.manifest import DatasetError, load_manifest
from training.metrics import fit_temperature, head_metrics, partial_nll, selection_score
from training.vision_data import (
    PARTS,
    PhotoDataset,
    Sample,
    balanced_weights,
    normalize_batch,
    samples_from,
    split,
)
from training.vision_run import load_run, predict_logits
from vision.conditions import CONDITIONS
from vision.errors import PhotogradeError
from vision.model import ConditionModel, build_model, freeze_backbone, freeze_early_stages
from vision.weights import DEFAULT_BACKBONE

log = logging.getLogger("photograde.train")


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
                                    "heads), e.g. to fine-tune it at a larger --img-size",
                                    type=Path, metavar="RUN_DIR")
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


# -- distributed helpers ------------------------------------------------------------------
def _dist_init(device: str) -> tuple[int, int, int]:
    """(rank, world size, local rank); initialises the process group under torchrun."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world == 1:
        return 0, 1, 0
    backend = "nccl" if device.startswith("cuda") else "gloo"
    if not dist.is_initialized():
        dist.init_process_group(backend)
    return dist.get_rank(), world, int(os.environ.get("LOCAL_RANK", "0"))


def _barrier(world: int) -> None:
    if world > 1:
        dist.barrier()


def _broadcast_flag(value: bool, world: int, device: torch.device) -> bool:
    if world == 1:
        return value
    t = torch.tensor([1 if value else 0], device=device)
    dist.broadcast(t, 0)
    return bool(t.item())


def resolve_device(name: str, local_rank: int = 0) -> str:
    if name == "auto":
        return f"cuda:{local_rank}" if torch.cuda.is_available() else "cpu"
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise TrainConfigError(f"--device {name}: CUDA is not available on this machine")
    if name == "cuda":
        return f"cuda:{local_rank}"
    return name


def amp_dtype_for(device: str, enabled: bool) -> torch.dtype | None:
    """Mixed precision: bf16 (or fp16) on CUDA; bf16 on CPUs with native bf16 support
    (AVX512-BF16 / AMX), where it is about twice as fast; None when off or unsupported."""
    if not enabled:
        return None
    if device.startswith("cuda"):
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    cpu = torch.cpu
    native = any(getattr(cpu, f, lambda: False)() for f in
                 ("_is_avx512_bf16_supported", "_is_amx_tile_supported"))
    return torch.bfloat16 if native else None


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


# -- the loop -------------------------------------------------------------------------------
def partial_label_loss(logits: torch.Tensor, allowed: torch.Tensor,
                       weights: torch.Tensor) -> torch.Tensor:
    """Weighted mean of -log sum_{c allowed} softmax(logits)_c."""
    logits = logits.float()
    lse_all = torch.logsumexp(logits, 1)
    lse_ok = torch.logsumexp(logits.masked_fill(~allowed, float("-inf")), 1)
    return ((lse_all - lse_ok) * weights).sum() / weights.sum().clamp_min(1e-8)


def _select_head(screen: torch.Tensor, shell: torch.Tensor, part: torch.Tensor) -> torch.Tensor:
    return torch.where((part == 0)[:, None], screen, shell)


def _lr_lambda(total: int, warmup: int):
    def f(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        progress = (step - warmup) / max(1, total - warmup)
        return 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))
    return f


def validate(model: ConditionModel, samples: list[Sample], images: np.ndarray,
             batch_size: int, device: str) -> tuple[dict[str, Any], np.ndarray]:
    """Per-head metrics, the combined selection score and the validation loss."""
    parts = [s.part for s in samples]
    logits = predict_logits(model, images, parts, batch_size, device)
    allowed = np.array([s.allowed for s in samples], bool)
    out: dict[str, Any] = {"loss": partial_nll(logits, allowed) if len(samples) else float("nan")}
    scores = []
    for part in PARTS:
        sel = np.array([p == part for p in parts], bool)
        if sel.any():
            m = head_metrics(logits[sel], allowed[sel], CONDITIONS[part])
            out[part] = m
            scores.append(selection_score(m))
    out["score"] = float(np.nanmean(scores)) if scores else float("nan")
    return out, logits


def _summary(metrics: dict[str, Any]) -> str:
    bits = [f"val_loss={metrics['loss']:.3f}", f"score={metrics['score']:.3f}"]
    for part in PARTS:
        m = metrics.get(part)
        if m and "macro_f1" in m:
            bits.append(f"{part}_f1={m['macro_f1']:.3f}")
        if m and not math.isnan(m.get("roc_auc_cracked", float("nan"))):
            bits.append(f"{part}_auc={m['roc_auc_cracked']:.3f}")
    return " ".join(bits)


def auto_workers() -> int:
    """DataLoader workers for ``--workers -1``: one per core but one, at least 2, at most 4
    (on 2 cores a second worker keeps up with the bf16 model: 0.90-0.91 vs 0.84-0.87)."""
    return min(4, max(2, (os.cpu_count() or 2) - 1))


def init_from_run(model: ConditionModel, path: str | Path, backbone: str) -> str:
    """Load a finished run's whole model (backbone and heads) into ``model``, e.g. to go on
    training it at a larger input size; returns the weights source to record."""
    path = Path(path)
    ckpt = path / "best.pt" if path.is_dir() else path
    if not ckpt.is_file():
        raise TrainConfigError(f"--init-from: {ckpt} not found (pass a vision run directory or "
                               f"its best.pt)")
    state = torch.load(ckpt, map_location="cpu", weights_only=True)
    if not isinstance(state, dict) or "model" not in state or "config" not in state:
        raise TrainConfigError(f"--init-from: {ckpt} is not a photograde vision checkpoint")
    theirs = state["config"]
    if theirs["backbone"] != backbone:
        raise TrainConfigError(f"--init-from: {ckpt} was trained with backbone "
                               f"{theirs['backbone']!r}, not {backbone!r}")
    if theirs.get("classes") != {p: list(CONDITIONS[p]) for p in PARTS}:
        raise TrainConfigError(f"--init-from: {ckpt} has other condition classes "
                               f"({theirs.get('classes')})")
    model.load_state_dict(state["model"])
    log.info("initialised from %s (trained at %d px)", ckpt, theirs["img_size"])
    return f"{theirs.get('weights_source', 'unknown')} -> {ckpt}"


def train_vision(cfg: TrainConfig) -> dict[str, Any]:
    """Train; returns the summary written to RUN_DIR/summary.json."""
    cfg.check()
    device = resolve_device(cfg.device, int(os.environ.get("LOCAL_RANK", "0")))
    rank, world, _ = _dist_init(device)
    main = rank == 0
    out = Path(cfg.out)
    last = out / "last.pt"
    resume_state = None
    if last.is_file() and not cfg.resume:
        raise TrainConfigError(f"{out} already holds a run: pass --resume to continue it, or "
                               f"choose another --out")
    if cfg.resume and not last.is_file():
        raise TrainConfigError(f"--resume: no checkpoint {last} to resume from")
    if cfg.resume:
        resume_state = torch.load(last, map_location="cpu", weights_only=False)
        saved = resume_state["train_config"]
        for key in ("manifests", "val_manifests", "backbone", "img_size", "seed",
                    "val_fraction", "batch_size", "accum_steps"):
            if saved[key] != getattr(cfg, key):
                raise TrainConfigError(f"--resume: {key} differs from the run in {out} "
                                       f"({saved[key]!r} there, {getattr(cfg, key)!r} now)")
    if main:
        out.mkdir(parents=True, exist_ok=True)

    policy = load_policy(cfg.grading)
    train_s = samples_from([load_manifest(m, policy) for m in cfg.manifests])
    if cfg.val_manifests:
        val_s = samples_from([load_manifest(m, policy) for m in cfg.val_manifests])
    else:
        train_s, val_s = split(train_s, cfg.val_fraction, cfg.seed)
    if not train_s:
        raise DatasetError("no labelled photos to train on (every condition cell is empty?)")
    if not val_s:
        log.warning("no validation photos (dataset too small for --val-fraction %s): "
                    "validating on the training photos", cfg.val_fraction)
        val_s = train_s

    seed_everything(cfg.seed)
    init = cfg.init_from if resume_state is None else None
    model, source = build_model(
        cfg.backbone, pretrained=cfg.pretrained and resume_state is None and not init,
        weights=cfg.weights if resume_state is None else None,
        drop_rate=cfg.drop_rate, img_size=cfg.img_size)
    if init:
        source = init_from_run(model, init, cfg.backbone)
    if main:
        log.info("backbone %s, weights: %s", cfg.backbone,
                 "resumed from last.pt" if resume_state else source)
    config = {"backbone": cfg.backbone, "img_size": cfg.img_size, "drop_rate": cfg.drop_rate,
              "preprocess": model.preprocess.to_dict(), "weights_source": source,
              "classes": {p: list(CONDITIONS[p]) for p in PARTS},
              "train_config": dataclasses.asdict(cfg),
              "data": {"train_photos": len(train_s), "val_photos": len(val_s),
                       "train_groups": _group_counts(train_s)}}
    if resume_state:
        config["weights_source"] = resume_state["config"]["weights_source"]

    workers = auto_workers() if cfg.workers < 0 else cfg.workers
    if main:
        train_img = load_images([s.path for s in train_s], cfg.img_size, cfg.cache_dir,
                                workers=max(1, workers), progress=cfg.progress)
        val_img = load_images([s.path for s in val_s], cfg.img_size, cfg.cache_dir,
                              workers=max(1, workers), progress=cfg.progress)
    _barrier(world)
    if not main:  # the cache is warm now
        train_img = load_images([s.path for s in train_s], cfg.img_size, cfg.cache_dir,
                                progress=False)
        val_img = load_images([s.path for s in val_s], cfg.img_size, cfg.cache_dir,
                              progress=False)

    single_threaded_opencv()
    train_ds = PhotoDataset(train_s, train_img, train_augmentation(),
                            balanced_weights(train_s), cfg.seed)
    on_cuda = device.startswith("cuda")
    if on_cuda:
        torch.cuda.set_device(torch.device(device))
    model.to(device, memory_format=torch.channels_last)
    frozen_stages = freeze_early_stages(model, cfg.freeze_stages)
    if main and frozen_stages:
        log.info("stem and %d early stage(s) frozen (--freeze-stages)", frozen_stages)
    backbone_params = list(model.backbone.parameters())
    head_params = [p for n, p in model.named_parameters() if not n.startswith("backbone.")]
    opt = torch.optim.AdamW([
        {"params": backbone_params, "lr": cfg.lr * cfg.backbone_lr_mult},
        {"params": head_params, "lr": cfg.lr},
    ], weight_decay=cfg.weight_decay)
    per_epoch = math.ceil(math.ceil(len(train_s) / world / cfg.batch_size) / cfg.accum_steps)
    total = per_epoch * cfg.epochs
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, _lr_lambda(total, max(1, int(cfg.warmup_frac * total))))
    amp_dtype = amp_dtype_for(device, cfg.amp)
    use_amp = amp_dtype is not None
    if main:
        log.info("device %s, mixed precision: %s", device, amp_dtype or "off")
    scaler = torch.amp.GradScaler("cuda", enabled=on_cuda and amp_dtype == torch.float16)

    start_epoch, best, bad, history = 0, -1.0, 0, []
    if resume_state:
        model.load_state_dict(resume_state["model"])
        opt.load_state_dict(resume_state["optimizer"])
        sched.load_state_dict(resume_state["scheduler"])
        scaler.load_state_dict(resume_state["scaler"])
        start_epoch, best, bad = (resume_state["epoch"] + 1, resume_state["best"],
                                  resume_state["bad_epochs"])
        history = resume_state["history"]
        if main:
            log.info("resuming at epoch %d/%d (best score so far %.4f)", start_epoch + 1,
                     cfg.epochs, best)
        if resume_state.get("stopped"):
            start_epoch = cfg.epochs  # finished (early stop): only refresh outputs
    if main:
        (out / "config.json").write_text(json.dumps(config, indent=2))

    ddp: torch.nn.Module | None = None
    frozen_state: bool | None = None
    stopped = False
    for epoch in range(start_epoch, cfg.epochs):
        frozen = cfg.freeze_backbone or epoch < cfg.head_epochs
        if frozen != frozen_state:
            freeze_backbone(model, frozen)
            frozen_state = frozen
            ddp = (DistributedDataParallel(model, device_ids=[device] if on_cuda else None)
                   if world > 1 else model)
        assert ddp is not None
        seed_everything(cfg.seed * 1000 + epoch)
        train_ds.set_epoch(epoch)
        if world > 1:
            sampler = DistributedSampler(train_ds, world, rank, shuffle=True, seed=cfg.seed)
            sampler.set_epoch(epoch)
        else:
            sampler = RandomSampler(train_ds, generator=torch.Generator().manual_seed(
                cfg.seed * 1000 + epoch))
        loader = DataLoader(train_ds, batch_size=cfg.batch_size, sampler=sampler,
                            num_workers=workers, pin_memory=on_cuda, drop_last=False,
                            persistent_workers=False)
        ddp.train()
        t0, seen, loss_sum = time.perf_counter(), 0, 0.0
        bar = tqdm(loader, desc=f"epoch {epoch + 1}/{cfg.epochs}" + (" (heads)" if frozen and
                   not cfg.freeze_backbone else ""), unit="batch", disable=not (main and
                   cfg.progress), leave=False)
        opt.zero_grad(set_to_none=True)
        for step, (x, part, allowed, w) in enumerate(bar):
            x = normalize_batch(x, model.preprocess, device)
            part, allowed = part.to(device), allowed.to(device)
            w = w.to(device, dtype=torch.float32)
            with torch.autocast(device.split(":")[0], dtype=amp_dtype, enabled=use_amp):
                screen, shell = ddp(x)
            loss = partial_label_loss(_select_head(screen, shell, part), allowed, w)
            scaler.scale(loss / cfg.accum_steps).backward()
            if (step + 1) % cfg.accum_steps == 0 or step + 1 == len(loader):
                scaler.step(opt)
                scaler.update()
                opt.zero_grad(set_to_none=True)
                sched.step()
            seen += len(x)
            loss_sum += loss.item() * len(x)
            bar.set_postfix(loss=f"{loss_sum / seen:.3f}", lr=f"{sched.get_last_lr()[-1]:.2e}")
        bar.close()
        train_time = time.perf_counter() - t0

        improved = False
        if main:
            metrics, _ = validate(model, val_s, val_img, cfg.batch_size * 2, device)
            improved = metrics["score"] > best
            if improved:
                best, bad = metrics["score"], 0
                torch.save({"model": model.state_dict(), "config": config}, out / "best.pt")
            elif epoch >= cfg.head_epochs:
                bad += 1
            stopped = bad >= cfg.patience and epoch + 1 < cfg.epochs
            entry = {"epoch": epoch + 1, "train_loss": loss_sum / max(1, seen),
                     "images_per_s": seen * world / train_time, "epoch_s": train_time,
                     "lr": sched.get_last_lr()[-1], "frozen_backbone": frozen,
                     "val_loss": metrics["loss"], "val_score": metrics["score"],
                     **{f"val_{p}": _brief(metrics[p]) for p in PARTS if p in metrics}}
            history.append(entry)
            with (out / "log.jsonl").open("a") as f:
                f.write(json.dumps(entry) + "\n")
            log.info("epoch %d/%d: train_loss=%.3f %s %.1f img/s%s", epoch + 1, cfg.epochs,
                     entry["train_loss"], _summary(metrics), entry["images_per_s"],
                     " (best)" if improved else "")
            torch.save({"model": model.state_dict(), "optimizer": opt.state_dict(),
                        "scheduler": sched.state_dict(), "scaler": scaler.state_dict(),
                        "epoch": epoch, "best": best, "bad_epochs": bad, "history": history,
                        "stopped": stopped, "config": config,
                        "train_config": dataclasses.asdict(cfg)}, last)
        stopped = _broadcast_flag(stopped, world, torch.device(device))
        if stopped:
            if main:
                log.info("early stop: no better validation score for %d epochs", cfg.patience)
            break

    summary: dict[str, Any] = {}
    if main:
        summary = _finish(out, config, val_s, val_img, cfg, device, history)
    _barrier(world)
    if world > 1:
        dist.destroy_process_group()
    return summary


def _finish(out: Path, config: dict, val_s: list[Sample], val_img: np.ndarray,
            cfg: TrainConfig, device: str, history: list) -> dict[str, Any]:
    """Reload the best model, fit per-head temperatures on validation, write the summary."""
    model, _, _ = load_run(out)
    metrics, logits = validate(model, val_s, val_img, cfg.batch_size * 2, device)
    allowed = np.array([s.allowed for s in val_s], bool)
    temps = {}
    for part in PARTS:
        sel = np.array([s.part == part for s in val_s], bool)
        temps[part] = fit_temperature(logits[sel], allowed[sel]) if sel.sum() >= 2 else 1.0
    (out / "calibration.json").write_text(json.dumps(temps, indent=2))
    summary = {"best_val_score": metrics["score"], "epochs_run": len(history),
               "temperatures": temps,
               "val": {p: _brief(metrics[p]) for p in PARTS if p in metrics},
               "weights_source": config["weights_source"]}
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    log.info("best model: %s; temperatures %s; run in %s", _summary(metrics),
             {k: round(v, 3) for k, v in temps.items()}, out)
    return summary


def _brief(m: dict[str, Any]) -> dict[str, Any]:
    keys = ("n", "macro_f1", "balanced_accuracy", "qwk", "roc_auc_cracked")
    return {k: m[k] for k in keys if k in m}


def _group_counts(samples: list[Sample]) -> dict[str, int]:
    out: dict[str, int] = {}
    for s in samples:
        key = s.part + ":" + "|".join(c for c, ok in zip(CONDITIONS[s.part], s.allowed,
                                                           strict=True) if ok)
        out[key] = out.get(key, 0) + 1
    return dict(sorted(out.items()))
