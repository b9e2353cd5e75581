"""How visible is each screen defect at a given model input size?

Renders the same synthetic front twice, flawless and with a defect (the generator keeps the
defects on their own random stream, so everything else is identical: phone, wallpaper, scene,
light, JPEG quality), decodes both through the serving preprocessing at each size, and
measures the defect's contrast: the 30th-largest absolute luminance difference between the
twins, in grey levels (0-255). A defect whose contrast is a few grey levels is buried in the
wallpaper, sensor noise and JPEG artefacts; no model at that size can see it reliably.

    python -m training.synth.visibility [--devices 200] [--sizes 224 288 448]
"""

from __future__ import annotations

import argparse

import numpy as np
from tqdm import tqdm

from training.synth.generate import render_device
from vision.conditions import SCREEN_CONDITIONS
from vision.preprocess import PreprocessConfig, load_rgb_resized

LUMA = np.array([0.299, 0.587, 0.114], np.float32)
TOP_K = 30


def front_jpeg(seed: int, index: int, condition: str) -> bytes:
    """The front photo of device ``index`` exactly as ``photograde synth`` draws it."""
    row = {"screen_condition": condition, "shell_condition": "flawless"}
    return render_device(seed, index, row, 1500)[0]


def contrast(a: np.ndarray, b: np.ndarray) -> float:
    """The TOP_K-th largest |luminance difference| of two uint8 RGB images, grey levels."""
    d = np.abs(a.astype(np.float32) @ LUMA - b.astype(np.float32) @ LUMA).ravel()
    return float(np.partition(d, -TOP_K)[-TOP_K])


def measure(devices: int, sizes: list[int], seed: int = 12345,
            progress: bool = True) -> dict[str, dict[int, list]]:
    """Per defect condition and input size, the contrast of every device's defect."""
    defects = [c for c in SCREEN_CONDITIONS if c != "flawless"]
    out: dict[str, dict[int, list]] = {c: {s: [] for s in sizes} for c in defects}
    cfgs = {s: PreprocessConfig(img_size=s) for s in sizes}
    for i in tqdm(range(devices), desc="twins", unit="device", disable=not progress):
        base = front_jpeg(seed, i, "flawless")
        ref = {s: load_rgb_resized(base, cfgs[s]) for s in sizes}
        for cond in defects:
            jpg = front_jpeg(seed, i, cond)
            for s in sizes:
                out[cond][s].append(contrast(load_rgb_resized(jpg, cfgs[s]), ref[s]))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--devices", type=int, default=200)
    ap.add_argument("--sizes", type=int, nargs="+", default=[224, 288, 448])
    ap.add_argument("--seed", type=int, default=12345)
    args = ap.parse_args()
    res = measure(args.devices, args.sizes, args.seed)
    print(f"defect contrast vs its flawless twin ({TOP_K}th-largest luminance difference, grey "
          f"levels), {args.devices} fronts")
    print("| condition | size | median | 10th pct | share < 4 | share < 8 |")
    print("|---|---:|---:|---:|---:|---:|")
    for cond, by_size in res.items():
        for s, v in by_size.items():
            a = np.asarray(v)
            print(f"| {cond} | {s} | {np.median(a):.1f} | {np.percentile(a, 10):.1f} | "
                  f"{(a < 4).mean():.0%} | {(a < 8).mean():.0%} |")


if __name__ == "__main__":
    main()
