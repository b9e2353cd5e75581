"""``photograde score`` on the tiny bundle: a manifest in this process and on a local Ray (one
CPU), the same table both ways and the service's grades; a rerun skips the rows already
scored; every stored evaluation of the seeded history (tests/photograde/conftest.py)."""

from __future__ import annotations

import csv
import importlib.util
import json
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from photograde.cli import main
from photograde.score import Engine, Scorer, manifest_source, read_scores, score
from tabular.schema import DeviceInfo
from tests.support import S3_ENV, s3_settings
from training.manifest import load_manifest

HAS_RAY = importlib.util.find_spec("ray") is not None
pytest.importorskip("pyarrow", reason="photograde score needs the [scale] extra (pyarrow)")


def _cli(*args: str) -> int:
    return main(["score", "--quiet", *args])


@pytest.fixture(scope="module")
def single(synth_dir, bundle, tmp_path_factory) -> Path:
    """The synthetic manifest scored in this process, one ONNX Runtime thread (as an actor)."""
    out = tmp_path_factory.mktemp("scores") / "single"
    assert _cli("--bundle", str(bundle), "--manifest", str(synth_dir / "manifest.csv"),
                "--out", str(out), "--engine", "single", "--threads", "1") == 0
    return out


@pytest.fixture(scope="module")
def local_ray() -> Iterator[None]:
    """One local Ray for the module: one CPU, no dashboard."""
    if not HAS_RAY:
        pytest.skip("Ray is not installed (the [scale] extra)")
    import ray

    ray.init(num_cpus=1, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


def test_a_manifest_in_one_process_gets_the_services_grades(single, synth_dir, grader):
    table = read_scores(single).to_pylist()
    rows = load_manifest(synth_dir / "manifest.csv").rows
    assert [r["id"] for r in table] == sorted(r.device_id for r in rows)
    by_id = {r.device_id: r for r in rows}
    for r in table[:6]:
        m = by_id[r["id"]]
        info = m.device_info()
        assert m.front_path and m.back_path and info is not None
        want = grader.grade(m.front_path, m.back_path, info, m.refurbisher_grade)
        assert (r["grade"], r["confidence"]) == (want.grade, pytest.approx(want.confidence))
        assert r["decision"] == str(want.decision) and r["error"] is None
        assert r["screen_condition"] == want.parts["screen"].condition
        assert json.loads(r["grade_probabilities"]) == pytest.approx(want.grade_probabilities)
        assert r["bundle_version"] == grader.manifest.bundle_version


def test_a_manifest_ignores_the_services_photo_store(synth_dir, bundle, tmp_path, monkeypatch):
    """A manifest names its photos by path: an S3 photo store in the environment (the
    service's) is not where they are."""
    monkeypatch.setenv("PHOTOGRADE_PHOTO_STORE", "s3://bucket/photos")
    out = tmp_path / "scores"
    assert _cli("--bundle", str(bundle), "--manifest", str(synth_dir / "manifest.csv"),
                "--out", str(out), "--engine", "single", "--threads", "1") == 0
    rows = read_scores(out).to_pylist()
    assert len(rows) == 24 and all(r["error"] is None for r in rows)


def test_a_rerun_scores_only_the_new_rows(single, synth_dir, bundle, tmp_path):
    rows = load_manifest(synth_dir / "manifest.csv").rows
    first = _head(synth_dir / "manifest.csv", 10, tmp_path / "first.csv")
    engine = Engine(bundle, threads=1)
    out = tmp_path / "scores"
    s1 = score(manifest_source([first]), out, engine, use="single", progress=False)
    assert (s1["scored"], s1["errors"], s1["skipped"]) == (10, 0, {})
    s2 = score(manifest_source([synth_dir / "manifest.csv"]), out, engine, use="single",
               progress=False)
    assert (s2["scored"], s2["skipped"]) == (len(rows) - 10, {"done": 10})
    assert read_scores(out).equals(read_scores(single))
    s3 = score(manifest_source([synth_dir / "manifest.csv"]), out, engine, use="single",
               progress=False)
    assert (s3["scored"], s3["parts"], s3["skipped"]) == (0, 0, {"done": len(rows)})


def test_ray_gives_the_same_table_and_resumes(local_ray, single, synth_dir, bundle, tmp_path):
    engine = Engine(bundle, num_cpus=1)
    source = manifest_source([synth_dir / "manifest.csv"])
    out = tmp_path / "ray"
    s = score(source, out, engine, use="ray", progress=False)
    assert (s["engine"], s["scored"], s["errors"]) == ("ray", source.total, 0)
    assert read_scores(out).equals(read_scores(single))
    again = score(manifest_source([synth_dir / "manifest.csv"]), out, engine, use="ray",
                  progress=False)
    assert (again["scored"], again["skipped"]) == (0, {"done": source.total})


def test_missing_and_unreadable_photos_get_a_row_with_the_error(bundle, synth_dir, tmp_path):
    row = load_manifest(synth_dir / "manifest.csv").rows[0]
    info = row.device_info()
    assert info is not None and row.back_path
    (tmp_path / "bad.jpg").write_bytes(b"not a photo")
    batch = {"id": ["gone", "bad"],
             "front": [str(tmp_path / "gone.jpg"), str(tmp_path / "bad.jpg")],
             "back": [str(row.back_path)] * 2, "device": [info.model_dump_json()] * 2,
             "refurbisher_grade": ["", "not-a-grade"]}
    rows = Scorer(str(bundle))(batch).to_pylist()
    assert rows[0]["error"] == "photo_missing" and rows[0]["grade"] is None
    assert rows[1]["error"].startswith("photo_unreadable: ") and rows[1]["grade"] is None
    assert DeviceInfo.model_validate_json(batch["device"][0]) == info


def test_evaluations_of_the_database_are_scored_as_stored(workflow_history, bundle, tmp_path):
    from serve.db import Database
    from serve.models import Evaluation

    out = tmp_path / "db"
    assert _cli("--bundle", str(bundle), "--database", workflow_history.url, "--photo-dir",
                str(workflow_history.photo_dir), "--out", str(out), "--engine", "single") == 0
    table = {r["id"]: r for r in read_scores(out).to_pylist()}
    db = Database(workflow_history.url)
    try:
        with db.read() as s:
            stored = {e.id: e.predicted_grade for e in s.query(Evaluation)}
    finally:
        db.dispose()
    assert set(table) == set(stored) and len(table) >= 100
    assert all(r["error"] is None and r["decision"] for r in table.values())
    assert {i: r["grade"] for i, r in table.items()} == stored  # the bundle that graded them


@pytest.mark.skipif(not os.environ.get(S3_ENV), reason=f"{S3_ENV} is not set")
def test_evaluations_with_photos_in_s3_are_scored_the_same(workflow_history, bundle, tmp_path,
                                                           monkeypatch):
    """The history's photos copied to the test S3 server: the same table as from the folder
    (the Scorer opens the store from its settings; the keys come from the environment)."""
    from serve.photostore import LocalPhotoStore
    from serve.photostore_s3 import S3PhotoStore

    settings = s3_settings()
    s3 = S3PhotoStore(settings["photo_store"], endpoint_url=settings["s3_endpoint_url"])
    for path in Path(workflow_history.photo_dir).glob("??/*"):
        s3.put(LocalPhotoStore(workflow_history.photo_dir).get(path.name))
    for name, value in settings.items():
        monkeypatch.setenv(f"PHOTOGRADE_{name.upper()}", value)
    args = ("--bundle", str(bundle), "--database", workflow_history.url, "--engine", "single")
    assert _cli(*args, "--out", str(tmp_path / "s3")) == 0
    monkeypatch.delenv("PHOTOGRADE_PHOTO_STORE")
    assert _cli(*args, "--photo-dir", str(workflow_history.photo_dir), "--out",
                str(tmp_path / "dir")) == 0
    from_s3, from_dir = (read_scores(tmp_path / n).sort_by("id").to_pylist() for n in ("s3", "dir"))
    assert len(from_s3) >= 100 and all(r["error"] is None for r in from_s3)
    assert [r["grade"] for r in from_s3] == [r["grade"] for r in from_dir]


def test_user_errors_are_one_line(bundle, synth_dir, tmp_path, capsys):
    (tmp_path / "file").write_text("x")
    assert _cli("--bundle", str(bundle), "--manifest", str(synth_dir / "manifest.csv"),
                "--out", str(tmp_path / "file"), "--engine", "single") == 2
    assert "a file; give a folder" in capsys.readouterr().err


def _head(manifest: Path, n: int, out: Path) -> Path:
    """The first ``n`` rows of ``manifest`` in ``out``, photo paths made absolute."""
    with manifest.open(newline="") as f:
        rows = list(csv.DictReader(f))[:n]
    for r in rows:
        for c in ("front_path", "back_path"):
            r[c] = str((manifest.parent / r[c]).resolve())
    with out.open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    return out


def test_without_ray_auto_is_one_process_and_ray_is_refused(monkeypatch):
    from photograde import score as module

    monkeypatch.setattr(module, "_ray_available", lambda: False)
    assert module.pick_engine("auto", None) == "single"
    for engine, address in (("ray", None), ("auto", "ray://head:10001")):
        with pytest.raises(module.ScoreError, match=r"pip install 'photograde\[scale\]'"):
            module.pick_engine(engine, address)
    monkeypatch.setattr(module, "_ray_available", lambda: True)
    assert module.pick_engine("auto", None) == "ray"
    assert module.pick_engine("single", None) == "single"
