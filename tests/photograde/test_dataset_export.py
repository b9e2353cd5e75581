"""``photograde dataset export`` on a history seeded through the real workflow
(tests/photograde/conftest.py): which final grades count as truth, what is skipped and why,
the photos, the part labels (declared, implied by the policy, sound), ``manifest check``, and
training the tabular and fusion models on the export as it is."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from collections import Counter
from pathlib import Path

import pytest
from sqlalchemy import select

from fusion.policy import load_policy
from photograde import history
from photograde.cli import main
from photograde.dataset_export import PhotoCopier, export_dataset, part_labels
from serve.db import Database
from serve.models import Evaluation
from serve.photostore import LocalPhotoStore
from tabular.schema import CHECKS
from tests.support import STORE_KINDS, photo_store
from training.manifest import load_manifest

POLICY = load_policy("marketplace")


@pytest.fixture(scope="module")
def exported(workflow_history, tmp_path_factory):
    out = tmp_path_factory.mktemp("export")
    db = Database(workflow_history.url)
    summary = export_dataset(db, LocalPhotoStore(workflow_history.photo_dir), out, progress=False)
    with db.read() as s:
        evaluations = {e.id: e for e in s.scalars(select(Evaluation))}
    db.dispose()
    manifest = load_manifest(out / "manifest.csv", POLICY)
    return out, summary, manifest, evaluations


def test_export_counts_every_evaluation_once(exported):
    out, summary, manifest, evaluations = exported
    by_status = Counter(e.status for e in evaluations.values())
    assert summary.evaluations == len(evaluations)
    assert summary.rows == len(manifest) == by_status["listed"]
    assert summary.rows + sum(summary.skipped.values()) == len(evaluations)
    assert summary.skipped["suggestion_unanswered"] == by_status["awaiting_refurbisher"]
    assert summary.skipped["justification_missing"] == by_status["awaiting_justification"]
    in_review = [e for e in evaluations.values() if e.status == "in_review"]
    assert summary.skipped["inconclusive_without_review"] == sum(
        e.decision == "inconclusive" for e in in_review) >= 1
    resolutions = Counter(e.resolution for e in evaluations.values() if e.status == "listed")
    for source, resolution in (("override", "overridden"), ("approve", "approved"),
                               ("validated", "validated"), ("accepted", "accepted")):
        assert summary.truth[source] == resolutions[resolution] >= 1, source
    kept = summary.truth["kept"] + summary.truth["kept_returned"] + \
        summary.truth["kept_window_open"]
    assert kept == resolutions["kept"]
    assert summary.truth["kept_returned"] >= 1 and summary.truth["kept_window_open"] >= 1
    assert json.loads((out / "export.json").read_text()) == summary.model_dump(mode="json")


def test_final_grades_returns_and_labels_of_the_api_cases(exported, workflow_history):
    manifest = exported[2]
    rows = {r.device_id: r for r in manifest.rows}
    cases = workflow_history.cases
    for name in ("unanswered", "no_justification", "inconclusive_open"):
        assert cases[name]["id"] not in rows, name
    accepted = rows[cases["accepted"]["id"]]
    assert accepted.grade == cases["accepted"]["predicted_grade"] == accepted.refurbisher_grade
    returned = rows[cases["kept_returned"]["id"]]  # kept, then returned: not a truth
    assert (returned.grade, returned.returned) == (None, True)
    assert returned.return_reason == "cosmetic_worse_than_described"
    assert returned.refurbisher_grade == cases["kept_returned"]["refurbisher_grade"]
    still_open = rows[cases["kept_open"]["id"]]  # listed today: its return window is open
    assert (still_open.grade, still_open.returned) == (None, None)
    assert rows[cases["approved"]["id"]].grade == cases["approved"]["refurbisher_grade"]
    unsure = cases["inconclusive_approved"]
    assert rows[unsure["id"]].grade == unsure["refurbisher_grade"]
    # the reviewer's grade "good" contradicts the declared cracked screen (capped at broken):
    # that label is dropped, the policy implies a flawless screen; the light wear stays
    over = rows[cases["overridden"]["id"]]
    assert over.grade == "good" and over.refurbisher_id == over.source == "R900"
    assert (over.screen, over.shell) == ({"flawless"}, {"light_wear"})
    validated = rows[cases["validated_declared"]["id"]]
    assert validated.screen == {"flawless"}
    assert validated.listed_at == dt.datetime.now(dt.UTC).date()


def test_photos_are_the_stored_ones(exported):
    out, summary, manifest, evaluations = exported
    for row in manifest.rows:
        ev = evaluations[row.device_id]
        for path, digest in ((row.front_path, ev.front_sha256), (row.back_path, ev.back_sha256)):
            assert path is not None and path.parent == (out / "images").resolve()
            assert path.stem == digest == hashlib.sha256(path.read_bytes()).hexdigest()
    assert summary.photos.get("linked", 0) + summary.photos.get("copied", 0) > 0


def test_implied_part_labels_are_sound(exported, workflow_history):
    """Where the final grade is the device's true grade (the synthetic manifest knows it),
    every implied label contains the true condition; and no label allows a condition whose
    cap is worse than the final grade."""
    _, summary, manifest, evaluations = exported
    truth = {r.device_id: r for r in load_manifest(workflow_history.synth_manifest).rows}
    checked = 0
    for row in manifest.rows:
        ev = evaluations[row.device_id]
        for part in ("screen", "shell"):
            allowed = row.condition(part)
            if allowed is None or row.grade is None:
                continue
            caps = POLICY.part_caps[part]
            assert all(POLICY.rank(caps[c]) <= POLICY.rank(row.grade) for c in allowed)
            true = truth.get(ev.device_ref or "")
            if true is not None and true.grade == row.grade:
                assert true.exact_condition(part) in allowed, (row.device_id, part)
                checked += 1
    assert checked >= 20
    assert summary.part_labels["screen"]["implied"] > 0
    assert summary.declared_conflicts == 1


def test_part_labels_from_the_grade_alone():
    ev = Evaluation(checks=dict.fromkeys(CHECKS, True), battery_health_pct=90,
                    declared_screen=None, declared_shell="flawless")
    # a fair grade with a flawless shell and a working device: only the screen explains it
    labels, kinds, conflicts = part_labels(POLICY, "fair", ev)
    assert labels["screen"] == {"light_scratches"} and kinds["screen"] == "implied"
    assert labels["shell"] == {"flawless"} and conflicts == 0
    ev.declared_shell = None
    labels, kinds, _ = part_labels(POLICY, "fair", ev)  # either part may explain it
    assert labels["screen"] == {"flawless", "light_scratches"}
    assert labels["shell"] == {"flawless", "light_wear", "heavy_wear"}
    ev.checks = {**ev.checks, "wifi": False}  # a failed check caps at broken: the grade
    labels, kinds, _ = part_labels(POLICY, "broken", ev)  # says nothing of the parts
    assert labels == {"screen": None, "shell": None} and set(kinds.values()) == {"unknown"}
    labels, _, _ = part_labels(POLICY, "good", ev)  # a grade that ignores the policy
    assert labels == {"screen": None, "shell": None}
    labels, _, _ = part_labels(None, "good", ev)  # no policy known: declared only
    assert labels == {"screen": None, "shell": None}


def test_the_export_passes_manifest_check_and_trains(exported, bundle, tmp_path, capsys):
    from training.fusion_train import train_fusion
    from training.tabular_train import train_tabular

    out, summary, manifest, _ = exported
    assert main(["manifest", "check", str(out / "manifest.csv"), "--grading",
                 "marketplace"]) == 0
    assert f"{summary.rows}" in capsys.readouterr().out
    tab = train_tabular([out / "manifest.csv"], tmp_path / "t")
    assert tab["data"]["rows"] == sum(r.returned is not None for r in manifest.rows) >= 20
    assert tab["data"]["returns"] >= 2
    fus = train_fusion([str(out / "manifest.csv")], bundle.parent / "v", tmp_path / "t",
                       tmp_path / "f", cache_dir=tmp_path / "cache")
    # fusion rows: a final grade and a screen label (declared or implied)
    assert fus["metrics"]["rows"] == sum(r.grade is not None and r.screen is not None
                                         for r in manifest.rows) >= 10
    assert (tmp_path / "f" / "fusion.json").is_file()
    # the return-risk model learns from the stored photos as the bundle sees them, and from
    # the sellers' trust on each listing day
    from photograde.return_risk import train_return_risk

    risk = train_return_risk(bundle, [out / "manifest.csv"], tmp_path / "rr", progress=False)
    assert risk["evidence"] is True and risk["data"]["rows"] == tab["data"]["rows"]


def test_vision_trains_on_the_export(exported, workflow_history, tmp_path):
    """One short epoch on the exported photos and their declared or implied labels."""
    from training.vision_train import TrainConfig, train_vision

    if not workflow_history.url.startswith("sqlite"):
        pytest.skip("the manifest does not depend on the database (run with SQLite)")
    out = exported[0]
    train_vision(TrainConfig(manifests=[str(out / "manifest.csv")], out=str(tmp_path / "v"),
                             img_size=64, epochs=1, batch_size=8, workers=0, progress=False,
                             cache_dir=str(tmp_path / "cache")))
    summary = json.loads((tmp_path / "v" / "summary.json").read_text())
    assert summary and (tmp_path / "v" / "best.pt").is_file()


def test_the_command_line(workflow_history, tmp_path, capsys):
    today = dt.datetime.now(dt.UTC).date().isoformat()
    args = ["dataset", "export", "--database", workflow_history.url, "--photo-dir",
            str(workflow_history.photo_dir), "--quiet"]
    assert main([*args, "--out", str(tmp_path / "e"), "--since", today, "--copy"]) == 0
    printed = capsys.readouterr().out
    assert "final grade used as truth:" in printed and "skipped:" in printed
    summary = json.loads((tmp_path / "e" / "export.json").read_text())
    db = Database(workflow_history.url)
    since = history.parse_when(today, "--since")
    listed = [e for e in history.iter_evaluations(db, since) if e.status == "listed"]
    db.dispose()
    assert summary["rows"] == len(listed) and summary["since"].startswith(today)
    assert summary["photos"] == {"copied": 2 * len(listed)}
    assert main([*args, "--out", str(tmp_path / "x"), "--since", today, "--until",
                 "2020-01-01"]) == 2
    assert "must be before --until" in capsys.readouterr().err
    empty = f"sqlite:///{tmp_path / 'empty.db'}"
    assert main(["dataset", "export", "--database", empty, "--out", str(tmp_path / "y")]) == 2
    assert "db upgrade" in capsys.readouterr().err
    assert not Path(tmp_path / "y" / "manifest.csv").exists()


def test_the_export_gives_a_bundle_its_production_reference(exported, bundle, tmp_path):
    """README, "Monitoring and alerts": the bundle's predicted grades on exported production
    devices become its reference distribution (drift)."""
    import shutil

    from fusion.bundle import load_manifest as load_bundle_manifest

    out, _, manifest, _ = exported
    mine = tmp_path / "bundle"
    shutil.copytree(bundle, mine)
    assert main(["evaluate", "bundle", "--bundle", str(mine), "--manifest",
                 str(out / "manifest.csv"), "--out", str(tmp_path / "e"), "--set-reference",
                 "--quiet"]) == 0
    ref = load_bundle_manifest(mine).reference
    assert ref is not None
    # every exported device, whether its grade is a truth or its parts are labelled or not
    assert ref.devices == len(manifest.rows) > 0
    assert set(ref.grade_distribution) == set(POLICY.grades)


@pytest.mark.parametrize("kind", STORE_KINDS)
def test_photos_are_copied_out_of_either_store(kind, tmp_path):
    store = photo_store(kind, tmp_path)
    jpeg, png = b"\xff\xd8\xff" + b"j" * 100, b"\x89PNG\r\n\x1a\n" + b"p" * 100
    digests = [store.put(jpeg), store.put(png)]
    copier = PhotoCopier(store, tmp_path / "out", copy=kind == "local")
    rels = [copier.place(d) for d in digests]
    assert rels == [f"images/{digests[0]}.jpg", f"images/{digests[1]}.png"]
    assert [(tmp_path / "out" / r).read_bytes() for r in rels if r] == [jpeg, png]
    assert copier.place(hashlib.sha256(b"absent").hexdigest()) is None
    assert [copier.place(d) for d in digests] == rels and copier.counts["present"] == 2
