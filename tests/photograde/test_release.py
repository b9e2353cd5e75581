"""``photograde train release`` at toy scale: every step, the model card, the shipped form, and
fine-tuning from the shipped model."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from photograde.cli import main

pytestmark = pytest.mark.torch


def _real_folder(synth_dir: Path, out: Path) -> Path:
    """A stand-in for the real photos: synthetic fronts in intact/ and cracked/, named
    ``<source>-<id>.jpg`` like the shared set."""
    import csv

    for i, row in enumerate(csv.DictReader((synth_dir / "manifest.csv").open())):
        label = "cracked" if row["screen_condition"] == "cracked" else "intact"
        (out / label).mkdir(parents=True, exist_ok=True)
        shutil.copy(synth_dir / row["front_path"],
                    out / label / f"{'web' if i % 2 else 'shop'}-{row['device_id']}.jpg")
    return out


def test_release_runs_every_step_and_ships_a_model_that_serves_and_fine_tunes(synth_dir,
                                                                             tmp_path):
    from serve.runtime import Grader
    from training.vision_run import FP16_WEIGHTS, load_run

    real = _real_folder(synth_dir, tmp_path / "real")
    out, ship = tmp_path / "release", tmp_path / "models" / "toy-base"
    args = ["train", "release", "--real", str(real), "--out", str(out), "--devices", "10",
            "--calib-devices", "64", "--test-devices", "8", "--img-size", "64", "--epochs", "1",
            "--synth-size", "256", "--ship", str(ship), "--name", "toy-base", "--quiet",
            "--reference-from-test", "--history-devices", "80", "--history-test-devices", "40",
            "--photocheck-negatives", "24", "--photocheck-held-out", "16"]
    assert main(args) == 0
    record = json.loads((out / "release.json").read_text())
    assert set(record["evaluation"]) == {"synthetic", "synthetic_int8", "real", "real_int8"}
    assert record["precision"]["precision"] in ("fp32", "int8")  # measured, with its reason
    assert record["evaluation"]["real"]["user_grades"]["counts"]
    card = (ship / "MODEL_CARD.md").read_text()
    assert "# Model card: toy-base" in card and "Grades a user sees" in card
    assert "## Return risk" in card and "held-out history" in card
    assert record["return_risk"]["held_out_history"]["held_out_rows"] > 10
    assert (ship / FP16_WEIGHTS).is_file()
    assert main(["bundle", "verify", str(ship)]) == 0
    grader = Grader(ship, threads=1, precision="auto")
    assert grader.precision.model_dump() == record["precision"]
    assert grader.manifest.model_name == "toy-base" and grader.manifest.kind == "custom"
    assert grader.risk.uses_evidence  # the return-risk model on evidence, installed
    # the photo check (its cracked-screen probe blended into the served screen) learnt from
    # the real photos the condition model trained on, never from the validation ones that
    # the real-photo figures come from
    from training.manifest import load_manifest

    trained, held = ({r.device_id for r in load_manifest(record["data"][k]).rows}
                     for k in ("real_training", "real_validation"))
    assert trained and held and not trained & held
    pc = grader.manifest.photocheck
    assert pc is not None and pc.training_data["real_fronts"] == len(trained)
    assert grader.cracked_weight == pc.cracked_weight > 0
    threshold = grader.manifest.grading.decision.get("min_confidence", 0.0)
    assert 0 <= threshold < 1 and grader.policy.min_confidence == threshold
    if record["abstention"]["threshold"] is not None:  # a toy model may never reach 95%
        assert record["abstention"]["threshold"] == pytest.approx(threshold, abs=1e-3)
    ref = grader.manifest.reference  # the drift watch's reference: the held-out grades
    assert ref is not None and ref.devices == record["evaluation"]["synthetic"]["grades"]["n"]
    assert record["reference"]["grade_distribution"] == ref.grade_distribution
    assert sum(ref.grade_distribution.values()) == pytest.approx(1, abs=1e-4)
    _, config, _ = load_run(ship)
    assert config["img_size"] == 64
    assert main(args) == 0  # every step done: the second run only rewrites the card and ships
    assert main(["train", "vision", "--init-from", str(ship), "--manifest",
                 str(synth_dir / "manifest.csv"), "--out", str(tmp_path / "mine"),
                 "--img-size", "64", "--epochs", "1", "--batch-size", "8", "--workers", "0",
                 "--quiet"]) == 0


def test_release_with_a_localiser_trains_on_crops_and_ships_a_bundle_that_crops(
        synth_dir, localiser_run, tmp_path, capsys):
    """``--localiser``: the condition model trains on the whole photos and the localiser's
    crops of the fronts (backs whole), fusion is fitted on what the bundle then sees (the
    calibration devices' front crops), and the bundle carries the localiser (int8) and crops
    the fronts; a bad crop option is refused before any work."""
    from serve.runtime import Grader
    from training.manifest import CROP_SUFFIX, load_manifest

    real = _real_folder(synth_dir, tmp_path / "real")
    out = tmp_path / "release"
    base = ["train", "release", "--real", str(real), "--out", str(out), "--devices", "10",
            "--calib-devices", "64", "--test-devices", "8", "--img-size", "64", "--epochs",
            "1", "--synth-size", "256", "--quiet", "--history-devices", "80",
            "--history-test-devices", "40", "--photocheck-negatives", "24",
            "--photocheck-held-out", "16", "--localiser", str(localiser_run[0])]
    assert main([*base, "--crop-views", "side"]) == 2
    assert "--crop-views side" in capsys.readouterr().err and not out.exists()
    assert main([*base, "--crop-views", "front", "--crop-long-side", "64"]) == 0
    record = json.loads((out / "release.json").read_text())
    assert record["recipe"]["localiser"] == str(localiser_run[0])
    for manifest in record["data"]["vision_training"]:  # train and real: mixed.csv
        rows = load_manifest(manifest).rows
        crops = [r for r in rows if r.device_id.endswith(CROP_SUFFIX)]
        assert 0 < len(crops) < len(rows)
        assert all(r.back_path is None and r.front_path is not None for r in crops)
    fusion = json.loads((out / "fusion" / "fusion.json").read_text())
    assert fusion["manifests"] == [str(out / "data" / "calib-crops" / "manifest.csv")]
    grader = Grader(out / "bundle", threads=1)
    crop = grader.manifest.crop
    assert crop is not None and crop.views == ["front"] and crop.long_side == 64
    assert crop.localiser["int8"]
    assert main(["bundle", "verify", str(out / "bundle")]) == 0
    assert "cut out of the front photo" in (out / "bundle" / "MODEL_CARD.md").read_text()
    assert record["evaluation"]["synthetic"]["grades"]["n"] > 0


def test_release_serve_whole_trains_on_crops_but_keeps_whole_photos_for_the_rest(
        synth_dir, localiser_run, tmp_path):
    """``--serve whole``: the condition model trains on the photos and their front crops
    (``mixed.csv``), but fusion, int8 and the evaluation see the whole photos, as the bundle
    (without a localiser) serves; the calibration and held-out devices are never cropped, and
    the card says what the model trained on."""
    from photograde.model_card import _pipeline
    from photograde.release import ReleaseConfig, ReleaseError, _check_crop, _vision_data
    from training.manifest import CROP_SUFFIX, load_manifest

    manifest = synth_dir / "manifest.csv"
    cfg = ReleaseConfig(out=str(tmp_path / "release"), localiser=str(localiser_run[0]),
                        crop_long_side=64, serve="whole")
    _check_crop(cfg)
    training, calib, test = _vision_data(cfg, manifest, manifest, manifest, None)
    assert (calib, test) == (manifest, manifest)
    assert [p.name for p in training] == ["mixed.csv"]
    rows = load_manifest(training[0]).rows
    assert 0 < sum(r.device_id.endswith(CROP_SUFFIX) for r in rows) < len(rows)
    assert sorted(p.name for p in (tmp_path / "release" / "data").iterdir()) == ["train-crops"]
    with pytest.raises(ReleaseError, match="--serve side"):
        _check_crop(ReleaseConfig(localiser=str(localiser_run[0]), serve="side"))

    class Whole:  # the card's pipeline line reads the manifest's crop only
        crop = None

    line = _pipeline(Whole(), {"localiser": "runs/loc160", "crop_views": "front"})  # type: ignore[arg-type]
    assert "whole" in line and "device crops of the front photos" in line
    assert "crops" not in _pipeline(Whole(), {"localiser": None})  # type: ignore[arg-type]
