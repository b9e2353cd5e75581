"""Manifest loading: partial manifests load; every bad row is reported with its line."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from fusion.policy import load_policy
from photograde.cli import main
from training.manifest import ManifestError, load_manifest, read_manifest, write_manifest


def _write(tmp: Path, text: str, photos=("a.jpg", "b.jpg", "c.jpg")) -> Path:
    for p in photos:
        (tmp / p).write_bytes(b"\xff\xd8\xff")  # only existence is checked here
    path = tmp / "manifest.csv"
    path.write_text(text)
    return path


def test_screen_only_manifest_with_coarse_labels_loads(tmp_path):
    path = _write(tmp_path, "device_id,front_path,screen_condition\n"
                            "d1,a.jpg,flawless|light_scratches|heavy_scratches\n"
                            "d2,b.jpg,cracked\n"
                            "d3,c.jpg,\n")
    m = load_manifest(path)
    assert [r.device_id for r in m.rows] == ["d1", "d2", "d3"]
    assert m.rows[0].screen == {"flawless", "light_scratches", "heavy_scratches"}
    assert m.rows[0].exact_condition("screen") is None
    assert m.rows[1].exact_condition("screen") == "cracked"
    assert m.rows[2].screen is None and m.rows[2].back_path is None
    assert m.rows[0].front_path == (tmp_path / "a.jpg").resolve()
    assert m.summary()["labels"]["screen_condition"]["cracked"] == 1


def test_shell_only_manifest_loads(tmp_path):
    path = _write(tmp_path, "device_id,back_path,shell_condition,returned,listed_at\n"
                            "d1,a.jpg,heavy_wear,yes,2026-10-01\n")
    row = load_manifest(path).rows[0]
    assert row.shell == {"heavy_wear"} and row.returned is True
    assert row.listed_at.isoformat() == "2026-10-01"


def test_every_bad_row_is_reported_with_its_line(tmp_path):
    path = _write(tmp_path, (
        "device_id,front_path,back_path,storage_gb,unlocked,wifi,screen_condition,"
        "shell_condition,grade,battery_health_pct,listed_at\n"
        "ok1,a.jpg,b.jpg,128,true,true,flawless,light_wear,good,90,2026-01-02\n"  # line 2
        "d2,missing.jpg,,128,true,true,flawless,,,,\n"  # 3: missing file
        "d3,a.jpg,,128,true,true,shattered,,,,\n"  # 4: unknown label
        "d4,a.jpg,,lots,true,true,flawless,,,,\n"  # 5: bad type
        "ok1,c.jpg,,128,true,true,flawless,,,,\n"  # 6: duplicate id
        "d6,,,128,true,true,flawless,,,,\n"  # 7: no photo
        "d7,a.jpg,,128,maybe,true,flawless,,,,\n"  # 8: bad bool
        "d8,a.jpg,,128,true,true,flawless,scratched,mint,101,yesterday\n"  # 9: four problems
        "d9,a.jpg\n"  # 10: wrong field count
    ))
    manifest, errors = read_manifest(path, load_policy())
    assert manifest is None
    text = "\n".join(errors)
    for expected in [
        "line 3: front_path: file not found: missing.jpg",
        "line 4: screen_condition: unknown screen condition 'shattered'",
        "line 5: storage_gb: expected an integer, got 'lots'",
        "line 6: device_id: duplicate 'ok1' (first on line 2)",
        "line 7: front_path/back_path: no photo",
        "line 8: unlocked: expected true/false, got 'maybe'",
        "line 9: shell_condition: unknown shell condition 'scratched'",
        "line 9: grade: unknown grade 'mint'",
        "line 9: battery_health_pct: 101 is out of range 0..100",
        "line 9: listed_at: expected an ISO date",
        "line 10: row: 2 fields, the header has 11",
    ]:
        assert expected in text, f"{expected!r} not in:\n{text}"
    assert not any(e.startswith("line 2:") for e in errors)
    with pytest.raises(ManifestError) as err:
        load_manifest(path, load_policy())
    assert len(err.value.errors) == len(errors) == 11


@pytest.mark.parametrize(("header", "message"), [
    ("front_path,screen_condition", "missing required column device_id"),
    ("device_id,screen_condition", "needs front_path or back_path"),
    ("device_id,front_path,screen_conditon", "unknown column(s) 'screen_conditon'"),
    ("device_id,front_path,front_path", "duplicate column(s) front_path"),
])
def test_header_problems(tmp_path, header, message):
    path = _write(tmp_path, header + "\n")
    _, errors = read_manifest(path)
    assert any(message in e for e in errors), errors


def test_not_a_csv(tmp_path):
    path = tmp_path / "m.csv"
    path.write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\xff\xfe")
    _, errors = read_manifest(path)
    assert errors and ("UTF-8" in errors[0] or "header" in errors[0])
    _, errors = read_manifest(tmp_path / "none.csv")
    assert "file not found" in errors[0]


def test_grades_are_checked_against_the_chosen_scale(tmp_path):
    path = _write(tmp_path, "device_id,front_path,grade\nd1,a.jpg,B\n")
    assert read_manifest(path, load_policy())[1][0].startswith("line 2: grade: unknown grade 'B'")
    assert load_manifest(path, load_policy("ctia")).rows[0].grade == "B"


def test_without_a_scale_grades_are_kept_as_written(tmp_path):
    """A manifest does not depend on a grade scale: the code that uses the grades checks them."""
    path = _write(tmp_path, "device_id,front_path,grade,refurbisher_grade\n"
                            "d1,a.jpg, B ,mint\n")
    row = load_manifest(path).rows[0]
    assert (row.grade, row.refurbisher_grade) == ("B", "mint")
    _, errors = read_manifest(path, load_policy("ctia"))
    assert errors == ["line 2: refurbisher_grade: unknown grade 'mint'; this scale (ctia) has "
                      "A, B, C, D, E"]


def test_manifest_check_reports_grades_against_the_chosen_scale(tmp_path, capsys):
    path = _write(tmp_path, "device_id,front_path,grade\nd1,a.jpg,A\nd2,b.jpg,good\n")
    assert main(["manifest", "check", str(path)]) == 1
    assert "line 2: grade: unknown grade 'A'" in capsys.readouterr().err
    assert main(["manifest", "check", str(path), "--grading", "ctia"]) == 1
    assert "line 3: grade: unknown grade 'good'" in capsys.readouterr().err


def test_manifest_check_cli(tmp_path, capsys):
    bad = _write(tmp_path, "device_id,front_path,screen_condition\n"
                           "d1,nope.jpg,flawless\nd2,a.jpg,smashed\n")
    assert main(["manifest", "check", str(bad)]) == 1
    err = capsys.readouterr().err
    assert "line 2: front_path" in err and "line 3: screen_condition" in err
    good = _write(tmp_path, "device_id,front_path,screen_condition\nd1,a.jpg,cracked\n")
    assert main(["manifest", "check", str(good)]) == 0
    assert '"rows": 1' in capsys.readouterr().out


def test_source_column_round_trips_and_is_summarised(tmp_path, capsys):
    """``source`` (where a photo comes from) is optional free text, kept through a write/read
    round trip and counted per source by ``manifest check``."""
    for p in ("a.jpg", "b.jpg", "c.jpg"):
        (tmp_path / p).write_bytes(b"\xff\xd8\xff")
    rows = [{"device_id": "d1", "front_path": "a.jpg", "source": "ebay"},
            {"device_id": "d2", "front_path": "b.jpg", "source": "ebay"},
            {"device_id": "d3", "front_path": "c.jpg", "source": None}]
    path = write_manifest(tmp_path / "m.csv", rows, ("device_id", "front_path", "source"))
    m = load_manifest(path)
    assert [r.source for r in m.rows] == ["ebay", "ebay", None]
    assert m.summary()["sources"] == {"(unknown)": 1, "ebay": 2}
    again = write_manifest(tmp_path / "again.csv",
                           [{"device_id": r.device_id, "front_path": r.front_path.name,
                             "source": r.source} for r in m.rows], m.columns)
    assert [r.source for r in load_manifest(again).rows] == ["ebay", "ebay", None]
    assert main(["manifest", "check", str(path)]) == 0
    assert '"ebay": 2' in capsys.readouterr().out
    plain = _write(tmp_path, "device_id,front_path\nd1,a.jpg\n")
    assert load_manifest(plain).rows[0].source is None
    assert "sources" not in load_manifest(plain).summary()


def test_synthetic_manifest_round_trips(synth_dir):
    m = load_manifest(synth_dir / "manifest.csv")
    assert len(m) == 24
    row = m.rows[0]
    assert row.device_info() is not None
    assert row.grade is not None and row.refurbisher_grade is not None


def test_console_script_runs(tmp_path):
    out = subprocess.run([sys.executable, "-m", "photograde.cli", "manifest", "check",
                          str(tmp_path / "absent.csv")], capture_output=True, text=True)
    assert out.returncode == 1 and "file not found" in out.stderr
