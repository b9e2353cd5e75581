"""``photograde evaluate precision`` records int8 against fp32 on labelled fronts in the bundle,
where ``precision=auto`` and ``/v1/model`` read it."""

from __future__ import annotations

import shutil

from fastapi.testclient import TestClient

from fusion.bundle import load_manifest, verify_bundle, write_manifest
from fusion.precision import choose_precision
from photograde.cli import main
from serve.runtime import Grader
from tests.support import workflow_app


def test_the_measured_change_is_recorded_and_drives_auto(bundle, synth_dir, tmp_path, capsys):
    copy = shutil.copytree(bundle, tmp_path / "b")
    assert Grader(copy, precision="auto").precision.precision == "fp32"  # not measured yet
    fronts = synth_dir / "manifest.csv"  # synthetic fronts stand in for real ones here
    assert main(["evaluate", "precision", "--bundle", str(copy), "--real", str(fronts),
                 "--threads", "1", "--quiet"]) == 0
    out = capsys.readouterr().out
    real = load_manifest(copy).vision.int8.real_screen
    assert real is not None and real.photos == 24 and real.evaluated_on == str(fronts)
    assert 0 <= real.roc_auc_cracked_int8 <= 1 and "real-screen ROC-AUC" in out
    assert verify_bundle(copy)["ok"]
    choice = choose_precision(load_manifest(copy).vision.int8, "auto")
    g = Grader(copy, precision="auto", threads=1)
    assert g.precision == choice and f"serves {choice.precision}" in out
    assert g.vision_file == ("vision.int8.onnx" if choice.precision == "int8" else "vision.onnx")
    with TestClient(workflow_app("sqlite://", tmp_path, g, auth_required=False)) as client:
        info = client.get("/v1/model").json()
    assert info["precision"] == choice.model_dump() and info["vision_file"] == g.vision_file


def test_a_bundle_without_int8_is_a_one_line_error(bundle, synth_dir, tmp_path, capsys):
    copy = shutil.copytree(bundle, tmp_path / "b")
    manifest = load_manifest(copy)
    manifest.vision.int8 = None
    write_manifest(copy, manifest)
    assert main(["evaluate", "precision", "--bundle", str(copy), "--real",
                 str(synth_dir / "manifest.csv"), "--quiet"]) == 2
    assert "no int8 model in this bundle" in capsys.readouterr().err
