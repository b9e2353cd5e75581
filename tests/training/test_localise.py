"""The device localiser: a tiny training, ONNX export and parity, the torch-free runtime's
coordinates, ``evaluate localiser`` and its one-line errors (issue 19, item 2)."""

from __future__ import annotations

import io
import json
import shutil

import numpy as np
import pytest
from PIL import Image

from fusion.bundle import PARITY_TOL
from photograde.cli import main
from training.localise_eval import corner_error
from training.manifest import load_manifest
from vision.geometry import DeviceGeometry, Quad
from vision.localise import CONFIG_FILE, LOCALISER_FILE, Localisation, Localiser, LocaliserError
from vision.preprocess import NotAnImage


@pytest.fixture(scope="module")
def run(localiser_run):
    """The session's tiny localiser (tests/conftest.py)."""
    return localiser_run


def test_training_writes_an_onnx_localiser_with_torch_parity(run):
    out, config = run
    assert (out / LOCALISER_FILE).is_file() and (out / CONFIG_FILE).is_file()
    assert 0 <= config["parity_max_abs_diff"] <= PARITY_TOL
    assert config["presence_head"] is True
    assert config["training"]["photos"] == {"front": 24, "back": 24, "none": 4}
    assert json.loads((out / CONFIG_FILE).read_text())["preprocess"]["img_size"] == 64


def test_runtime_returns_four_corners_in_the_photos_pixels(run, synth_dir):
    loc = Localiser(run[0] / LOCALISER_FILE)  # the .onnx file works as well as its folder
    row = load_manifest(synth_dir / "manifest.csv").rows[0]
    photo = Image.open(row.front_path).convert("RGB")
    small = loc.localise(row.front_path)
    assert (small.width, small.height) == photo.size
    assert len(small.device.corners) == 4
    assert small.probability is not None and 0 <= small.probability <= 1
    # The same photo at twice the size: the same input to the model, corners twice as far.
    buf = io.BytesIO()
    photo.resize((2 * photo.width, 2 * photo.height)).save(buf, "PNG")
    big = loc.localise(buf.getvalue())
    assert (big.width, big.height) == (2 * photo.width, 2 * photo.height)
    np.testing.assert_allclose(big.device.points(), 2 * small.device.points(),
                               atol=0.03 * photo.width)


def test_corner_error_is_a_fraction_of_the_diagonal():
    truth = DeviceGeometry(width=400, height=400, device=Quad.from_points(
        [(100, 100), (300, 100), (300, 300), (100, 300)], 400, 400))
    shifted = Localisation(width=800, height=800, found=True, probability=None,
                           device=Quad.from_points([(x * 2 + 20, y * 2) for x, y in
                                                    truth.device.points()], 800, 800))
    assert corner_error(shifted, truth) == pytest.approx(20 / (400 * 2 ** 0.5))


def test_evaluate_prints_its_figures(run, synth_dir, tmp_path, capsys):
    report = tmp_path / "eval.json"
    assert main(["evaluate", "localiser", "--model", str(run[0]), "--manifest",
                 str(synth_dir / "manifest.csv"), "--negatives", "3", "--quiet",
                 "--out", str(report)]) == 0
    out = capsys.readouterr().out
    for side in ("front", "back", "all"):
        assert f"{side:5s}    {24 if side != 'all' else 48} photos: mean corner error" in out
    assert "no phone: 3 scenes, found in" in out
    figures = json.loads(report.read_text())["sides"]["all"]
    assert figures["photos"] == 48 and 0 <= figures["under_5pct"] <= figures["under_10pct"] <= 1


def test_bad_inputs_are_one_line_errors(run, synth_dir, tmp_path, capsys):
    with pytest.raises(NotAnImage):
        Localiser(run[0]).localise(b"not a photo")
    assert main(["evaluate", "localiser", "--model", str(tmp_path), "--manifest",
                 str(synth_dir / "manifest.csv")]) == 2
    assert "no localiser model" in capsys.readouterr().err
    bare = tmp_path / "bare"
    bare.mkdir()
    shutil.copy(run[0] / LOCALISER_FILE, bare / LOCALISER_FILE)
    with pytest.raises(LocaliserError, match="config"):
        Localiser(bare)
    (bare / CONFIG_FILE).write_text("{}")
    with pytest.raises(LocaliserError, match="not a localiser config"):
        Localiser(bare)
    plain = tmp_path / "plain.csv"  # a manifest without a geometry sidecar
    plain.write_text((synth_dir / "manifest.csv").read_text().replace(
        "images/", str(synth_dir / "images") + "/"))
    for command in (["train", "localiser", "--out", str(tmp_path / "r"), "--epochs", "1",
                     "--img-size", "64", "--quiet"], ["evaluate", "localiser", "--model",
                                                       str(run[0]), "--quiet"]):
        assert main([*command, "--manifest", str(plain)]) == 2
        err = capsys.readouterr().err.strip()
        assert "has a device outline" in err and len(err.splitlines()) == 1


def test_crop_manifest_writes_every_photo_cut_to_the_device(run, synth_dir, tmp_path):
    """scripts/crop-manifest's work: the same rows and labels, each photo replaced by its
    crop (a photo without a device found keeps its whole photo), counted in crops.json; each
    row keeps its photo's source; with ``with_whole``, mixed.csv has the whole photos' rows
    then the crops' (ids suffixed)."""
    from training.crop_data import crop_manifest
    from training.manifest import CROP_SUFFIX

    counts = crop_manifest(synth_dir / "manifest.csv", run[0], tmp_path / "crops",
                           long_side=96, workers=1, with_whole=True)
    source, cropped = (load_manifest(p).rows for p in (synth_dir / "manifest.csv",
                                                        tmp_path / "crops" / "manifest.csv"))
    assert counts["photos"] == 2 * len(source) == 48
    assert json.loads((tmp_path / "crops" / "crops.json").read_text())["found"] == \
        counts["found"]
    assert [(r.device_id, r.screen, r.shell, r.grade) for r in cropped] == \
        [(r.device_id, r.screen, r.shell, r.grade) for r in source]
    for row in cropped:
        for path in (row.front_path, row.back_path):
            assert path is not None and path.parent == tmp_path / "crops" / "images"
            with Image.open(path) as im:
                assert im.format == "JPEG" and max(im.size) == 96
    assert {r.source for r in cropped} == {"synth"}  # from synth-000000_front.jpg
    mixed = load_manifest(tmp_path / "crops" / "mixed.csv").rows
    assert [r.device_id for r in mixed] == [r.device_id for r in source] + [
        r.device_id + CROP_SUFFIX for r in cropped]
    assert [(r.front_path, r.back_path) for r in mixed] == [
        (r.front_path, r.back_path) for r in (*source, *cropped)]
    assert [(r.screen, r.shell, r.source) for r in mixed] == [
        (r.screen, r.shell, "synth") for r in (*source, *cropped)]


def test_crop_manifest_of_one_view_keeps_the_other_whole(run, synth_dir, tmp_path):
    """``views=("front",)``, what a bundle cropping the front only serves: the manifest's backs
    are the original photos; mixed.csv's crop rows carry the front crops alone, so a model
    trained on it never sees the same back twice an epoch."""
    from training.crop_data import crop_manifest
    from training.manifest import CROP_SUFFIX

    out = tmp_path / "fronts"
    counts = crop_manifest(synth_dir / "manifest.csv", run[0], out, long_side=96, workers=1,
                           with_whole=True, views=("front",))
    source, cropped = (load_manifest(p).rows for p in (synth_dir / "manifest.csv",
                                                        out / "manifest.csv"))
    assert counts["photos"] == len(source) == len(list((out / "images").iterdir()))
    assert json.loads((out / "crops.json").read_text())["views"] == ["front"]
    for src, row in zip(source, cropped, strict=True):
        assert row.front_path is not None and row.front_path.parent == out / "images"
        assert row.back_path is not None and src.back_path is not None
        assert row.back_path.resolve() == src.back_path.resolve()
    crops = [r for r in load_manifest(out / "mixed.csv").rows
             if r.device_id.endswith(CROP_SUFFIX)]
    assert len(crops) == len(source)
    assert all(r.back_path is None and r.front_path is not None for r in crops)


def test_localiser_as_check_prints_one_row_per_set(run, synth_dir):
    """scripts/localiser-as-check: the localiser's "found" and the device's size beside the
    photo check's verdicts, one table row per set (phones with sizes, no-phone sets without)."""
    import subprocess
    import sys

    r = subprocess.run([sys.executable, "scripts/localiser-as-check", "--localiser",
                        str(run[0]), "--synthetic", str(synth_dir / "manifest.csv"),
                        "--real", str(synth_dir / "manifest.csv"), "--n", "3"],
                       capture_output=True, text=True, timeout=300, check=True)
    rows = {line.split(" | ")[0][2:]: line.split(" | ") for line in r.stdout.splitlines()
            if line.startswith("| ") and not line.startswith("| photos")}
    assert list(rows) == ["real fronts", "synthetic fronts", "synthetic backs",
                          "natural photo crops", "empty scenes", "screen contents"]
    assert rows["real fronts"][1] == "24" and rows["synthetic backs"][1] == "3"
    assert rows["synthetic fronts"][5].count(" / ") == 1  # the device's size, p5 / p50
    assert rows["empty scenes"][5] == "-"
    assert "real fronts: " in r.stdout and "refused by device size: < 64 px" in r.stdout
