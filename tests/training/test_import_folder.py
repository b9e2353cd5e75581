"""import-folder: labelled sub-folders to a screen-only manifest, with their geometry."""

from __future__ import annotations

import json
import re

import pytest
from PIL import Image

from photograde.cli import main
from tests.conftest import REAL_SCREENS
from training.annotations import read_coco, sidecar_path, to_coco, write_coco
from training.import_folder import import_folder, parse_mapping
from training.manifest import ManifestError, load_manifest
from vision.geometry import DeviceGeometry, Quad

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


def _geometry(w: int, h: int, outside: bool = False) -> DeviceGeometry:
    pts = [(2, 3), (w - 2, 3), (w - 2, h - 3), (2, h + 5 if outside else h - 3)]
    return DeviceGeometry(width=w, height=h, device=Quad.from_points(pts, w, h),
                          screen=Quad.from_points([(4, 6), (w - 4, 6), (w - 4, h - 6),
                                                   (4, h - 6)], w, h))


@pytest.fixture
def photos(tmp_path):
    """intact/0..2.jpg and cracked/0..1.jpg of 40x30 px; intact/1.jpg has EXIF orientation 6
    (shown upright as 30x40)."""
    for label, n in (("intact", 3), ("cracked", 2)):
        (tmp_path / "src" / label).mkdir(parents=True)
        for i in range(n):
            exif = Image.Exif()
            if (label, i) == ("intact", 1):
                exif[0x0112] = 6
            Image.new("RGB", (40, 30)).save(tmp_path / "src" / label / f"{i}.jpg", exif=exif)
    return tmp_path / "src"


def test_import_with_annotations(photos, tmp_path, capsys):
    """COCO file names relative to the folder or bare (when unique); corners in the upright
    image; the geometry lands on the right rows, through a sidecar next to the manifest."""
    coco = write_coco(tmp_path / "coco.json", [("intact/1.jpg", _geometry(30, 40)),
                                               ("2.jpg", _geometry(40, 30, outside=True))])
    out = tmp_path / "out" / "m.csv"
    assert main(["import-folder", str(photos), "--out", str(out), "--map",
                 f"intact={NOT_CRACKED}", "--annotations", str(coco)]) == 0
    assert "the geometry of 2 photo(s)" in capsys.readouterr().out
    rows = {r.device_id: r for r in load_manifest(out).rows}
    assert rows["intact/1"].front_geometry == _geometry(30, 40)
    assert rows["intact/2"].front_geometry.device.corners[3].visible is False
    assert rows["cracked/0"].front_geometry is None and rows["intact/0"].back_geometry is None
    assert read_coco(sidecar_path(out)).keys() == {"../src/intact/1.jpg", "../src/intact/2.jpg"}
    import_folder(photos, out, {"intact": NOT_CRACKED})  # again without: the sidecar goes
    assert not sidecar_path(out).exists()
    assert all(r.front_geometry is None for r in load_manifest(out).rows)


@pytest.mark.parametrize(("entries", "edit", "message"), [
    ([("nope.jpg", _geometry(40, 30))], None, r"image 'nope.jpg' is not among the imported"),
    ([("0.jpg", _geometry(40, 30))], None, r"'0.jpg' matches 2 photos .* relative to"),
    ([("intact/1.jpg", _geometry(40, 30))], None,
     r"40x30 in the annotations but 30x40 upright .*EXIF orientation"),
    ([("2.jpg", _geometry(40, 30))], lambda a: a.update(keypoints=a["keypoints"][:9]),
     r"'2.jpg': phone annotation: 9 keypoint values, expected 12"),
    ([("2.jpg", _geometry(40, 30))], lambda a: a["keypoints"].__setitem__(0, 45.5),
     r"'2.jpg': device corner top_left \(45.5, 3\) is outside the 40x30 image"),
    ([("2.jpg", _geometry(40, 30))], lambda a: a["keypoints"].__setitem__(2, 0),
     r"corner top_left is \(2, 3, v=0\); every corner needs a position"),
    ([("2.jpg", _geometry(40, 30))], lambda a: a.update(image_id=9), r"unknown image id 9"),
])
def test_bad_annotations_are_one_line_errors(photos, tmp_path, capsys, entries, edit, message):
    doc = to_coco(entries)
    if edit:
        edit(doc["annotations"][0])
    (tmp_path / "coco.json").write_text(json.dumps(doc))
    assert main(["import-folder", str(photos), "--out", str(tmp_path / "m.csv"), "--map",
                 f"intact={NOT_CRACKED}", "--annotations", str(tmp_path / "coco.json")]) == 2
    err = capsys.readouterr().err.strip()
    assert re.search(message, err) and "\n" not in err, err
    assert not (tmp_path / "m.csv").exists()


def test_the_loader_checks_the_sidecar(photos, tmp_path):
    out = tmp_path / "m.csv"
    import_folder(photos, out, {"intact": NOT_CRACKED})
    write_coco(sidecar_path(out), [("src/intact/0.jpg", _geometry(40, 30)),
                                   ("src/intact/9.jpg", _geometry(40, 30))])
    with pytest.raises(ManifestError, match=r"image 'src/intact/9.jpg' is not a photo of the "
                                            "manifest"):
        load_manifest(out)
    sidecar_path(out).write_text("{not json")
    with pytest.raises(ManifestError, match=r"m.annotations.json: not JSON"):
        load_manifest(out)
