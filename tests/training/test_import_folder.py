"""import-folder: labelled sub-folders to a screen-only manifest."""

from __future__ import annotations

import pytest
from PIL import Image

from photograde.cli import main
from tests.conftest import REAL_SCREENS
from training.import_folder import import_folder, parse_mapping
from training.manifest import load_manifest

NOT_CRACKED = "flawless|light_scratches|heavy_scratches"


@pytest.fixture
def folder(tmp_path):
    for label, n in (("intact", 3), ("cracked", 2)):
        (tmp_path / "src" / label).mkdir(parents=True)
        for i in range(n):
            Image.new("RGB", (8, 8)).save(tmp_path / "src" / label / f"{i}.jpg")
    (tmp_path / "src" / "intact" / "notes.txt").write_text("not an image")
    return tmp_path / "src"


def test_import_with_mapping(folder, tmp_path):
    path, counts = import_folder(folder, tmp_path / "out" / "m.csv",
                                 parse_mapping([f"intact={NOT_CRACKED}", "cracked=cracked"],
                                               "screen"))
    assert counts == {"cracked": 2, "intact": 3}
    m = load_manifest(path)
    assert len(m) == 5
    by_id = {r.device_id: r for r in m.rows}
    assert by_id["intact/0"].screen == set(NOT_CRACKED.split("|"))
    assert by_id["cracked/1"].exact_condition("screen") == "cracked"
    assert by_id["intact/0"].back_path is None


def test_source_from_file_names(tmp_path):
    """``--source-from-name``: the file name's stem up to its first '-' (empty without one)."""
    for label, names in (("intact", ("ebay-1a2b.jpg", "backmarket-3c4d.png")),
                         ("cracked", ("ebay-5e6f-7.jpg", "plain.jpg"))):
        (tmp_path / "src" / label).mkdir(parents=True)
        for name in names:
            Image.new("RGB", (8, 8)).save(tmp_path / "src" / label / name)
    mapping = {"intact": NOT_CRACKED}
    path, _ = import_folder(tmp_path / "src", tmp_path / "s.csv", mapping,
                            source_from_names=True)
    m = load_manifest(path)
    assert "source" in m.columns
    assert {r.device_id: r.source for r in m.rows} == {
        "intact/ebay-1a2b": "ebay", "intact/backmarket-3c4d": "backmarket",
        "cracked/ebay-5e6f-7": "ebay", "cracked/plain": None}
    path, _ = import_folder(tmp_path / "src", tmp_path / "n.csv", mapping)
    m = load_manifest(path)
    assert "source" not in m.columns and all(r.source is None for r in m.rows)
    assert main(["import-folder", str(tmp_path / "src"), "--out", str(tmp_path / "c.csv"),
                 "--map", f"intact={NOT_CRACKED}", "--source-from-name"]) == 0
    assert (tmp_path / "c.csv").read_text().splitlines()[0].endswith(",source")


def test_unmapped_folder_is_an_error(folder, tmp_path):
    with pytest.raises(ValueError, match=r"intact.*--map intact=flawless"):
        import_folder(folder, tmp_path / "m.csv", {"cracked": "cracked"})
    with pytest.raises(ValueError, match="unknown screen condition 'smashed'"):
        parse_mapping(["cracked=smashed"], "screen")
    with pytest.raises(ValueError, match="expected FOLDER=LABEL"):
        parse_mapping(["cracked"], "screen")


def test_cli(folder, tmp_path, capsys):
    out = tmp_path / "m.csv"
    assert main(["import-folder", str(folder), "--out", str(out), "--map",
                 f"intact={NOT_CRACKED}", "--map", "cracked=cracked"]) == 0
    assert "cracked=2, intact=3" in capsys.readouterr().out
    assert main(["import-folder", str(tmp_path / "nope"), "--out", str(out)]) == 2


@pytest.mark.skipif(not REAL_SCREENS.is_dir(), reason="shared real-screens data not present")
def test_real_screens_folder_imports(tmp_path):
    path, counts = import_folder(REAL_SCREENS / "images", tmp_path / "real.csv",
                                 {"intact": NOT_CRACKED, "cracked": "cracked"})
    assert counts["cracked"] > 400 and counts["intact"] > 200
    assert len(load_manifest(path)) == sum(counts.values())
