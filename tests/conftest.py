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
