"""``photograde evaluate bundle``: the served bundle's metrics, per source, per grade, and the
grades a user would see; it never imports torch."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import pytest

from photograde.cli import main


def _front_only(synth_dir: Path, out: Path) -> Path:
    """Fronts of the synthetic devices as a coarse screen-only manifest with two sources."""
    rows = list(csv.DictReader((synth_dir / "manifest.csv").open()))
    path = out / "fronts.csv"
    with path.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["device_id", "front_path", "screen_condition", "source"])
        for i, r in enumerate(rows):
            label = ("cracked" if r["screen_condition"] == "cracked"
                     else "flawless|light_scratches|heavy_scratches")
            w.writerow([r["device_id"], str(synth_dir / r["front_path"]), label,
                        "alpha" if i % 2 else "beta"])
    return path


def test_evaluate_bundle_writes_vision_metrics_grades_and_report(bundle, synth_dir, tmp_path,
                                                                  capsys):
    out = tmp_path / "eval"
    assert main(["evaluate", "bundle", "--bundle", str(bundle), "--manifest",
                 str(synth_dir / "manifest.csv"), "--out", str(out), "--quiet"]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["screen"]["n"] == 24 and metrics["shell"]["n"] == 24
    assert set(metrics["screen"]) >= {"macro_f1", "balanced_accuracy", "qwk", "confusion_matrix"}
    assert metrics["by_source"]["synthetic"]["screen"]["n"] == 24
    grades = metrics["grades"]
    assert grades["n"] == 24 and sum(map(sum, grades["confusion_matrix"])) == 24
    report = (out / "report.md").read_text()
    assert "## Grades" in report and "## By source" in report
    assert "grades: n=24" in capsys.readouterr().out


def test_evaluate_bundle_per_source_and_user_grades(bundle, synth_dir, tmp_path):
    from photograde.bundle_eval import evaluate_bundle

    fronts = _front_only(synth_dir, tmp_path)
    back = next(synth_dir.glob("images/*_back.jpg"))
    result = evaluate_bundle(bundle, [fronts], tmp_path / "e", back=back, progress=False)
    assert set(result["by_source"]) == {"alpha", "beta"}
    assert sum(h["screen"]["n"] for h in result["by_source"].values()) == 24
    counts = result["user_grades"]["counts"]
    assert sum(sum(c.values()) for c in counts.values()) == 24
    assert set(counts) <= {"cracked", "not_cracked"}
    grades = set(json.loads((bundle / "manifest.json").read_text())["grading"]["scale"]["grades"])
    assert {g for c in counts.values() for g in c} <= grades


def test_evaluate_bundle_refuses_a_manifest_without_labels(bundle, synth_dir, tmp_path,
                                                           capsys):
    empty = tmp_path / "m.csv"
    front = next(synth_dir.glob("images/*_front.jpg"))
    empty.write_text(f"device_id,front_path\nd1,{front}\n")
    assert main(["evaluate", "bundle", "--bundle", str(bundle), "--manifest", str(empty),
                 "--out", str(tmp_path / "o"), "--quiet"]) == 2
    assert "no labelled photos" in capsys.readouterr().err


def test_evaluate_bundle_imports_no_torch(bundle, synth_dir, tmp_path):
    code = (
        "import sys\n"
        "from photograde.bundle_eval import evaluate_bundle\n"
        f"evaluate_bundle({str(bundle)!r}, [{str(synth_dir / 'manifest.csv')!r}], "
        f"{str(tmp_path / 'o')!r}, progress=False, worst=0)\n"
        "bad = sorted(m for m in ('torch', 'timm') if m in sys.modules)\n"
        "assert not bad, bad\n")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=300)


@pytest.mark.parametrize(("demo", "name", "kind"), [(True, None, "demo"),
                                                    (False, "photograde-base", "base"),
                                                    (False, None, "custom")])
def test_bundle_kind_says_which_model_is_serving(bundle, demo, name, kind):
    from fusion.bundle import load_manifest
    from serve.ui.pages import model_label

    m = load_manifest(bundle, verify_hashes=False).model_copy(update={"demo": demo,
                                                                      "model_name": name})
    assert m.kind == kind
    assert ("shipped base model" in model_label(m)) == (kind == "base")


def test_evaluate_bundle_reports_risk_coverage_per_part_and_for_the_grade(bundle, synth_dir,
                                                                          tmp_path):
    out = tmp_path / "eval"
    assert main(["evaluate", "bundle", "--bundle", str(bundle), "--manifest",
                 str(synth_dir / "manifest.csv"), "--out", str(out), "--quiet"]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    for rc in (metrics["screen"]["risk_coverage"], metrics["shell"]["risk_coverage"],
               metrics["grades"]["risk_coverage"]):
        assert rc["n"] == 24 and 0.0 <= rc["area"] <= 1.0
        assert rc["aurc"] == pytest.approx(1 - rc["area"])
        assert rc["curve"]["coverage"][-1] == pytest.approx(1.0)
        assert set(rc["for_accuracy"]) == {"0.9", "0.95"}
        assert [a["threshold"] for a in rc["at_threshold"]] == [0.5, 0.6, 0.7, 0.8, 0.9]
    grade_rc = metrics["grades"]["risk_coverage"]
    assert grade_rc["accuracy"] == pytest.approx(metrics["grades"]["accuracy"])
    report = (out / "report.md").read_text()
    assert "Risk-coverage (grade" in report and "Risk-coverage (screen" in report
    assert "| for 90% accuracy:" in report


def test_set_reference_writes_the_predicted_grade_distribution_into_the_bundle(
        bundle, synth_dir, tmp_path, capsys):
    import shutil

    from fusion.bundle import load_manifest, verify_bundle

    mine = tmp_path / "bundle"
    shutil.copytree(bundle, mine)
    assert load_manifest(mine).reference is None
    assert main(["evaluate", "bundle", "--bundle", str(mine), "--manifest",
                 str(synth_dir / "manifest.csv"), "--out", str(tmp_path / "e"),
                 "--set-reference", "--quiet"]) == 0
    metrics = json.loads((tmp_path / "e" / "metrics.json").read_text())
    ref = load_manifest(mine).reference
    assert ref is not None and ref.devices == metrics["served_grades"]["devices"] == 24
    grades = metrics["grades"]  # every device is labelled: the same grades as the evaluation's
    predicted = [sum(col) for col in zip(*grades["confusion_matrix"], strict=True)]
    assert ref.grade_distribution == {g: round(n / 24, 6) for g, n in
                                      zip(grades["grades"], predicted, strict=True)}
    assert "reference grade distribution (24 devices)" in capsys.readouterr().out
    assert verify_bundle(mine)["ok"]  # the manifest is not one of the hashed files
    fronts = _front_only(synth_dir, tmp_path)  # no device with both photos: a one-line error
    assert main(["evaluate", "bundle", "--bundle", str(mine), "--manifest", str(fronts),
                 "--out", str(tmp_path / "f"), "--set-reference", "--quiet"]) == 2
    assert "no reference distribution" in capsys.readouterr().err
