"""The two-stage pipeline as served (issue 19): ``export --localiser`` puts a localiser in a
bundle; the runtime then grades the device's rectified crop of the views it names, while the
photo check still sees the whole photo; heatmaps and damage boxes come back onto the photo;
``/v1/model`` says so; a photo where no device is found is graded whole."""

from __future__ import annotations

import base64
import io
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image

from fusion.bundle import (
    LOCALISER_FILE,
    BundleError,
    hash_files,
    verify_bundle,
    write_manifest,
)
from fusion.bundle import load_manifest as load_bundle_manifest
from photograde.cli import build_parser
from serve.runtime import Grader
from tabular.schema import parse_device_info
from tests.support import INFO, small_photos, workflow_app
from training.crop_bundle import add_localiser, parse_views
from training.manifest import load_manifest
from vision.localise import LocaliserError


def _localiser(run: Path, tmp: Path, threshold: float) -> Path:
    """A copy of the test localiser whose "found" threshold is ``threshold`` (0: always)."""
    out = tmp / f"loc-{threshold}"
    shutil.copytree(run, out)
    cfg = json.loads((out / "localiser.json").read_text())
    (out / "localiser.json").write_text(json.dumps({**cfg, "threshold": threshold}))
    return out


@pytest.fixture(scope="module")
def crop_bundle(bundle, localiser_run, tmp_path_factory) -> Path:
    tmp = tmp_path_factory.mktemp("crop")
    out = tmp / "bundle"
    shutil.copytree(bundle, out)
    version = add_localiser(out, _localiser(localiser_run[0], tmp, 0.0), ["front", "back"], 96)
    assert json.loads((out / "manifest.json").read_text())["bundle_version"] == version
    return out


def test_the_bundle_carries_the_localiser_and_verifies(crop_bundle, bundle):
    report = verify_bundle(crop_bundle)
    assert report["ok"] and report["crop"] == {"views": ["front", "back"], "long_side": 96}
    assert report["bundle_version"] != json.loads((bundle / "manifest.json").read_text())[
        "bundle_version"]
    g = Grader(crop_bundle, threads=1)
    assert g.crop is not None and g.crop.views == ["front", "back"] and g.crop.long_side == 96
    assert g.info()["crop"] == {"views": ["front", "back"], "long_side": 96}
    assert Grader(bundle, threads=1).info()["crop"] is None


def test_a_tampered_localiser_is_refused(crop_bundle, tmp_path):
    copy = tmp_path / "b"
    shutil.copytree(crop_bundle, copy)
    (copy / LOCALISER_FILE).write_bytes(b"tampered")
    with pytest.raises(BundleError, match=r"localiser\.onnx does not match its sha256"):
        Grader(copy, threads=1)
    manifest = load_bundle_manifest(copy, verify_hashes=False)  # hashed as it is now:
    manifest.files = {k: hash_files(copy)[k] for k in manifest.files}
    write_manifest(copy, manifest)
    with pytest.raises(BundleError, match=r"localiser\.onnx: not an ONNX model"):
        verify_bundle(copy)  # ... the bundle check still loads it


def test_the_model_sees_the_crop_and_the_photo_check_the_whole_photo(crop_bundle, bundle,
                                                                     synth_dir):
    row = load_manifest(synth_dir / "manifest.csv").rows[0]
    whole, cropped = Grader(bundle, threads=1), Grader(crop_bundle, threads=1)
    w = whole.decode(row.front_path, measured=True, scored=True, view="front")
    c = cropped.decode(row.front_path, measured=True, scored=True, view="front")
    assert w.crop is None and c.crop is not None and c.crop.shape == (4, 2)
    assert not np.allclose(w.x, c.x)  # another input: the crop
    assert c.stats == w.stats  # the check measures the whole photo ...
    if w.scores is not None:  # ... and scores it (the tiny bundle may have no check model)
        assert c.scores == w.scores
    assert cropped.decode(row.front_path).crop is None  # no view: the whole photo
    assert np.allclose(cropped.decode(row.front_path).x, w.x)


def test_views_not_cropped_and_devices_not_found_are_graded_whole(crop_bundle, bundle,
                                                                  localiser_run, tmp_path,
                                                                  synth_dir):
    row = load_manifest(synth_dir / "manifest.csv").rows[0]
    back_only = tmp_path / "back-only"
    shutil.copytree(bundle, back_only)
    add_localiser(back_only, _localiser(localiser_run[0], tmp_path, 0.0), ["back"], 96)
    g = Grader(back_only, threads=1)
    assert g.decode(row.front_path, view="front").crop is None
    assert g.decode(row.back_path, view="back").crop is not None
    never = tmp_path / "never"
    shutil.copytree(bundle, never)
    add_localiser(never, _localiser(localiser_run[0], tmp_path, 1.0), ["front", "back"], 96)
    g = Grader(never, threads=1)  # found only at probability 1: never here
    assert g.decode(row.front_path, view="front").crop is None


def test_a_graded_crop_explains_itself_on_the_photo(crop_bundle, synth_dir):
    front, back = small_photos(synth_dir, 1, size=200)[0]
    g = Grader(crop_bundle, threads=1)
    result = g.grade(front, back, parse_device_info(INFO), "good", heatmaps=True)
    for part in ("screen", "shell"):
        p = result.parts[part]
        assert p.heatmap_png  # drawn on the whole photo
        if p.damage_box is not None:
            assert all(0 <= v <= 1 for v in p.damage_box)
    png = Image.open(io.BytesIO(base64.b64decode(result.parts["screen"].heatmap_png)))
    assert png.size == g.decode(front).image.size  # the photo's shape, not the crop's


def test_the_service_serves_and_reports_the_crop(crop_bundle, synth_dir, tmp_path):
    g = Grader(crop_bundle, threads=1)
    app = workflow_app(f"sqlite:///{tmp_path / 'db.sqlite'}", tmp_path, g,
                       auth_required=False)
    front, back = small_photos(synth_dir, 1, size=200)[0]
    with TestClient(app) as client:
        assert client.get("/v1/model").json()["crop"] == {"views": ["front", "back"],
                                                          "long_side": 96}
        r = client.post("/v1/grade", files={"front": ("f.jpg", front), "back": ("b.jpg", back)},
                        data={"device": json.dumps(INFO), "heatmaps": "true"})
        assert r.status_code == 200, r.text
        assert r.json()["parts"]["screen"]["heatmap_png"]


def test_crop_views_are_checked(capsys):
    assert parse_views("back") == ["back"]
    assert parse_views(" front , back,front") == ["front", "back"]
    for bad in ("", "side", "front,side"):
        with pytest.raises(ValueError, match="expected front, back"):
            parse_views(bad)
    base = ["export", "--vision", "v", "--tabular", "t", "--fusion", "f", "--out", "o",
            "--localiser", "loc"]
    args = build_parser().parse_args([*base, "--crop-views", "back"])
    assert (args.localiser, args.crop_views, args.crop_long_side) == (Path("loc"), ["back"], 448)
    with pytest.raises(SystemExit) as e:
        build_parser().parse_args([*base, "--crop-views", "side"])
    assert e.value.code == 2 and "side: expected front, back" in capsys.readouterr().err


def test_an_int8_localiser_is_calibrated_on_its_training_photos(bundle, localiser_run,
                                                                tmp_path, synth_dir):
    """``export --int8 --localiser``: the localiser is quantised too, calibrated on the photos
    it trained on, its corner change recorded; it localises like the fp32 one."""
    out = tmp_path / "b"
    shutil.copytree(bundle, out)
    add_localiser(out, _localiser(localiser_run[0], tmp_path, 0.0), ["front"], 96, int8=True)
    q = load_bundle_manifest(out).crop.localiser["int8"]  # type: ignore[union-attr]
    assert q["calibration_photos"] == 48  # the 24 training devices, both sides
    assert 0 < q["corner_change_mean"] <= q["corner_change_max"] < 0.5
    assert (out / LOCALISER_FILE).read_bytes() != (localiser_run[0] / LOCALISER_FILE).read_bytes()
    assert verify_bundle(out)["ok"]
    row = load_manifest(synth_dir / "manifest.csv").rows[0]
    assert Grader(out, threads=1).decode(row.front_path, view="front").crop is not None
    moved = tmp_path / "moved"
    shutil.copytree(localiser_run[0], moved)
    cfg = json.loads((moved / "localiser.json").read_text())
    cfg["training"]["manifests"] = [str(tmp_path / "gone.csv")]
    (moved / "localiser.json").write_text(json.dumps(cfg))
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    with pytest.raises(LocaliserError, match=r"gone\.csv\) are not here to calibrate"):
        add_localiser(out, moved, ["front"], 96, int8=True)
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before  # nothing written
