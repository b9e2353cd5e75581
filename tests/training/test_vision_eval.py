"""Vision evaluation report, CAM overlays of a run and their CLI sub-commands (tiny run, 64 px).

The torch-free heatmap functions are tested in tests/vision/test_heatmap.py."""

from __future__ import annotations

import csv
import json
import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image


# -- a tiny trained run --------------------------------------------------------------------
@pytest.fixture(scope="module")
def _one_torch_thread():
    """Tiny tensors: one thread is faster than two fighting other jobs for 2 cores."""
    torch = pytest.importorskip("torch")
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def run(synth_dir: Path, tmp_path_factory, _one_torch_thread) -> Path:
    from training.vision_train import TrainConfig, train_vision

    base = tmp_path_factory.mktemp("vision_eval")
    out = base / "run"
    train_vision(TrainConfig(manifests=[str(synth_dir / "manifest.csv")], out=str(out),
                             img_size=64, epochs=1, batch_size=8, workers=0, progress=False,
                             cache_dir=str(base / "cache")))
    return out


@pytest.fixture(scope="module")
def cache(run: Path) -> str:
    return str(run.parent / "cache")


@pytest.fixture(scope="module")
def coarse_manifest(synth_dir: Path, tmp_path_factory) -> Path:
    """Screen-only manifest: cracked exact, everything else coarse "not cracked"."""
    from training.manifest import load_manifest

    path = tmp_path_factory.mktemp("coarse") / "screens.csv"
    rows = load_manifest(synth_dir / "manifest.csv").rows
    with path.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["device_id", "front_path", "screen_condition"])
        for r in rows:
            label = ("cracked" if r.screen == {"cracked"}
                     else "flawless|light_scratches|heavy_scratches")
            w.writerow([r.device_id, os.path.relpath(r.front_path, path.parent), label])
    return path


def _valid_png(path: Path) -> tuple[int, int]:
    with Image.open(path) as im:
        im.verify()
    with Image.open(path) as im:
        assert im.format == "PNG"
        return im.size


def test_evaluate_writes_metrics_plots_and_report(run: Path, synth_dir: Path, cache: str,
                                                  tmp_path: Path) -> None:
    from training.vision_eval import evaluate_vision

    out = tmp_path / "report"
    result = evaluate_vision(run, [synth_dir / "manifest.csv"], out, cache_dir=cache,
                             progress=False, worst=5)
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["run"] == str(run) and metrics["manifests"] == [str(synth_dir / "manifest.csv")]
    for part in ("screen", "shell"):
        m = metrics[part]
        for key in ("classes", "n", "confusion_matrix", "macro_f1", "balanced_accuracy", "qwk",
                    "ece", "ece_calibrated", "temperature", "roc_auc_cracked", "per_class",
                    "cracked_vs_rest"):
            assert key in m, (part, key)
        assert m["n"] == 24 and np.sum(m["confusion_matrix"]) == 24
        assert m["temperature"] == pytest.approx(result[part]["temperature"])
        assert len(m["worst"]) == 5
        masses = [w["p_true"] for w in m["worst"]]
        assert masses == sorted(masses)
        for name in ("confusion", "reliability", "worst"):
            _valid_png(out / f"{name}_{part}.png")
        if m["roc_auc_cracked"] is not None:
            _valid_png(out / f"roc_{part}.png")
    report = (out / "report.md").read_text()
    assert "macro-F1" in report and "confusion_screen.png" in report
    assert "tf_efficientnet_lite0" in report
    assert metrics["screen"]["risk_coverage"]["n"] == 24 and "Risk-coverage (screen" in report


def test_evaluate_coarse_screen_only(run: Path, coarse_manifest: Path, cache: str,
                                     tmp_path: Path) -> None:
    from training.vision_eval import evaluate_vision

    evaluate_vision(run, [coarse_manifest], tmp_path, cache_dir=cache, progress=False)
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert "shell" not in metrics
    screen = metrics["screen"]
    assert screen["n"] == 24 and screen["n_cracked_known"] == 24
    assert screen["n_exact"] < 24  # only the cracked ones are exact
    assert set(screen["cracked_vs_rest"]) >= {"balanced_accuracy", "macro_f1",
                                              "confusion_matrix"}
    assert 0.0 <= screen["roc_auc_cracked"] <= 1.0
    _valid_png(tmp_path / "roc_screen.png")
    assert not (tmp_path / "confusion_shell.png").exists()


def test_explain_overlay(run: Path, synth_dir: Path, tmp_path: Path) -> None:
    from training.explain import explain

    photo = sorted((synth_dir / "images").glob("*_front.jpg"))[0]
    result = explain(run, photo, "screen", tmp_path / "heat.png")
    assert sum(result["probabilities"].values()) == pytest.approx(1.0, abs=1e-5)
    assert result["class"] == max(result["probabilities"], key=result["probabilities"].get)
    with Image.open(photo) as im:
        assert _valid_png(tmp_path / "heat.png") == im.size
    forced = explain(run, photo, "screen", tmp_path / "cracked.png", "cracked")
    assert forced["class"] == "cracked"
    assert forced["box"] is None or all(0 <= v <= 1 for v in forced["box"])
    with pytest.raises(ValueError, match="unknown screen class"):
        explain(run, photo, "screen", tmp_path / "x.png", "light_wear")


def test_cli_evaluate_and_explain(run: Path, synth_dir: Path, cache: str, tmp_path: Path,
                                  capsys: pytest.CaptureFixture[str]) -> None:
    from photograde.cli import main

    rc = main(["evaluate", "vision", "--run", str(run), "--manifest",
               str(synth_dir / "manifest.csv"), "--out", str(tmp_path / "rep"), "--quiet",
               "--cache-dir", cache, "--worst", "2"])
    assert rc == 0
    out = capsys.readouterr().out
    assert "screen: n=24 macro-F1" in out and "shell:" in out and "ROC-AUC cracked" in out
    assert (tmp_path / "rep" / "report.md").is_file()

    photo = sorted((synth_dir / "images").glob("*_back.jpg"))[0]
    rc = main(["explain", "--run", str(run), "--image", str(photo), "--part", "shell",
               "--class", "cracked", "--out", str(tmp_path / "heat.png")])
    assert rc == 0
    result = json.loads(capsys.readouterr().out)
    assert result["part"] == "shell" and result["class"] == "cracked"
    assert (tmp_path / "heat.png").is_file()


def test_cli_missing_run_is_a_clear_error(synth_dir: Path, tmp_path: Path,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    from photograde.cli import main

    missing = tmp_path / "no-such-run"
    rc = main(["evaluate", "vision", "--run", str(missing), "--manifest",
               str(synth_dir / "manifest.csv"), "--out", str(tmp_path / "rep"), "--quiet"])
    assert rc == 2
    assert str(missing) in capsys.readouterr().err
    rc = main(["explain", "--run", str(missing), "--image", "x.jpg", "--part", "screen",
               "--out", str(tmp_path / "h.png")])
    assert rc == 2
    assert str(missing) in capsys.readouterr().err
    assert not (tmp_path / "rep").exists()


def test_summary_line_shows_cracked_vs_rest_when_only_one_class_has_exact_labels():
    from training.vision_eval import summary_line

    coarse = {"n": 10, "temperature": 1.0, "ece": 0.1, "ece_calibrated": 0.05,
              "roc_auc_cracked": 0.9, "macro_f1": 0.25, "qwk": 0.0,
              "per_class": {"flawless": {"support": 0}, "cracked": {"support": 4}},
              "cracked_vs_rest": {"macro_f1": 0.8, "balanced_accuracy": 0.85}}
    line = summary_line("screen", coarse)
    assert "cracked vs rest: macro-F1 0.800 balanced-acc 0.850" in line and "QWK" not in line
    exact = dict(coarse, per_class={"flawless": {"support": 3}, "cracked": {"support": 4}})
    assert "macro-F1 0.250" in summary_line("screen", exact)
