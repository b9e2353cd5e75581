"""The vision training run behind ``photograde train vision``: :class:`VisionTrainer`.

Set-up (data, split, model, optimiser, resumed state), then per epoch: train, validate,
checkpoint, early stopping; then finish (reload the best model, fit temperatures, summary).
Rank 0 alone validates, logs and writes the run directory (:mod:`training.vision_run`).
"""

from __future__ import annotations

import dataclasses
import logging
import math
import os
import time
from typing import Any

import numpy as np
import torch
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, DistributedSampler, RandomSampler, Sampler
from tqdm import tqdm

from fusion.policy import load_policy
from training.augment import single_threaded_opencv, train_augmentation
from training.device import (
    amp_dtype_for,
    auto_workers,
    barrier,
    broadcast_flag,
    dist_close,
    dist_init,
    resolve_device,
    seed_everything,
)
from training.image_cache import load_images
from training.manifest import DatasetError, load_manifest
from training.metrics import fit_temperature, head_metrics, partial_nll, selection_score
from training.samples import Sample, samples_from, split
from training.train_config import TrainConfig, TrainConfigError
from training.vision_data import PhotoDataset, balanced_weights, normalize_batch
from training.vision_loss import partial_label_loss, select_head, warmup_cosine
from training.vision_run import (
    LAST,
    RunDir,
    ValidationSplit,
    init_from_run,
    load_run,
    predict_logits,
)
from vision.conditions import CONDITIONS, PARTS
from vision.model import ConditionModel, build_model, freeze_backbone, freeze_early_stages

log = logging.getLogger("photograde.train")

#: the training-state keys that must match to ``--resume`` a run
RESUME_KEYS = ("manifests", "val_manifests", "backbone", "img_size", "seed", "val_fraction",
               "batch_size", "accum_steps")


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


def metrics_line(metrics: dict[str, Any]) -> str:
    """Validation metrics on one log line."""
    bits = [f"val_loss={metrics['loss']:.3f}", f"score={metrics['score']:.3f}"]
    for part in PARTS:
        m = metrics.get(part)
        if m and "macro_f1" in m:
            bits.append(f"{part}_f1={m['macro_f1']:.3f}")
        if m and not math.isnan(m.get("roc_auc_cracked", float("nan"))):
            bits.append(f"{part}_auc={m['roc_auc_cracked']:.3f}")
    return " ".join(bits)


def brief(m: dict[str, Any]) -> dict[str, Any]:
    """The head metrics kept in the log and the summary."""
    keys = ("n", "macro_f1", "balanced_accuracy", "qwk", "roc_auc_cracked")
    return {k: m[k] for k in keys if k in m}


def group_counts(samples: list[Sample]) -> dict[str, int]:
    """Photos per ``part:allowed|classes`` label group."""
    out: dict[str, int] = {}
    for s in samples:
        key = s.part + ":" + "|".join(c for c, ok in zip(CONDITIONS[s.part], s.allowed,
                                                           strict=True) if ok)
        out[key] = out.get(key, 0) + 1
    return dict(sorted(out.items()))


class VisionTrainer:
    """One training run: :meth:`set_up`, then :meth:`epoch` (train, validate, checkpoint) per
    epoch, then :meth:`finish`; :meth:`run` does all of it."""

    def __init__(self, cfg: TrainConfig):
        cfg.check()
        self.cfg = cfg
        self.device = resolve_device(cfg.device, int(os.environ.get("LOCAL_RANK", "0")))
        self.rank, self.world, _ = dist_init(self.device)
        self.main = self.rank == 0
        self.run_dir = RunDir(cfg.out)
        self.on_cuda = self.device.startswith("cuda")
        self.workers = auto_workers() if cfg.workers < 0 else cfg.workers
        self.resume_state: dict[str, Any] | None = None
        self.start_epoch, self.best, self.bad = 0, -1.0, 0
        self.history: list[dict[str, Any]] = []
        self._ddp: torch.nn.Module | None = None
        self._frozen: bool | None = None

    def run(self) -> dict[str, Any]:
        """Train; returns the summary written to ``summary.json`` (empty on ranks > 0)."""
        self.set_up()
        for epoch in range(self.start_epoch, self.cfg.epochs):
            if self.epoch(epoch):
                break
        summary = self.finish() if self.main else {}
        barrier(self.world)
        dist_close(self.world)
        return summary

    # -- set-up ---------------------------------------------------------------------------
    def set_up(self) -> None:
        """Data, split, model, optimiser; the saved state when resuming; ``config.json``."""
        self.resume_state = self._resume_state()
        if self.main:
            self.run_dir.create()
        self.train_s, self.val_s = self._samples()
        self.model, self.config = self._build_model()
        self.train_img, self.val_img = self._load_images()
        single_threaded_opencv()
        self.train_ds = PhotoDataset(self.train_s, self.train_img, train_augmentation(),
                                     balanced_weights(self.train_s), self.cfg.seed)
        self._place_model()
        self._build_optimizer()
        if self.resume_state:
            self._restore(self.resume_state)
        if self.main:
            self.run_dir.write_config(self.config)

    def _resume_state(self) -> dict[str, Any] | None:
        cfg, run = self.cfg, self.run_dir
        if run.has_checkpoint() and not cfg.resume:
            raise TrainConfigError(f"{run.path} already holds a run: pass --resume to continue "
                                   f"it, or choose another --out")
        if cfg.resume and not run.has_checkpoint():
            raise TrainConfigError(f"--resume: no checkpoint {run / LAST} to resume from")
        if not cfg.resume:
            return None
        state = run.load_last()
        saved = state["train_config"]
        for key in RESUME_KEYS:
            if saved[key] != getattr(cfg, key):
                raise TrainConfigError(f"--resume: {key} differs from the run in {run.path} "
                                       f"({saved[key]!r} there, {getattr(cfg, key)!r} now)")
        return state

    def _samples(self) -> tuple[list[Sample], list[Sample]]:
        """Training and validation photos; rank 0 saves the split in the run."""
        cfg = self.cfg
        policy = load_policy(cfg.grading) if cfg.grading else None  # grades: checked only
        train_s = samples_from([load_manifest(m, policy) for m in cfg.manifests])
        if cfg.val_manifests:
            val_s = samples_from([load_manifest(m, policy) for m in cfg.val_manifests])
            method = "val_manifests"
        else:
            train_s, val_s = split(train_s, cfg.val_fraction, cfg.seed)
            method = "device_split"
        if not train_s:
            raise DatasetError("no labelled photos to train on (every condition cell is "
                               "empty?)")
        if self.main:
            self.run_dir.write_split(ValidationSplit.of(val_s, method, cfg.seed,
                                                        cfg.val_fraction))
        if not val_s:
            log.warning("no validation photos (dataset too small for --val-fraction %s): "
                        "validating on the training photos", cfg.val_fraction)
            val_s = train_s
        return train_s, val_s

    def _build_model(self) -> tuple[ConditionModel, dict[str, Any]]:
        """The seeded model (ImageNet, --weights or --init-from) and the run's config."""
        cfg, resume = self.cfg, self.resume_state
        seed_everything(cfg.seed)
        init = cfg.init_from if resume is None else None
        model, source = build_model(
            cfg.backbone, pretrained=cfg.pretrained and resume is None and not init,
            weights=cfg.weights if resume is None else None,
            drop_rate=cfg.drop_rate, img_size=cfg.img_size)
        if init:
            source = init_from_run(model, init, cfg.backbone)
        if self.main:
            log.info("backbone %s, weights: %s", cfg.backbone,
                     f"resumed from {LAST}" if resume else source)
        config = {"backbone": cfg.backbone, "img_size": cfg.img_size, "drop_rate": cfg.drop_rate,
                  "preprocess": model.preprocess.to_dict(), "weights_source": source,
                  "classes": {p: list(CONDITIONS[p]) for p in PARTS},
                  "train_config": dataclasses.asdict(cfg),
                  "data": {"train_photos": len(self.train_s), "val_photos": len(self.val_s),
                           "train_groups": group_counts(self.train_s)}}
        if resume:
            config["weights_source"] = resume["config"]["weights_source"]
        return model, config

    def _load_images(self) -> tuple[np.ndarray, np.ndarray]:
        """Cached model-size images; rank 0 fills the cache, the other ranks then read it."""
        cfg = self.cfg
        if self.main:
            workers = max(1, self.workers)
            train_img = load_images([s.path for s in self.train_s], cfg.img_size, cfg.cache_dir,
                                    workers=workers, progress=cfg.progress)
            val_img = load_images([s.path for s in self.val_s], cfg.img_size, cfg.cache_dir,
                                  workers=workers, progress=cfg.progress)
        barrier(self.world)
        if not self.main:  # the cache is warm now
            train_img = load_images([s.path for s in self.train_s], cfg.img_size, cfg.cache_dir,
                                    progress=False)
            val_img = load_images([s.path for s in self.val_s], cfg.img_size, cfg.cache_dir,
                                  progress=False)
        return train_img, val_img

    def _place_model(self) -> None:
        if self.on_cuda:
            torch.cuda.set_device(torch.device(self.device))
        self.model.to(self.device).to(memory_format=torch.channels_last)
        frozen_stages = freeze_early_stages(self.model, self.cfg.freeze_stages)
        if self.main and frozen_stages:
            log.info("stem and %d early stage(s) frozen (--freeze-stages)", frozen_stages)

    def _build_optimizer(self) -> None:
        """AdamW (backbone at lr x backbone_lr_mult), warm-up + cosine, mixed precision."""
        cfg, model = self.cfg, self.model
        backbone_params = list(model.backbone.parameters())
        head_params = [p for n, p in model.named_parameters() if not n.startswith("backbone.")]
        self.opt = torch.optim.AdamW([
            {"params": backbone_params, "lr": cfg.lr * cfg.backbone_lr_mult},
            {"params": head_params, "lr": cfg.lr},
        ], weight_decay=cfg.weight_decay)
        per_epoch = math.ceil(math.ceil(len(self.train_s) / self.world / cfg.batch_size)
                              / cfg.accum_steps)
        total = per_epoch * cfg.epochs
        self.sched = torch.optim.lr_scheduler.LambdaLR(
            self.opt, warmup_cosine(total, max(1, int(cfg.warmup_frac * total))))
        self.amp_dtype = amp_dtype_for(self.device, cfg.amp)
        if self.main:
            log.info("device %s, mixed precision: %s", self.device, self.amp_dtype or "off")
        self.scaler = torch.amp.GradScaler(
            "cuda", enabled=self.on_cuda and self.amp_dtype == torch.float16)

    def _restore(self, state: dict[str, Any]) -> None:
        """Model, optimiser, schedule, scaler and progress from ``last.pt``."""
        self.model.load_state_dict(state["model"])
        self.opt.load_state_dict(state["optimizer"])
        self.sched.load_state_dict(state["scheduler"])
        self.scaler.load_state_dict(state["scaler"])
        self.start_epoch, self.best, self.bad = (state["epoch"] + 1, state["best"],
                                                 state["bad_epochs"])
        self.history = state["history"]
        if self.main:
            log.info("resuming at epoch %d/%d (best score so far %.4f)", self.start_epoch + 1,
                     self.cfg.epochs, self.best)
        if state.get("stopped"):
            self.start_epoch = self.cfg.epochs  # finished (early stop): only refresh outputs

    # -- one epoch --------------------------------------------------------------------------
    def epoch(self, epoch: int) -> bool:
        """Train, validate and checkpoint one epoch; True when early stopping ends the run."""
        seen, loss_sum, train_time, frozen = self.train_epoch(epoch)
        stopped = False
        if self.main:
            metrics, _ = validate(self.model, self.val_s, self.val_img,
                                  self.cfg.batch_size * 2, self.device)
            improved = self._track(metrics["score"], epoch)
            stopped = self.bad >= self.cfg.patience and epoch + 1 < self.cfg.epochs
            entry = {"epoch": epoch + 1, "train_loss": loss_sum / max(1, seen),
                     "images_per_s": seen * self.world / train_time, "epoch_s": train_time,
                     "lr": self.sched.get_last_lr()[-1], "frozen_backbone": frozen,
                     "val_loss": metrics["loss"], "val_score": metrics["score"],
                     **{f"val_{p}": brief(metrics[p]) for p in PARTS if p in metrics}}
            self.history.append(entry)
            self.run_dir.append_log(entry)
            log.info("epoch %d/%d: train_loss=%.3f %s %.1f img/s%s", epoch + 1, self.cfg.epochs,
                     entry["train_loss"], metrics_line(metrics), entry["images_per_s"],
                     " (best)" if improved else "")
            self.checkpoint(epoch, stopped)
        stopped = broadcast_flag(stopped, self.world, torch.device(self.device))
        if stopped and self.main:
            log.info("early stop: no better validation score for %d epochs", self.cfg.patience)
        return stopped

    def _track(self, score: float, epoch: int) -> bool:
        """Keep the best model (``best.pt``) and count epochs without improvement."""
        if score > self.best:
            self.best, self.bad = score, 0
            self.run_dir.save_best(self.model, self.config)
            return True
        if epoch >= self.cfg.head_epochs:
            self.bad += 1
        return False

    def _wrapped(self, frozen: bool) -> torch.nn.Module:
        """The model to train (DDP-wrapped under torchrun), re-wrapped when freezing changes."""
        if frozen != self._frozen:
            freeze_backbone(self.model, frozen)
            self._frozen = frozen
            self._ddp = (DistributedDataParallel(self.model, device_ids=[self.device]
                                                 if self.on_cuda else None)
                         if self.world > 1 else self.model)
        assert self._ddp is not None
        return self._ddp

    def _loader(self, epoch: int) -> DataLoader:
        cfg = self.cfg
        self.train_ds.set_epoch(epoch)
        sampler: Sampler[Any]
        if self.world > 1:
            shards: DistributedSampler[Any] = DistributedSampler(
                self.train_ds, self.world, self.rank, shuffle=True, seed=cfg.seed)
            shards.set_epoch(epoch)
            sampler = shards
        else:
            sampler = RandomSampler(self.train_ds, generator=torch.Generator().manual_seed(
                cfg.seed * 1000 + epoch))
        return DataLoader(self.train_ds, batch_size=cfg.batch_size, sampler=sampler,
                          num_workers=self.workers, pin_memory=self.on_cuda, drop_last=False,
                          persistent_workers=False)

    def train_epoch(self, epoch: int) -> tuple[int, float, float, bool]:
        """One pass over the training photos: (photos seen, loss sum, seconds, frozen)."""
        cfg, device = self.cfg, self.device
        frozen = cfg.freeze_backbone or epoch < cfg.head_epochs
        ddp = self._wrapped(frozen)
        seed_everything(cfg.seed * 1000 + epoch)
        loader = self._loader(epoch)
        ddp.train()
        t0, seen, loss_sum = time.perf_counter(), 0, 0.0
        bar = tqdm(loader, desc=f"epoch {epoch + 1}/{cfg.epochs}" + (" (heads)" if frozen and
                   not cfg.freeze_backbone else ""), unit="batch", disable=not (self.main and
                   cfg.progress), leave=False)
        use_amp = self.amp_dtype is not None
        self.opt.zero_grad(set_to_none=True)
        for step, (x, part, allowed, w) in enumerate(bar):
            x = normalize_batch(x, self.model.preprocess, device)
            part, allowed = part.to(device), allowed.to(device)
            w = w.to(device, dtype=torch.float32)
            with torch.autocast(device.split(":")[0], dtype=self.amp_dtype, enabled=use_amp):
                screen, shell = ddp(x)
            loss = partial_label_loss(select_head(screen, shell, part), allowed, w)
            self.scaler.scale(loss / cfg.accum_steps).backward()
            if (step + 1) % cfg.accum_steps == 0 or step + 1 == len(loader):
                self.scaler.step(self.opt)
                self.scaler.update()
                self.opt.zero_grad(set_to_none=True)
                self.sched.step()
            seen += len(x)
            loss_sum += loss.item() * len(x)
            bar.set_postfix(loss=f"{loss_sum / seen:.3f}",
                            lr=f"{self.sched.get_last_lr()[-1]:.2e}")
        bar.close()
        return seen, loss_sum, time.perf_counter() - t0, frozen

    def checkpoint(self, epoch: int, stopped: bool) -> None:
        """The full training state after ``epoch`` (``last.pt``), for ``--resume``."""
        self.run_dir.save_last({
            "model": self.model.state_dict(), "optimizer": self.opt.state_dict(),
            "scheduler": self.sched.state_dict(), "scaler": self.scaler.state_dict(),
            "epoch": epoch, "best": self.best, "bad_epochs": self.bad, "history": self.history,
            "stopped": stopped, "config": self.config,
            "train_config": dataclasses.asdict(self.cfg)})

    # -- finish -----------------------------------------------------------------------------
    def finish(self) -> dict[str, Any]:
        """Reload the best model, fit per-head temperatures on validation, write the summary."""
        model, _, _ = load_run(self.run_dir.path)
        val_s = self.val_s
        metrics, logits = validate(model, val_s, self.val_img, self.cfg.batch_size * 2,
                                   self.device)
        allowed = np.array([s.allowed for s in val_s], bool)
        temps = {}
        for part in PARTS:
            sel = np.array([s.part == part for s in val_s], bool)
            temps[part] = fit_temperature(logits[sel], allowed[sel]) if sel.sum() >= 2 else 1.0
        self.run_dir.write_temperatures(temps)
        summary = {"best_val_score": metrics["score"], "epochs_run": len(self.history),
                   "temperatures": temps,
                   "val": {p: brief(metrics[p]) for p in PARTS if p in metrics},
                   "weights_source": self.config["weights_source"]}
        self.run_dir.write_summary(summary)
        log.info("best model: %s; temperatures %s; run in %s", metrics_line(metrics),
                 {k: round(v, 3) for k, v in temps.items()}, self.run_dir.path)
        return summary
