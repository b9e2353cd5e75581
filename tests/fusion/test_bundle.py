"""Export a tiny bundle (vision + tabular + fusion), verify it, predict torch-free, bad inputs."""

from __future__ import annotations

import io
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from fusion.bundle import BundleError, verify_bundle
from fusion.bundle import load_manifest as load_manifest_of_bundle
from fusion.model import FusionModel, policy_distribution
from fusion.policy import load_policy
from photograde.cli import main
from serve.runtime import Grader
from tabular.schema import parse_device_info
from tests.support import INFO, none_imported, run_python
from training.manifest import load_manifest


def test_policy_distribution_keeps_the_hard_rules():
    policy = load_policy()
    flawless = np.array([1.0, 0, 0, 0])
    cracked = np.array([0, 0, 0, 1.0])
    mixed = np.array([0.5, 0.2, 0.1, 0.2])
    assert policy_distribution(policy, flawless, flawless).tolist() == [1, 0, 0, 0]
    failed = policy_distribution(policy, flawless, flawless, ["wifi"])
    assert failed.tolist() == [0, 0, 0, 1]  # a failed check is never sellable
    assert policy_distribution(policy, cracked, flawless)[3] == 1
    p = policy_distribution(policy, mixed, flawless)
    assert p.sum() == pytest.approx(1) and p[3] == pytest.approx(0.3)  # heavy + cracked
    fused = FusionModel(policy.grades, a=2.0, b=np.array([3.0, 0, 0, 0]))
    assert fused.apply(failed).tolist() == [0, 0, 0, 1]  # learning cannot undo a rule
    assert fused.apply(p).sum() == pytest.approx(1)


def test_bundle_files_and_manifest(bundle):
    import onnx

    m = json.loads((bundle / "manifest.json").read_text())
    for name in ("vision.onnx", "vision.int8.onnx", "tabular.onnx", "fusion.json",
                 "samples.npz", "heads.npz"):
        assert name in m["files"] and len(m["files"][name]) == 64
    v = m["vision"]
    assert v["backbone"] == "tf_efficientnet_lite0" and v["input_size"] == 64
    assert v["parity_max_abs_diff"] <= 1e-4
    assert v["classes"]["screen"][-1] == "cracked"
    assert set(v["temperatures"]) == {"screen", "shell"}
    assert m["grading"]["scale"]["grades"] == ["excellent", "good", "fair", "broken"]
    q = v["int8"]
    assert q["speedup"] > 0 and set(q["macro_f1_int8"]) == {"screen", "shell"}
    assert q["evaluation_photos"] == 80 and "holdout" in q["evaluated_on"]  # 40 devices
    assert q["float_nodes"][0].endswith("conv_stem/Conv")  # the stem and heads stay fp32
    # TF "same" padding is frozen at the input size: no shape arithmetic left in the graph
    ops = {n.op_type for n in onnx.load(str(bundle / "vision.onnx")).graph.node}
    assert "Shape" not in ops and "Conv" in ops
    assert m["bundle_version"] and m["photograde_version"]


def test_verify_and_tampering(bundle, tmp_path, capsys):
    assert verify_bundle(bundle)["ok"]
    assert main(["bundle", "verify", str(bundle)]) == 0
    capsys.readouterr()
    bad = tmp_path / "tampered"
    shutil.copytree(bundle, bad)
    data = bytearray((bad / "fusion.json").read_bytes())
    data[-5] ^= 1
    (bad / "fusion.json").write_bytes(bytes(data))
    with pytest.raises(BundleError, match=r"fusion\.json does not match its sha256"):
        verify_bundle(bad)
    short = tmp_path / "truncated"
    shutil.copytree(bundle, short)
    (short / "vision.onnx").write_bytes((short / "vision.onnx").read_bytes()[:1000])
    assert main(["bundle", "verify", str(short)]) == 2
    assert "vision.onnx does not match" in capsys.readouterr().err
    with pytest.raises(BundleError, match=r"no manifest\.json"):
        Grader(tmp_path)


def _manifest(**extra) -> dict:
    return {"bundle_version": "v", "photograde_version": "0", "created_at": "2026-01-01",
            "vision": {"backbone": "b", "input_size": 64, "preprocess": {}, "classes": {},
                       "temperatures": {}},
            "tabular": {}, "fusion": {}, "files": {},
            "grading": {"scale": {}, "policy": {}, "decision": {}}, **extra}


def test_bundle_format_is_checked(tmp_path):
    (tmp_path / "manifest.json").write_text(json.dumps(_manifest(bundle_format=999)))
    with pytest.raises(BundleError, match=r"bundle format 999 is not supported"):
        load_manifest_of_bundle(tmp_path)
    assert main(["bundle", "verify", str(tmp_path)]) == 2
    (tmp_path / "manifest.json").write_text(json.dumps(_manifest(later_key=1)))
    m = load_manifest_of_bundle(tmp_path)  # written before bundle_format existed: format 1
    assert m.bundle_format == 1 and m.model_extra == {"later_key": 1}
    (tmp_path / "manifest.json").write_text(json.dumps(_manifest(files={"gone.onnx": "0"})))
    with pytest.raises(BundleError, match=r"gone\.onnx is missing"):
        load_manifest_of_bundle(tmp_path)


def test_grade_one_device(grader, synth_dir):
    row = load_manifest(synth_dir / "manifest.csv").rows[0]
    out = grader.grade(row.front_path, row.back_path, parse_device_info(INFO), "good",
                       heatmaps=True).model_dump(mode="json")  # as clients see it
    assert out["grade"] in grader.policy.grades
    assert sum(out["grade_probabilities"].values()) == pytest.approx(1, abs=1e-6)
    assert out["confidence"] == out["grade_probabilities"][out["grade"]]  # that grade's probability
    assert set(out["parts"]) == {"screen", "shell"}
    assert out["decision"] in ("validated", "suggestion", "justification_required")
    png = out["parts"]["screen"]["heatmap_png"]
    import base64

    assert Image.open(io.BytesIO(base64.b64decode(png))).format == "PNG"
    assert set(out["return_risk"]) >= {out["grade"], "good"}
    failed = parse_device_info({**INFO, "checks": {**INFO["checks"], "wifi": False}})
    out = grader.grade(row.front_path, row.back_path, failed).model_dump(mode="json")
    assert out["grade"] == "broken" and not out["sellable"]
    assert any(r["rule"] == "failed_checks" and r["decides"] for r in out["reasons"])


def test_predict_cli(bundle, synth_dir, tmp_path, capsys):
    row = load_manifest(synth_dir / "manifest.csv").rows[1]
    info = tmp_path / "device.json"
    info.write_text(json.dumps(INFO))
    args = ["predict", "--bundle", str(bundle), "--front", str(row.front_path), "--back",
            str(row.back_path), "--device-info", str(info)]
    assert main([*args, "--refurbisher-grade", "excellent", "--heatmaps",
                 str(tmp_path / "h")]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["execution_provider"] == "CPUExecutionProvider"
    assert (tmp_path / "h" / "screen.png").is_file()
    assert main([*args, "--int8"]) == 0
    capsys.readouterr()


def _bad_inputs(tmp_path: Path, good: Path) -> dict[str, tuple[Path, str]]:
    (tmp_path / "text.jpg").write_text("hello, not a photo")
    (tmp_path / "empty.jpg").write_bytes(b"")
    data = good.read_bytes()
    (tmp_path / "truncated.jpg").write_bytes(data[: len(data) // 3])
    Image.new("1", (12000, 12000)).save(tmp_path / "bomb.png")  # 144 MP in a few kB
    return {"not an image": (tmp_path / "text.jpg", "not an image"),
            "empty": (tmp_path / "empty.jpg", "empty"),
            "truncated": (tmp_path / "truncated.jpg", "truncated"),
            "bomb": (tmp_path / "bomb.png", "too large")}


@pytest.mark.filterwarnings("ignore::PIL.Image.DecompressionBombWarning")  # the bomb case
def test_predict_bad_inputs_give_clear_errors(bundle, synth_dir, tmp_path, capsys):
    row = load_manifest(synth_dir / "manifest.csv").rows[2]
    info = tmp_path / "device.json"
    info.write_text(json.dumps(INFO))
    base = ["predict", "--bundle", str(bundle), "--back", str(row.back_path)]
    for name, (path, message) in _bad_inputs(tmp_path, row.front_path).items():
        assert main([*base, "--front", str(path), "--device-info", str(info)]) == 2, name
        err = capsys.readouterr().err
        assert "--front" in err and message in err, (name, err)
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({**INFO, "checks": {**INFO["checks"], "nfc": True}}))
    assert main([*base, "--front", str(row.front_path), "--device-info", str(bad)]) == 2
    assert "checks.nfc: unknown field" in capsys.readouterr().err
    assert main([*base, "--front", str(row.front_path), "--device-info", str(info),
                 "--refurbisher-grade", "mint"]) == 2
    assert "unknown grade 'mint'" in capsys.readouterr().err


def test_runtime_never_imports_torch(bundle, synth_dir):
    row = load_manifest(synth_dir / "manifest.csv").rows[0]
    code = (
        "import sys, json\n"
        "from serve.runtime import Grader\n"
        "from tabular.schema import parse_device_info\n"
        f"g = Grader({str(bundle)!r}, threads=1)\n"
        f"out = g.grade({str(row.front_path)!r}, {str(row.back_path)!r}, "
        f"parse_device_info({json.dumps(INFO)!r}), heatmaps=True)\n"
        + none_imported("torch", "torchvision", "timm", "sklearn")
        + "print(out.grade)\n")
    proc = run_python(code)
    assert proc.returncode == 0, proc.stderr[-2000:]


def _ctia_table(path: Path, n: int = 600) -> str:
    """A table-only CTIA manifest (returns and announced grades) for the return-risk model."""
    from training.manifest import write_manifest
    from training.synth.generate import sample_rows

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (8, 8), (90, 90, 90)).save(path.parent / "tiny.jpg")
    rows = [dict(r, front_path="tiny.jpg") for r in sample_rows(n, 5, load_policy("ctia"))]
    return str(write_manifest(path, rows))


@pytest.mark.torch
def test_ctia_scale_round_trip(tmp_path, capsys):
    """A CTIA-graded dataset through synth, the three trainings (--grading ctia), export (which
    takes no --grading: manifests carry no scale) and predict on the A-E scale."""
    data, cache = tmp_path / "synth", str(tmp_path / "cache")
    v, t, f, b = (str(tmp_path / name) for name in ("v", "t", "f", "b"))
    ctia = ["--grading", "ctia"]
    assert main(["synth", "--devices", "40", "--out", str(data), "--size", "128", "--seed", "3",
                 "--workers", "1", "--quiet", *ctia]) == 0
    manifest = str(data / "manifest.csv")
    assert main(["train", "vision", "--manifest", manifest, "--out", v, "--val-fraction", "0.5",
                 "--img-size", "64", "--epochs", "1", "--batch-size", "8", "--workers", "0",
                 "--cache-dir", cache, "--quiet", *ctia]) == 0
    assert main(["train", "tabular", "--manifest", _ctia_table(tmp_path / "table" / "m.csv"),
                 "--out", t, *ctia]) == 0
    assert main(["train", "fusion", "--manifest", manifest, "--vision", v, "--tabular", t,
                 "--out", f, "--cache-dir", cache, *ctia]) == 0
    held_out = json.loads((Path(v) / "split.json").read_text())["val_device_ids"]
    assert json.loads((Path(f) / "fusion.json").read_text())["metrics"]["rows"] == len(held_out)
    assert main(["export", "--vision", v, "--tabular", t, "--fusion", f, "--out", b,
                 "--cache-dir", cache]) == 0
    assert json.loads((Path(b) / "manifest.json").read_text())["grading"]["scale"]["name"] == "ctia"
    capsys.readouterr()
    row = load_manifest(manifest, load_policy("ctia")).rows[0]
    info = tmp_path / "device.json"
    info.write_text(json.dumps(INFO))
    assert main(["predict", "--bundle", b, "--front", str(row.front_path), "--back",
                 str(row.back_path), "--device-info", str(info), "--refurbisher-grade", "A"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert list(out["grade_probabilities"]) == ["A", "B", "C", "D", "E"]
    assert out["grade"] in "ABCDE" and out["refurbisher_grade"] == "A"
