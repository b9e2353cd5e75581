"""Inference and JPEG decoding on the GPU: what the GPU path can gain, per photo.

For the bundle's vision model on ONNX Runtime's best provider here (TensorRT, then CUDA, then
CPU), the time per photo at batch 1, 4, 16 and 64 and the gain of batching; then decoding two
12-MP JPEGs to the model input with the project's Pillow draft decoding (CPU) against
torchvision's decoder on the GPU (nvJPEG) for a batch of photos, when torch sees a GPU.

    python -m benchmarks.gpu_infer [--bundle B] [--repeat 20] [--batches 1,4,16,64]
"""

from __future__ import annotations

import argparse
from functools import partial
from pathlib import Path

import numpy as np
import onnxruntime as ort

from benchmarks._common import median_ms
from benchmarks._photos import upload_bytes
from serve.runtime import Grader
from serve.settings import SHIPPED_BUNDLE

PREFERRED = ("TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider")


def best_providers() -> list[str]:
    """The fastest execution providers this onnxruntime build has, fastest first."""
    have = ort.get_available_providers()
    return [p for p in PREFERRED if p in have]


def per_photo_ms(g: Grader, batches: list[int], repeat: int) -> dict[int, float]:
    """Median vision-model ms per photo at each batch size."""
    x = np.random.default_rng(0).standard_normal((1, 3, g.pre.img_size, g.pre.img_size))
    out = {}
    for n in batches:
        batch = np.repeat(x, n, 0).astype(np.float32)
        out[n] = median_ms(partial(g.run_vision, batch), max(3, repeat // max(1, n // 4))) / n
    return out


def gpu_decode_ms(photos: list[bytes], size: int, repeat: int) -> tuple[str, float] | None:
    """(device, median ms per photo) of torchvision's batched decode + resize, or None
    without torch."""
    try:
        import torch
        import torchvision.io as tio
        import torchvision.transforms.v2.functional as F
    except ImportError:
        return None
    device = "cuda" if torch.cuda.is_available() else "cpu"
    data = [torch.frombuffer(bytearray(p), dtype=torch.uint8) for p in photos]

    def run() -> None:
        images = tio.decode_jpeg(data, device=device)
        for im in images:
            F.resize(im, [size, size], antialias=True)
        if device == "cuda":
            torch.cuda.synchronize()
    return device, median_ms(run, repeat) / len(photos)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--bundle", type=Path, default=SHIPPED_BUNDLE)
    ap.add_argument("--repeat", type=int, default=20)
    ap.add_argument("--batches", default="1,4,16,64")
    ap.add_argument("--photos", type=int, default=16, help="photos per decode batch")
    args = ap.parse_args()
    providers = best_providers()
    g = Grader(args.bundle, provider_list=providers, precision="fp32")
    print(f"onnxruntime {ort.__version__}: {g.provider} (available: "
          f"{', '.join(ort.get_available_providers())})")
    ms = per_photo_ms(g, [int(b) for b in args.batches.split(",")], args.repeat)
    print("| batch | ms per photo | vs batch 1 |")
    print("|---:|---:|---:|")
    for n, v in ms.items():
        print(f"| {n} | {v:.2f} | {ms[min(ms)] / v:.2f}x |")
    photos = upload_bytes(2) * max(1, args.photos // 2)
    pillow = median_ms(lambda: [g.decode(p) for p in photos], max(3, args.repeat // 4))
    print(f"decode to the input, Pillow draft (CPU, one thread): {pillow / len(photos):.1f} ms "
          "per photo")
    gpu = gpu_decode_ms(photos, g.pre.img_size, max(3, args.repeat // 4))
    if gpu is None:
        print("torchvision not installed: no GPU decoding measured")
    else:
        print(f"decode + resize, torchvision ({gpu[0]}, batch of {len(photos)}): "
              f"{gpu[1]:.1f} ms per photo ({pillow / len(photos) / gpu[1]:.2f}x Pillow)")


if __name__ == "__main__":
    main()
