"""``train photocheck`` end to end on a tiny scale: export, int8, heads, figures, bundle."""

from __future__ import annotations

import csv
import shutil

import numpy as np
import pytest

from fusion.bundle import PHOTOCHECK_FILE, PHOTOCHECK_HEADS_FILE, verify_bundle
from serve.runtime import Grader
from training.manifest import load_manifest
from training.photocheck_data import front_cracked
from training.photocheck_train import CRACKED_WEIGHT, fit_cracked
from vision.photocheck import PhotoCheckConfig, SideHeads, blend_cracked


@pytest.fixture(scope="module")
def checked_bundle(bundle, synth_dir, tmp_path_factory):
    from training.photocheck_cli import train_photocheck

    base = tmp_path_factory.mktemp("photocheck")
    out = base / "bundle"
    shutil.copytree(bundle, out)
    real = base / "real.csv"  # synthetic fronts standing for two "real" sources
    with real.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["device_id", "front_path", "screen_condition", "source"])
        for i, row in enumerate(load_manifest(synth_dir / "manifest.csv").rows):
            w.writerow([f"d{i}", row.front_path, "|".join(sorted(row.screen or ())),
                        "alpha" if i % 2 else "beta"])
    report = train_photocheck(out, real, synth_dir / "manifest.csv",
                              synth_dir / "manifest.csv", size=64, n_synth=12, n_negative=10,
                              n_held=8, progress=False)
    return out, report


def test_the_check_is_added_to_the_bundle_with_its_figures(checked_bundle):
    out, report = checked_bundle
    assert (out / PHOTOCHECK_FILE).is_file() and (out / PHOTOCHECK_HEADS_FILE).is_file()
    assert verify_bundle(out)["ok"]  # new files hashed, the manifest consistent
    assert set(report["real_fronts_leave_one_source_out"]) == {"alpha", "beta"}
    for held in report["real_fronts_leave_one_source_out"].values():  # the probe alone
        probe = held["cracked_probe"]
        assert probe is None or (0 <= probe["roc_auc"] <= 1 and probe["n"] > 0)
    held = report["held_out"]
    assert held["dark_real_fronts"]["expected"] == "too_dark"
    assert held["dark_real_fronts"]["rate"] == 1.0, held["dark_real_fronts"]
    assert report["cpu_one_thread"]["total_ms"] > 0
    assert (out.parent / "bundle.photocheck.json").is_file()


def test_the_runtime_scores_each_photo_with_the_bundles_heads(checked_bundle, synth_dir):
    out, _ = checked_bundle
    g = Grader(out, threads=1)
    assert g.info()["photo_check_model"] is True
    row = load_manifest(synth_dir / "manifest.csv").rows[0]
    photos = [g.decode(row.front_path), g.decode(row.back_path)]
    verdicts = g.check_photos(photos, ["front", "back"], PhotoCheckConfig(min_side_px=0))
    assert [v.slot for v in verdicts] == ["front", "back"]
    for v in verdicts:
        assert v.scores is not None and 0 <= v.scores.phone <= 1
        assert len(v.stats.phash) == 16


def test_the_served_screen_blends_the_cracked_probe(checked_bundle, synth_dir):
    """The bundle's photo check carries the cracked-screen probe; a grade's screen
    probabilities are the model's with the probe's P(cracked) blended in at the bundle's
    weight, the same whether the photos were scored with their decoding or not."""
    out, _ = checked_bundle
    g = Grader(out, threads=1)
    assert g.side_heads.has_cracked and g.cracked_weight == CRACKED_WEIGHT
    assert g.info()["cracked_probe_weight"] == CRACKED_WEIGHT
    row = load_manifest(synth_dir / "manifest.csv").rows[0]
    front, back = g.decode(row.front_path), g.decode(row.back_path)
    screen, shell, _ = g.run_vision(np.stack([front.x, back.x]))
    own = g.part_probs(screen[0], shell[1])["screen"]
    (scores,) = g.side_scores([front]) or []
    assert scores.cracked is not None and 0 <= scores.cracked <= 1
    info = row.device_info()
    assert info is not None
    result = g.grade(row.front_path, row.back_path, info)
    served = np.array(list(result.parts["screen"].probabilities.values()))
    assert served == pytest.approx(blend_cracked(own, scores.cracked, CRACKED_WEIGHT), abs=1e-6)
    scored = g.decode(row.front_path, scored=True)  # as the service decodes a checked photo
    assert g.cracked_probe(scored) == pytest.approx(scores.cracked)
    # evaluate bundle scores the served probabilities: T log p gives them back
    t = g.temperatures["screen"]
    z = g.served_screen_logits(front, screen[0]) / t
    assert np.exp(z) / np.exp(z).sum() == pytest.approx(served, abs=1e-5)


def test_fit_cracked_learns_from_labelled_fronts_and_leaves_unknown_ones_out():
    rng = np.random.default_rng(0)
    real = rng.normal(size=(40, 3))
    real_y = (real[:, 0] > 0).astype(np.int8)
    real_y[:5] = -1  # coarse labels that mix cracked and not
    synth = rng.normal(size=(20, 3))
    synth_y = (synth[:, 0] > 0).astype(np.int8)
    coef, intercept = fit_cracked(real, real_y, synth, synth_y, c=1.0)
    assert coef.shape == (3,) and intercept.shape == (1,)
    assert coef[0] > 5 * max(abs(coef[1]), abs(coef[2]))  # the informative feature
    coef0, _ = fit_cracked(real, real_y, synth[:0], synth_y[:0], c=1.0)  # no synthetic fronts
    assert coef0[0] > 0


def test_front_cracked_reads_exact_and_coarse_screen_labels(tmp_path):
    for name in "abcd":
        (tmp_path / f"{name}.jpg").write_bytes(b"")  # the loader checks that files exist
    m = tmp_path / "m.csv"
    m.write_text("device_id,front_path,screen_condition\n"
                 "a,a.jpg,cracked\nb,b.jpg,flawless|light_scratches\n"
                 "c,c.jpg,heavy_scratches|cracked\nd,d.jpg,\n")
    assert front_cracked(m).tolist() == [1, 0, -1, -1]


def test_a_bundle_whose_heads_lack_the_probe_serves_the_models_screen(checked_bundle, synth_dir,
                                                                      tmp_path):
    """Heads saved before the probe existed (no cracked_coef): nothing is blended, whatever
    the manifest's weight says."""
    out, _ = checked_bundle
    old = tmp_path / "old"
    shutil.copytree(out, old)
    heads = SideHeads.load(old / PHOTOCHECK_HEADS_FILE)
    SideHeads({k: v for k, v in heads.arrays.items()
               if k not in SideHeads.CRACKED_KEYS}).save(old / PHOTOCHECK_HEADS_FILE)
    g = Grader(old, threads=1, verify_hashes=False)
    assert g.cracked_weight == 0
    row = load_manifest(synth_dir / "manifest.csv").rows[0]
    front = g.decode(row.front_path, scored=True)
    assert front.scores is not None and front.scores.cracked is None
    assert g.cracked_probe(front) is None
