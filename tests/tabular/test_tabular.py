"""The tabular return-risk model: features, training, ONNX export and parity, serving, CLI."""

from __future__ import annotations

import itertools
import json
import math
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from fusion.policy import load_policy
from photograde.cli import main
from tabular.features import (
    FACT_FEATURE_NAMES,
    FEATURE_NAMES,
    STRING_FEATURES,
    functional_state,
    tabular_features,
    to_onnx_inputs,
)
from tabular.schema import CHECKS, parse_device_info
from tests.support import run_python
from training.manifest import COLUMNS, write_manifest

POLICY = load_policy()
INFO = {"brand": " Fairphone ", "model": "Fairphone  5", "storage_gb": 256, "unlocked": True,
        "battery_health_pct": None, "checks": dict.fromkeys(CHECKS, True)}


def _table_manifest(path: Path, n: int, seed: int, columns=COLUMNS) -> Path:
    """A table-only manifest of ``n`` synthetic devices whose photos are all one tiny JPEG."""
    from training.synth.generate import sample_rows

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (8, 8), (90, 90, 90)).save(path.parent / "tiny.jpg")
    rows = [dict(r, front_path="tiny.jpg") for r in sample_rows(n, seed, POLICY)]
    return write_manifest(path, rows, columns)


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> tuple[Path, dict]:
    from training.tabular_train import train_tabular

    base = tmp_path_factory.mktemp("tabular")
    manifest = _table_manifest(base / "table.csv", 3000, seed=0)
    return base / "run", train_tabular([manifest], base / "run", seed=0)


def test_features_are_named_typed_and_normalised():
    f = tabular_features(parse_device_info(INFO), "good", POLICY)
    assert tuple(f) == FEATURE_NAMES
    assert f["brand"] == "fairphone" and f["model"] == "fairphone 5"
    assert f["storage_log2"] == 8 and f["unlocked"] == 1 and f["announced_rank"] == 1
    assert math.isnan(f["battery_health_pct"]) and f["battery_known"] == 0
    assert f["n_failed_checks"] == 0 and f["functional_gap"] == 0
    flat = {**INFO, "battery_health_pct": 70, **dict.fromkeys(CHECKS, True), "wifi": False}
    del flat["checks"]
    g = tabular_features(flat, "excellent", POLICY)
    assert g["wifi"] == 0 and g["n_failed_checks"] == 1 and g["battery_known"] == 1
    assert g["functional_gap"] == POLICY.rank("broken")
    x = to_onnx_inputs([f, g])
    assert list(x) == list(FEATURE_NAMES)
    for name, arr in x.items():
        assert arr.shape == (2, 1)
        assert arr.dtype == (object if name in STRING_FEATURES else np.float32)
    with pytest.raises(ValueError, match="unknown grade"):
        tabular_features(INFO, "mint", POLICY)


def test_functional_state_follows_the_policy():
    ok = functional_state(parse_device_info(INFO), POLICY)
    assert ok == {"failed_checks": [], "battery_ok": None, "functional_ok": True, "cap": None}
    bad = dict(INFO, battery_health_pct=79, checks=dict(INFO["checks"], speakers=False))
    state = functional_state(parse_device_info(bad), POLICY)
    assert state == {"failed_checks": ["speakers"], "battery_ok": False,
                     "functional_ok": False, "cap": POLICY.failed_check}
    low = functional_state(parse_device_info(dict(INFO, battery_health_pct=50)), POLICY)
    assert low["battery_ok"] is False and low["cap"] == POLICY.low_battery


@pytest.mark.torch
def test_training_metrics_files_and_parity(run):
    out, summary = run
    assert {p.name for p in out.iterdir()} >= {"tabular.onnx", "tabular.json", "tabular.joblib"}
    meta = json.loads((out / "tabular.json").read_text())
    # trained without evidence: the facts and the announced grade only
    assert meta["feature_names"] == list(FACT_FEATURE_NAMES) and meta["evidence"] is False
    assert [i["name"] for i in meta["inputs"]] == list(FACT_FEATURE_NAMES)
    assert {i["type"] for i in meta["inputs"]} == {"string", "float32"}
    assert meta["outputs"]["probabilities"] == "probabilities"
    assert meta["scale"]["grades"] == list(POLICY.grades)
    assert meta["versions"]["sklearn"]
    m, data = summary["metrics"], summary["data"]
    assert data["rows"] > 1000 and 0 < data["base_rate"] < 0.5
    assert m["onnx_max_abs_diff"] <= 1e-4
    # The inputs see the announced grade and the functional cap, not the screen/shell
    # condition that drives most synthetic returns: a weak signal only.
    assert m["roc_auc"] > 0.5 and 0 < m["pr_auc"] < 1
    bins = m["calibration"]["bins"]
    assert sum(b["rows"] for b in bins) == m["held_out_rows"] and m["calibration"]["ece"] < 0.1
    assert m["brier"] <= m["brier_base_rate"] + 0.002  # calibrated: no worse than the base rate
    assert abs(m["mean_risk"] - m["base_rate"]) < 0.05
    assert data["by_gap"]["1"]["return_rate"] > data["by_gap"]["0"]["return_rate"]


@pytest.mark.torch
def test_risk_is_higher_when_the_announced_grade_is_too_good(run):
    from tabular.runtime import ReturnRiskModel
    from training.synth.generate import sample_rows

    model = ReturnRiskModel.from_dir(run[0])
    rows = [r for r in sample_rows(3000, 1, POLICY) if r["returned"] is not None]
    risk = model.predict_features([tabular_features(r, r["refurbisher_grade"], POLICY)
                                   for r in rows])
    gap = np.array([POLICY.rank(r["grade"]) - POLICY.rank(r["refurbisher_grade"]) for r in rows])
    assert risk[gap > 0].mean() > risk[gap <= 0].mean()
    # a failed check makes the device "broken": the better the listing, the higher the risk
    failed = dict(INFO, checks=dict(INFO["checks"], wifi=False))
    sellable = [g for g in POLICY.grades if POLICY.sellable(g)]
    by_grade = model.predict(failed, sellable, POLICY)
    assert list(by_grade) == sellable
    assert all(by_grade[a] > by_grade[b] for a, b in itertools.pairwise(sellable))
    assert by_grade[sellable[0]] > model.predict(INFO, sellable[:1], POLICY)[sellable[0]]


@pytest.mark.torch
def test_unseen_brand_and_model_predict(run):
    from tabular.runtime import ReturnRiskModel

    model = ReturnRiskModel.from_dir(run[0])
    risk = model.predict(dict(INFO, brand="NoSuchBrand", model="X 1"), ["excellent", "fair"],
                         POLICY)
    assert set(risk) == {"excellent", "fair"} and all(0 < p < 1 for p in risk.values())
    with pytest.raises(ValueError, match="scale"):
        model.predict(INFO, ["A"], load_policy("ctia"))


@pytest.mark.torch
def test_runtime_imports_neither_sklearn_nor_torch(run):
    code = (
        "import sys, json\n"
        "from fusion.policy import load_policy\n"
        "from tabular.runtime import ReturnRiskModel\n"
        f"m = ReturnRiskModel.from_dir({str(run[0])!r})\n"
        f"m.predict(json.loads({json.dumps(INFO)!r}), ['good'], load_policy())\n"
        "print(json.dumps(sorted(k for k in ('sklearn', 'skl2onnx', 'torch', 'joblib')"
        " if k in sys.modules)))\n"
    )
    done = run_python(code, check=True)
    assert json.loads(done.stdout.strip().splitlines()[-1]) == []


@pytest.mark.torch
def test_cli_trains_without_battery_column(tmp_path, capsys):
    manifest = _table_manifest(tmp_path / "m.csv", 600, seed=3,
                               columns=[c for c in COLUMNS if c != "battery_health_pct"])
    assert main(["train", "tabular", "--manifest", str(manifest), "--out",
                 str(tmp_path / "run"), "--seed", "1"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["metrics"]["onnx_max_abs_diff"] <= 1e-4
    assert (tmp_path / "run" / "tabular.onnx").is_file()


@pytest.mark.torch
def test_manifest_without_returns_is_a_clear_error(tmp_path, capsys):
    from training.tabular_train import train_tabular

    manifest = _table_manifest(tmp_path / "m.csv", 50, seed=4,
                               columns=[c for c in COLUMNS if c != "returned"])
    with pytest.raises(ValueError, match=r"'returned' and 'refurbisher_grade'"):
        train_tabular([manifest], tmp_path / "run")
    assert main(["train", "tabular", "--manifest", str(manifest), "--out",
                 str(tmp_path / "run")]) == 2
    assert "returned" in capsys.readouterr().err


def test_error_fields_are_written_with_indices_in_brackets():
    from pydantic import TypeAdapter, ValidationError

    from tabular.schema import DeviceInfo, describe_errors, field_path

    with pytest.raises(ValidationError) as e:
        TypeAdapter(dict[str, list[DeviceInfo]]).validate_python(
            {"devices": [INFO, INFO, INFO, {**INFO, "storage_gb": "x"}]})
    assert describe_errors(e.value)[0].startswith("devices[3].storage_gb: ")
    assert field_path(("devices", 0, "checks", "wifi")) == "devices[0].checks.wifi"
    assert field_path((2,)) == "[2]" and field_path(()) == ""


@pytest.mark.torch
def test_a_model_with_unknown_or_no_features_is_refused_by_name(run):
    from tabular.runtime import ReturnRiskModel, TabularModelError

    meta = json.loads((run[0] / "tabular.json").read_text())
    onnx = run[0] / "tabular.onnx"
    with pytest.raises(TabularModelError, match="does not compute \\(colour_of_box\\)"):
        ReturnRiskModel(onnx, {**meta, "feature_names": [*meta["feature_names"],
                                                          "colour_of_box"]})
    with pytest.raises(TabularModelError, match="names no feature_names"):
        ReturnRiskModel(onnx, {**meta, "feature_names": []})
    assert not ReturnRiskModel(onnx, meta).uses_evidence  # the facts-only model still loads
