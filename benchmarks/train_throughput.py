"""Training throughput: the real data pipeline vs random tensors already in memory.

Both measure the same training step (model, optimiser, mixed precision, frozen stages as in
``photograde train vision``); the only difference is where the batches come from. Prints the
images/s of each and their ratio (target >= 0.9: the pipeline does not starve the model).

    python -m benchmarks.train_throughput [--manifest M] [--img-size 224] [--batches 20]
        [--devices 64]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch
from torch.utils.data import DataLoader, RandomSampler

from training.augment import single_threaded_opencv, train_augmentation
from training.device import amp_dtype_for, auto_workers
from training.image_cache import load_images
from training.malloc import keep_freed_memory
from training.manifest import load_manifest
from training.samples import samples_from
from training.synth.generate import generate
from training.vision_data import (
    PhotoDataset,
    balanced_weights,
    normalize_batch,
)
from training.vision_loss import partial_label_loss, select_head
from vision.model import build_model, freeze_early_stages


def step_fn(model, opt, device, amp):
    def step(x, part, allowed, w):
        x = normalize_batch(x, model.preprocess, device)
        with torch.autocast(device.split(":")[0], dtype=amp, enabled=amp is not None):
            screen, shell = model(x)
        loss = partial_label_loss(select_head(screen, shell, part.to(device)),
                                  allowed.to(device), w.to(device, torch.float32))
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
    return step


def timed(batches, step, n: int, warmup: int = 2) -> float:
    it = iter(batches)
    for _ in range(warmup):
        step(*next(it))
    seen, t0 = 0, time.perf_counter()
    for _ in range(n):
        batch = next(it)
        step(*batch)
        seen += len(batch[0])
    return seen / (time.perf_counter() - t0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--manifest", type=Path, help="default: 64 synthetic devices made here")
    ap.add_argument("--img-size", type=int, default=224)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--batches", type=int, default=20)
    ap.add_argument("--devices", type=int, default=64, help="synthetic devices to make when "
                    "no --manifest is given")
    ap.add_argument("--workers", type=int, default=auto_workers(),
                    help="loader workers (default: as train vision's --workers -1)")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = ap.parse_args()
    keep_freed_memory()  # as photograde train vision does

    tmp = Path(tempfile.mkdtemp(prefix="photograde-bench-"))
    manifest = args.manifest or generate(args.devices, tmp / "synth", seed=1, size=800,
                                         progress=False)
    samples = samples_from([load_manifest(manifest)])
    images = load_images([s.path for s in samples], args.img_size, tmp / "cache", workers=2,
                         progress=False)
    model, _ = build_model(pretrained=False, img_size=args.img_size)
    model.to(args.device).to(memory_format=torch.channels_last)
    freeze_early_stages(model, 3)
    model.train()
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)
    amp = amp_dtype_for(args.device, True)
    step = step_fn(model, opt, args.device, amp)
    n_batches = args.batches + 2

    single_threaded_opencv()
    ds = PhotoDataset(samples, images, train_augmentation(), balanced_weights(samples))
    sampler = RandomSampler(ds, replacement=True, num_samples=n_batches * args.batch_size)
    loader = DataLoader(ds, batch_size=args.batch_size, sampler=sampler,
                        num_workers=args.workers, pin_memory=args.device.startswith("cuda"))
    s = args.img_size
    x = torch.randint(0, 256, (args.batch_size, 3, s, s), dtype=torch.uint8)
    part = torch.randint(0, 2, (args.batch_size,))
    allowed = torch.zeros(args.batch_size, 4, dtype=torch.bool)
    allowed[:, 0] = True
    w = torch.ones(args.batch_size)
    # memory, real, memory: the mean of the two memory runs cancels a steady drift of the
    # machine's speed (shared virtual CPUs), which a single A-then-B run would read as a ratio.
    memory_runs = [timed(iter(lambda: (x, part, allowed, w), None), step, args.batches)]
    real = timed(loader, step, args.batches)
    memory_runs.append(timed(iter(lambda: (x, part, allowed, w), None), step, args.batches))
    memory = sum(memory_runs) / 2

    print(f"device {args.device}, {s} px, batch {args.batch_size}, mixed precision "
          f"{amp or 'off'}, {args.workers} loader worker(s)")
    print(f"real pipeline (cache + augmentation + DataLoader): {real:8.1f} images/s")
    print(f"random tensors already in memory:                 {memory:8.1f} images/s "
          f"(before {memory_runs[0]:.1f}, after {memory_runs[1]:.1f})")
    print(f"ratio: {real / memory:.2f} (target >= 0.9)")


if __name__ == "__main__":
    main()
