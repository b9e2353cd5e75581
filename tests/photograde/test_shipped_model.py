"""The shipped model, ``models/photograde-base``: intact, small enough, served by default,
documented, and grading real photos the way its card says."""

from __future__ import annotations

import csv
import json

import pytest

from fusion.bundle import BASE_MODEL, load_manifest, verify_bundle
from photograde.cli import main
from serve.settings import SHIPPED_BUNDLE, Settings
from tabular.schema import parse_device_info
from tests.conftest import REAL_SCREENS
from tests.support import INFO
from vision.photocheck import SideHeads

MAX_MB = 40


def test_the_shipped_bundle_verifies_and_is_the_default(capsys):
    assert verify_bundle(SHIPPED_BUNDLE)["ok"]
    assert main(["bundle", "verify", str(SHIPPED_BUNDLE)]) == 0
    manifest = load_manifest(SHIPPED_BUNDLE)
    assert manifest.model_name == BASE_MODEL and manifest.kind == "base" and not manifest.demo
    assert manifest.vision.int8 is not None
    # the photo check's cracked-screen probe is blended into the served screen
    assert manifest.photocheck is not None and manifest.photocheck.cracked_weight > 0
    assert SideHeads.load(SHIPPED_BUNDLE / manifest.photocheck.heads).has_cracked
    assert Settings().bundle == SHIPPED_BUNDLE
    size = sum(f.stat().st_size for f in SHIPPED_BUNDLE.iterdir()) / 2**20
    assert size <= MAX_MB
    card = (SHIPPED_BUNDLE / "MODEL_CARD.md").read_text()
    for heading in ("Intended use", "Training data", "Metrics", "Grades a user sees",
                    "leave one source out", "Known limits", "Fine-tune"):
        assert heading in card


def test_the_demo_serves_the_shipped_model_unless_told_otherwise(tmp_path, bundle):
    from photograde.demo import demo_bundle

    assert demo_bundle(tmp_path, None, train=False) == SHIPPED_BUNDLE
    assert demo_bundle(tmp_path, bundle, train=False) == bundle


def test_the_shipped_model_loads_for_fine_tuning():
    from training.vision_run import load_run

    _, config, temps = load_run(SHIPPED_BUNDLE)
    assert config["img_size"] == load_manifest(SHIPPED_BUNDLE).vision.input_size
    assert set(temps) == {"screen", "shell"}


@pytest.mark.skipif(not REAL_SCREENS.is_dir(), reason="../shared/data/real-screens not here")
def test_the_shipped_model_grades_obvious_real_cracks_broken_and_intact_fronts_sellable(
        synth_dir):
    """20 real fronts of each label with a flawless synthetic back and a passing checklist
    (a smoke check; the card's figures come from evaluate bundle on photos never trained on)."""
    from serve.runtime import Grader

    grader = Grader(SHIPPED_BUNDLE, threads=1)
    rows = list(csv.DictReader((synth_dir / "manifest.csv").open()))
    back = next(synth_dir / r["back_path"] for r in rows if r["shell_condition"] == "flawless")
    info = parse_device_info(json.dumps(INFO))
    real = list(csv.DictReader((REAL_SCREENS / "manifest.csv").open()))
    broken = {}
    for label in ("cracked", "intact"):
        photos = [REAL_SCREENS / r["path"] for r in real if r["label"] == label][:20]
        grades = [grader.grade(p, back, info).grade for p in photos]
        broken[label] = grades.count("broken")
    assert broken["cracked"] >= 18 and broken["intact"] <= 2, broken


def test_the_shipped_models_reasons_always_imply_its_grade(tmp_path_factory):
    """1,000 synthetic devices (small photos, a seed never trained on) and, when present, every
    shared real front: the grade re-derived from the shown reasons is the grade."""
    from fusion.explain_check import contradictions
    from serve.runtime import Grader
    from training.manifest import load_manifest
    from training.synth.generate import default_workers, generate

    grader = Grader(SHIPPED_BUNDLE, threads=2)
    devices = generate(1000, tmp_path_factory.mktemp("contra"), seed=4242, size=256,
                       workers=default_workers(), progress=False)
    info = parse_device_info(json.dumps(INFO))
    bad = []
    rows = load_manifest(devices).rows
    for row in rows:
        result = grader.grade(row.front_path, row.back_path, row.device_info() or info,
                              row.refurbisher_grade)
        bad += contradictions(result, grader.policy)
    if REAL_SCREENS.is_dir():
        real = list(csv.DictReader((REAL_SCREENS / "manifest.csv").open()))
        for r in real:
            bad += contradictions(grader.grade(REAL_SCREENS / r["path"], rows[0].back_path, info),
                                  grader.policy)
    assert not bad, bad[:5]
