"""``photograde train return-risk``: a history graded through a bundle, the model trained on
that evidence, scored on another history, installed into the bundle, and served."""

from __future__ import annotations

import contextlib
import io
import json
import shutil
from pathlib import Path

import pytest

from photograde.cli import main
from tabular.features import FEATURE_NAMES
from tabular.schema import CHECKS, DeviceInfo


@pytest.fixture(scope="module")
def histories(tmp_path_factory) -> tuple[Path, Path]:
    """Two small marketplace histories (photos at 160 px)."""
    from training.synth.generate import generate

    base = tmp_path_factory.mktemp("histories")
    return (generate(120, base / "train", seed=41, size=160, progress=False, mix="marketplace"),
            generate(60, base / "test", seed=42, size=160, progress=False, mix="marketplace"))


@pytest.fixture(scope="module")
def installed(bundle, histories, tmp_path_factory) -> tuple[Path, str, str]:
    """A copy of the tiny bundle with a return-risk model trained on evidence installed;
    (the copy, its version before, the command's output)."""
    from fusion.bundle import load_manifest

    base = tmp_path_factory.mktemp("installed")
    copy = base / "bundle"
    shutil.copytree(bundle, copy)
    before = load_manifest(copy).bundle_version
    train, test = histories
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert main(["train", "return-risk", "--bundle", str(copy), "--manifest", str(train),
                     "--test", str(test), "--out", str(base / "run"), "--install",
                     "--quiet"]) == 0
    return copy, before, out.getvalue()


def test_train_return_risk_installs_a_model_on_evidence(installed, histories):
    from fusion.bundle import load_manifest, verify_bundle
    from serve.runtime import Grader

    copy, before, out = installed
    train, _ = histories
    assert "held-out history" in out and "installed into" in out
    meta = json.loads((copy / "tabular.json").read_text())
    assert meta["evidence"] is True and meta["feature_names"] == list(FEATURE_NAMES)
    held = meta["metrics"]["held_out_history"]
    assert held["held_out_rows"] > 30 and 0 <= held["roc_auc"] <= 1
    assert sum(b["rows"] for b in held["calibration"]["bins"]) == held["held_out_rows"]
    manifest = load_manifest(copy)  # hashes of the new files verified
    assert manifest.bundle_version != before and manifest.tabular.feature_names == meta[
        "feature_names"]
    verify_bundle(copy)
    g = Grader(copy, threads=1)
    assert g.risk.uses_evidence
    photos = sorted((train.parent / "images").glob("*_front.jpg"))[:1]
    info = DeviceInfo.model_validate({"brand": "Apple", "model": "iPhone 12", "storage_gb": 128,
                                      "unlocked": True, "battery_health_pct": 90,
                                      "checks": dict.fromkeys(CHECKS, True)})
    result = g.grade(photos[0], str(photos[0]).replace("_front", "_back"), info, "excellent")
    assert set(result.return_risk) >= {"excellent"}
    assert all(0 < p < 1 for p in result.return_risk.values())


def test_evaluate_return_risk_scores_the_installed_model(installed, histories, tmp_path):
    copy, _, _ = installed
    _, test = histories
    out = tmp_path / "rr.json"
    assert main(["evaluate", "return-risk", "--bundle", str(copy), "--manifest", str(test),
                 "--out", str(out), "--quiet"]) == 0
    scored = json.loads(out.read_text())
    held = json.loads((copy / "tabular.json").read_text())["metrics"]["held_out_history"]
    # the same model on the same history, graded the same way: the same figures
    for key in ("held_out_rows", "roc_auc", "pr_auc", "brier"):
        assert scored[key] == pytest.approx(held[key]), key


def test_install_refuses_another_grade_scale(bundle, histories, tmp_path):
    from photograde.return_risk import install_into
    from training.manifest import DatasetError

    run = tmp_path / "run"
    run.mkdir()
    shutil.copy(bundle / "tabular.onnx", run / "tabular.onnx")
    meta = json.loads((bundle / "tabular.json").read_text())
    meta["scale"]["grades"] = ["A", "B", "C", "D"]
    (run / "tabular.json").write_text(json.dumps(meta))
    copy = tmp_path / "bundle"
    shutil.copytree(bundle, copy)
    with pytest.raises(DatasetError, match="another grade scale"):
        install_into(copy, run)


def test_the_workflow_serves_it_with_the_sellers_trust(installed, tmp_path, synth_dir):
    from fastapi.testclient import TestClient

    from serve.db import Database
    from serve.runtime import Grader
    from tests.support import INFO, role_keys, small_photos, workflow_app

    url = f"sqlite:///{tmp_path / 'w.db'}"
    db = Database(url)
    db.migrate()
    keys = role_keys(db)
    front, back = small_photos(synth_dir, 1)[0]
    app = workflow_app(url, tmp_path, Grader(installed[0], threads=1))
    with TestClient(app) as client:
        r = client.post("/v1/evaluations", headers={"Authorization":
                                                    f"Bearer {keys['refurbisher']}"},
                        files={"front": ("f.jpg", front), "back": ("b.jpg", back)},
                        data={"device": json.dumps(INFO), "refurbisher_grade": "good"})
    assert r.status_code == 201, r.text
    risk = r.json()["prediction"]["return_risk"]
    assert "good" in risk and all(0 < p < 1 for p in risk.values())
