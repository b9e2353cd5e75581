"""``photograde evaluate robustness``: degraded copies of labelled fronts through the served
path (the shipped bundle, torch-free): refused, right or silently wrong."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import pytest

from photograde.cli import main
from photograde.robustness_eval import (
    DEGRADATIONS,
    RobustnessError,
    degraded_bytes,
    evaluate_robustness,
)
from serve.settings import SHIPPED_BUNDLE


def _fronts(synth_dir: Path, out: Path, n: int = 8) -> Path:
    """Synthetic fronts as a coarse cracked / not cracked manifest, and one unsure label."""
    rows = list(csv.DictReader((synth_dir / "manifest.csv").open()))[:n]
    path = out / "fronts.csv"
    with path.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["device_id", "front_path", "screen_condition"])
        for r in rows:
            label = ("cracked" if r["screen_condition"] == "cracked"
                     else "flawless|light_scratches|heavy_scratches")
            w.writerow([r["device_id"], str(synth_dir / r["front_path"]), label])
        w.writerow(["unsure", str(synth_dir / rows[0]["front_path"]), "heavy_scratches|cracked"])
    return path


def test_each_level_is_refused_or_judged(synth_dir, tmp_path, capsys):
    manifest = _fronts(synth_dir, tmp_path)
    report = evaluate_robustness(SHIPPED_BUNDLE, [manifest], tmp_path / "r.json", int8=True,
                                 only=["jpeg", "noise"], progress=False)
    assert report["photos"] == 8  # the unsure label is left out
    rows = {(r["degradation"], r["level"]): r for r in report["results"]}
    assert list(rows) == [("none", 0.0), *((n, lv) for n in ("jpeg", "noise")
                                           for lv in DEGRADATIONS[n][2])]
    for r in rows.values():
        refused = sum(r["refused"].values())
        assert r["accepted"] + refused == 8
        wrong = r["cracked_missed"] + r["intact_called_cracked"]
        assert r["silently_wrong"] == pytest.approx(wrong / 8, abs=1e-4)
    assert rows[("jpeg", 10)]["refused"].get("compressed") == 8  # every copy, before grading
    assert rows[("none", 0.0)]["refused"].get("compressed") is None
    assert json.loads((tmp_path / "r.json").read_text()) == report
    assert main(["evaluate", "robustness", "--bundle", str(SHIPPED_BUNDLE), "--manifest",
                 str(manifest), "--only", "rotate", "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "| rotate | 90 |" in out and "| none | 0 |" in out


def test_the_degradations_are_repeatable_and_do_what_they_say(synth_dir):
    from PIL import Image

    path = next(synth_dir.glob("images/*_front.jpg"))
    assert degraded_bytes(path, "noise", 0.06) == degraded_bytes(path, "noise", 0.06)
    original = Image.open(path)
    turned = Image.open(io.BytesIO(degraded_bytes(path, "rotate", 90)))
    assert turned.size == original.size[::-1]
    small = Image.open(io.BytesIO(degraded_bytes(path, "downscale", 0.5)))
    assert small.width == round(original.width * 0.5)


def test_bad_requests_are_named(synth_dir, tmp_path, capsys):
    manifest = _fronts(synth_dir, tmp_path)
    with pytest.raises(RobustnessError, match=r"unknown degradation.*fog"):
        evaluate_robustness(SHIPPED_BUNDLE, [manifest], only=["fog"], progress=False)
    shells = tmp_path / "shells.csv"
    shells.write_text("device_id,back_path,shell_condition\n"
                      f"a,{next(synth_dir.glob('images/*_back.jpg'))},flawless\n")
    assert main(["evaluate", "robustness", "--bundle", str(SHIPPED_BUNDLE), "--manifest",
                 str(shells), "--quiet"]) == 2
    assert "no front labelled cracked or not" in capsys.readouterr().err
