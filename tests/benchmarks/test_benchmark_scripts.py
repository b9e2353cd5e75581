"""The benchmark scripts run (tiny, on CPU): they print what their docs say; their figures are
measured by running them, never asserted here."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[2]


def _run(*argv: str) -> str:
    done = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    return done.stdout


def test_the_floor_benchmark_prints_the_floor_and_the_ratio_for_each_setting(bundle):
    out = _run(sys.executable, "-m", "benchmarks.floor", "--bundle", str(bundle), "--repeat",
               "1", "--no-http")
    rows = [line for line in out.splitlines() if line.startswith(("| fp32", "| int8"))]
    assert len(rows) == 4, out  # fp32 and int8, 1 and 2 threads
    for row in rows:
        floor, full, ratio = (float(row.split("|")[i]) for i in (3, 6, 7))
        assert floor > 0 and full > 0 and ratio == pytest.approx(full / floor, abs=0.01)
    assert "auto precision:" in out


def test_the_floor_benchmark_measures_the_service_and_the_upload_over_http(bundle):
    out = _run(sys.executable, "-m", "benchmarks.floor", "--bundle", str(bundle), "--repeat",
               "1", "--no-floor")
    assert "service p50 at 1 client:" in out and "(target <= 1.1)" in out, out
    upload = next(line for line in out.splitlines() if line.startswith("the upload alone"))
    assert float(upload.split(": ")[1].split(" ms")[0]) > 0, upload
    assert float(upload.split("plain socket: ")[1].split(" ms")[0]) > 0, upload
    assert out.count("requests/s (0 errors)") == 2, out
    assert "thread fix (sleeping / spinning) at 16 clients:" in out


@pytest.mark.torch
def test_the_predict_benchmark_times_a_grade_the_check_and_both_together(bundle, localiser_run,
                                                                         tmp_path):
    """... and, with ``--against``, the full grades of two bundles in turn (here the same
    bundle cropping its fronts) and the ratio."""
    from training.crop_bundle import add_localiser

    cropping = tmp_path / "cropping"
    shutil.copytree(bundle, cropping)
    add_localiser(cropping, localiser_run[0], ["front"], 96)
    out = _run(sys.executable, "-m", "benchmarks.predict", "--bundle", str(bundle), "--repeat",
               "1", "--against", str(cropping))
    for label in ("full prediction (2 x 12 MP JPEG + checklist):", "raw onnxruntime",
                  "photo check of both photos", "checked grade (photo check, then the grade):"):
        line = next((x for x in out.splitlines() if x.startswith(label)), None)
        assert line is not None and float(line.split(":")[1].split("ms")[0]) > 0, out
    rows = out.split("full grades in turn (1 rounds):\n")[1].splitlines()
    assert "whole photos" in rows[0] and rows[0].endswith(" 1.00x"), out
    assert "crops front at 96 px" in rows[1] and float(rows[1].split()[-1][:-1]) > 0, out


@pytest.mark.torch
def test_the_floor_of_a_bundle_that_crops_includes_its_localiser(bundle, localiser_run,
                                                                 tmp_path):
    """The floor's raw inference runs every model of the grade: with a localiser cropping the
    fronts, the localiser on the front photo's input too (none for a whole-photo bundle)."""
    from benchmarks._floor import localiser_input, run_models
    from benchmarks._photos import upload_bytes
    from serve.runtime import Grader
    from training.crop_bundle import add_localiser

    cropping = tmp_path / "cropping"
    shutil.copytree(bundle, cropping)
    add_localiser(cropping, localiser_run[0], ["front"], 96)
    photos = upload_bytes(2, "600x800")
    assert localiser_input(Grader(bundle, threads=1), photos) is None
    g = Grader(cropping, threads=1)
    located = localiser_input(g, photos)
    assert located is not None and located.shape == (1, 3, 64, 64)  # the front alone
    calls, run = [], g.localiser.run  # type: ignore[union-attr]
    g.localiser.run = lambda x: (calls.append(x.shape), run(x))[1]  # type: ignore[union-attr]
    run_models(g, np.stack([g.decode(p).x for p in photos]), located)
    assert calls == [(1, 3, 64, 64)]


@pytest.mark.torch
def test_the_crop_latency_benchmark_prints_both_inputs_and_the_ratio(bundle, localiser_run):
    out = _run(sys.executable, "-m", "benchmarks.crop_latency", "--bundle", str(bundle),
               "--localiser", str(localiser_run[0]), "--repeat", "1", "--long-side", "96")
    assert "model input, whole photos:" in out and "device crops:" in out, out
    assert "(budget <= 1.3)" in out


def test_the_gpu_script_dry_runs_every_step_on_cpu(tmp_path):
    _run("scripts/gpu-bench", "--dry-run", "--out", str(tmp_path))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["inference.txt", "serving.txt",
                                                          "training.txt"]
    assert "ms per photo" in (tmp_path / "inference.txt").read_text()
    assert "batching on / off" in (tmp_path / "serving.txt").read_text()
    assert "images/s" in (tmp_path / "training.txt").read_text()


@pytest.mark.torch
def test_crop_or_whole_serves_a_cropping_bundle_three_ways(bundle, localiser_run, synth_dir,
                                                           tmp_path):
    """scripts/crop-or-whole: one row per way (crop, whole, both) with its figures; a bundle
    that does not crop is refused by name."""
    from training.crop_bundle import add_localiser

    cropping = tmp_path / "cropping"
    shutil.copytree(bundle, cropping)
    add_localiser(cropping, localiser_run[0], ["front"], 96)
    out = _run(sys.executable, "scripts/crop-or-whole", "--bundle", str(cropping),
               "--manifest", str(synth_dir / "manifest.csv"))
    rows = [line.split(" | ") for line in out.splitlines() if "manifest.csv (24)" in line]
    assert [r[1] for r in rows] == ["crop", "whole", "both"], out
    for r in rows:
        assert 0 <= float(r[3]) <= 1 and 0 <= float(r[5].rstrip(" |")) <= 1  # bal. acc., F1
    refused = subprocess.run([sys.executable, "scripts/crop-or-whole", "--bundle", str(bundle),
                              "--manifest", str(synth_dir / "manifest.csv")], cwd=ROOT,
                             capture_output=True, text=True, timeout=300)
    assert refused.returncode == 1 and "does not crop the front photo" in refused.stderr
