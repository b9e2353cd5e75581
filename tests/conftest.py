"""Shared fixtures: a tiny synthetic dataset made once per test session."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("PHOTOGRADE_OFFLINE", "1")  # tests never wait on a model hub

SHARED = Path(__file__).resolve().parents[2] / "shared"
REAL_SCREENS = SHARED / "data" / "real-screens"


@pytest.fixture(scope="session")
def synth_dir(tmp_path_factory) -> Path:
    """24 synthetic devices at 256 px (front and back), shared by the whole session."""
    from training.synth.generate import generate

    out = tmp_path_factory.mktemp("synth")
    generate(24, out, seed=7, size=256, progress=False)
    return out


@pytest.fixture(scope="session")
def bundle(synth_dir, tmp_path_factory) -> Path:
    """Tiny runs of all three models, exported with int8 (about a minute on 2 cores)."""
    from training.export import export_bundle
    from training.fusion_train import train_fusion
    from training.synth.generate import generate
    from training.tabular_train import train_tabular
    from training.vision_train import TrainConfig, train_vision

    base = tmp_path_factory.mktemp("bundle")
    cache = str(base / "cache")
    train_vision(TrainConfig(manifests=[str(synth_dir / "manifest.csv")], out=str(base / "v"),
                             img_size=64, epochs=1, batch_size=8, workers=0, progress=False,
                             cache_dir=cache))
    held_out = generate(40, base / "holdout", seed=21, size=160, progress=False)
    train_tabular([held_out], base / "t")
    train_fusion([str(held_out)], base / "v", base / "t", base / "f", cache_dir=cache)
    export_bundle(base / "v", base / "t", base / "f", base / "b", int8=True, cache_dir=cache,
                  int8_eval=held_out)
    return base / "b"


@pytest.fixture(scope="session")
def grader(bundle):
    """The tiny bundle loaded once (read-only, so the tests can share it)."""
    from serve.runtime import Grader

    return Grader(bundle, threads=1)
