"""``train photocheck`` end to end on a tiny scale: export, int8, heads, figures, bundle."""

from __future__ import annotations

import csv
import shutil

import pytest

from fusion.bundle import PHOTOCHECK_FILE, PHOTOCHECK_HEADS_FILE, verify_bundle
from serve.runtime import Grader
from training.manifest import load_manifest
from vision.photocheck import PhotoCheckConfig


@pytest.fixture(scope="module")
def checked_bundle(bundle, synth_dir, tmp_path_factory):
    from training.photocheck_cli import train_photocheck

    base = tmp_path_factory.mktemp("photocheck")
    out = base / "bundle"
    shutil.copytree(bundle, out)
    real = base / "real.csv"  # synthetic fronts standing for two "real" sources
    with real.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["device_id", "front_path", "screen_condition", "source"])
        for i, row in enumerate(load_manifest(synth_dir / "manifest.csv").rows):
            w.writerow([f"d{i}", row.front_path, "|".join(sorted(row.screen or ())),
                        "alpha" if i % 2 else "beta"])
    report = train_photocheck(out, real, synth_dir / "manifest.csv",
                              synth_dir / "manifest.csv", size=64, n_synth=12, n_negative=10,
                              n_held=8, progress=False)
    return out, report


def test_the_check_is_added_to_the_bundle_with_its_figures(checked_bundle):
    out, report = checked_bundle
    assert (out / PHOTOCHECK_FILE).is_file() and (out / PHOTOCHECK_HEADS_FILE).is_file()
    assert verify_bundle(out)["ok"]  # new files hashed, the manifest consistent
    assert set(report["real_fronts_leave_one_source_out"]) == {"alpha", "beta"}
    held = report["held_out"]
    assert held["dark_real_fronts"]["expected"] == "too_dark"
    assert held["dark_real_fronts"]["rate"] == 1.0, held["dark_real_fronts"]
    assert report["cpu_one_thread"]["total_ms"] > 0
    assert (out.parent / "bundle.photocheck.json").is_file()


def test_the_runtime_scores_each_photo_with_the_bundles_heads(checked_bundle, synth_dir):
    out, _ = checked_bundle
    g = Grader(out, threads=1)
    assert g.info()["photo_check_model"] is True
    row = load_manifest(synth_dir / "manifest.csv").rows[0]
    photos = [g.decode(row.front_path), g.decode(row.back_path)]
    verdicts = g.check_photos(photos, ["front", "back"], PhotoCheckConfig(min_side_px=0))
    assert [v.slot for v in verdicts] == ["front", "back"]
    for v in verdicts:
        assert v.scores is not None and 0 <= v.scores.phone <= 1
        assert len(v.stats.phash) == 16
