"""Shared fixtures: a tiny synthetic dataset made once per test session.

Tests marked ``torch`` need the ``[train]`` extra (they import torch or train a model); in a
serving-only install (``pip install -e .[dev]``) they are skipped, with the missing modules as
the reason, and ``-m "not torch"`` leaves them out. A test that uses one of the fixtures
below that generate or train (:data:`TRAINING_FIXTURES`) is marked ``torch`` here.
"""

from __future__ import annotations

import functools
import importlib
import os
from pathlib import Path

import pytest

os.environ.setdefault("PHOTOGRADE_OFFLINE", "1")  # tests never wait on a model hub

SHARED = Path(__file__).resolve().parents[2] / "shared"
REAL_SCREENS = SHARED / "data" / "real-screens"
#: What the ``[train]`` extra brings that the torch-marked tests import.
TRAIN_STACK = ("torch", "timm", "cv2", "sklearn", "skl2onnx", "onnx")
#: Session fixtures made with the training stack (synthetic photos, trained models).
TRAINING_FIXTURES = frozenset({"synth_dir", "bundle", "grader"})


@functools.cache
def missing_train_stack() -> tuple[str, ...]:
    """The modules of :data:`TRAIN_STACK` that cannot be imported here."""
    missing = []
    for name in TRAIN_STACK:
        try:
            importlib.import_module(name)
        except ImportError:
            missing.append(name)
    return tuple(missing)


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark ``torch`` the tests that use a training fixture (before ``-m`` selects)."""
    for item in items:
        if TRAINING_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.torch)


def pytest_collection_finish(session: pytest.Session) -> None:
    """Skip the selected ``torch`` tests when the training stack is not installed."""
    items = session.items
    if not any(item.get_closest_marker("torch") for item in items):
        return
    missing = missing_train_stack()
    if missing:
        skip = pytest.mark.skip(reason=f"needs the [train] extra: no {', '.join(missing)}")
        for item in items:
            if item.get_closest_marker("torch"):
                item.add_marker(skip)


@pytest.fixture(scope="session")
def localiser_run(synth_dir, tmp_path_factory) -> tuple[Path, dict]:
    """A localiser: 1 epoch at 64 px on the session's 24 synthetic devices, 4 scenes without
    a phone (its run directory and config)."""
    from training.localise_train import LocaliseConfig, train_localiser

    out = tmp_path_factory.mktemp("localiser")
    config = train_localiser(LocaliseConfig(
        manifests=[str(synth_dir / "manifest.csv")], out=str(out), img_size=64, epochs=1,
        batch_size=16, negatives=4, progress=False))
    return out, config


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
