"""``evaluate photocheck`` on a labelled folder, with the shipped bundle (torch-free)."""

from __future__ import annotations

import json
import shutil

import pytest
from PIL import Image

from photograde.check_eval import CheckEvalError, evaluate_photocheck
from photograde.cli import main
from serve.settings import SHIPPED_BUNDLE
from tests.conftest import REAL_SCREENS


def test_each_folder_is_judged_by_its_expected_answer(tmp_path, capsys):
    (tmp_path / "too_dark").mkdir()
    Image.new("RGB", (640, 480)).save(tmp_path / "too_dark" / "black.jpg")
    (tmp_path / "too_small").mkdir()
    Image.new("RGB", (80, 60), (200, 120, 90)).save(tmp_path / "too_small" / "tiny.png")
    (tmp_path / "front").mkdir()
    fronts = sorted((REAL_SCREENS / "images" / "intact").glob("*.jpg"))[:6]
    for f in fronts:
        shutil.copy(f, tmp_path / "front" / f.name)
    (tmp_path / "ignored").mkdir()  # not a label: left out
    report = evaluate_photocheck(SHIPPED_BUNDLE, tmp_path, tmp_path / "r.json", progress=False)
    folders = report["folders"]
    assert set(folders) == {"front", "too_dark", "too_small"}
    assert folders["too_dark"]["front_slot"]["rate"] == 1.0
    assert folders["too_small"]["front_slot"]["rate"] == 1.0
    assert report["photo_check_model"] is True
    assert json.loads((tmp_path / "r.json").read_text()) == report
    if fronts:  # the shared real photos, when this checkout has them
        assert folders["front"]["back_slot"]["expected"] == "wrong_side"
        assert folders["front"]["front_slot"]["n"] + folders["front"]["front_slot"][
            "too_small_set_apart"] == len(fronts)
    assert main(["evaluate", "photocheck", "--bundle", str(SHIPPED_BUNDLE), "--folder",
                 str(tmp_path), "--quiet"]) == 0
    assert "too_dark" in capsys.readouterr().out


def test_a_folder_without_labelled_sub_folders_is_refused(tmp_path):
    with pytest.raises(CheckEvalError, match="no sub-folder named"):
        evaluate_photocheck(SHIPPED_BUNDLE, tmp_path, progress=False)
