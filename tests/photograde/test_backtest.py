"""``photograde backtest`` on the seeded workflow history (tests/photograde/conftest.py): the
tiny bundle against itself (found as the bundle that graded the evaluations: nothing changes)
and the shipped base model against it (the report's structure, its HTML page); the
recommendation rule on hand-made replays."""

from __future__ import annotations

import json
from html.parser import HTMLParser

import pytest

from photograde.backtest import BacktestError, Replayed, mcnemar_p, recommend, run_backtest
from photograde.cli import main
from serve.db import Database
from serve.photostore import LocalPhotoStore
from serve.settings import SHIPPED_BUNDLE
from tests.support import none_imported, run_python

SINCE = "2000-01-01"


def _cli(workflow_history, *args: str) -> int:
    return main(["backtest", "--database", workflow_history.url, "--photo-dir",
                 str(workflow_history.photo_dir), "--since", SINCE, "--quiet", *args])


def test_the_bundle_against_itself_changes_nothing(workflow_history, bundle, tmp_path, capsys):
    assert _cli(workflow_history, "--bundle", str(bundle), "--out", str(tmp_path)) == 0
    printed = capsys.readouterr().out
    assert printed.startswith("no change: both bundles give the same grade and decision")
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["recommendation"]["verdict"] == "no change"
    assert report["period"]["against"] == "the bundle that graded the evaluations"
    assert report["bundles"]["current"] == report["bundles"]["new"]
    cur, new = report["metrics"]["current"], report["metrics"]["new"]
    assert cur == new and cur["agreement"] is not None
    assert report["decision_changes"]["changed"] == report["grade_changes"] == 0
    ev = report["evaluations"]
    assert ev["skipped"] == {}
    assert ev["replayed"] == workflow_history.seeded["evaluations"] + len(workflow_history.cases)
    # the replay is the service's grading: every stored grade comes back
    assert report["reproduced"] == {"n": ev["replayed"], "same_grade": ev["replayed"],
                                    "share": 1.0}
    # validated grades and accepted suggestions are the grading bundle's own predictions
    by_source = cur["agreement_by_truth_source"]
    assert by_source["validated"]["agreement"] == by_source["accepted"]["agreement"] == 1.0
    assert by_source["kept"]["agreement"] == 0.0  # kept: one step from the model's grade
    assert sum(map(sum, cur["confusion"])) == ev["with_final_grade"]
    assert (tmp_path / "report.html").is_file()


def test_the_shipped_model_against_the_tiny_one(workflow_history, bundle, tmp_path):
    db = Database(workflow_history.url)
    store = LocalPhotoStore(workflow_history.photo_dir)
    try:
        with pytest.raises(BacktestError, match="pass --against"):
            run_backtest(db, store, SHIPPED_BUNDLE, tmp_path / "none", since=_since())
        report = run_backtest(db, store, SHIPPED_BUNDLE, tmp_path, since=_since(),
                              against=bundle, threads=2, progress=False)
    finally:
        db.dispose()
    assert report["bundles"]["new"]["model_name"] == "photograde-base"
    assert report["bundles"]["current"]["path"] == str(bundle)
    n, judged = report["evaluations"]["replayed"], report["evaluations"]["with_final_grade"]
    assert n >= 100 and 0 < judged < n
    rec = report["recommendation"]
    assert rec["verdict"] in ("promote", "keep current")
    assert rec["line"].startswith(rec["verdict"] + ": agreement ")
    assert "justification requests" in rec["line"]
    changes = report["decision_changes"]
    assert changes["labels"] == ["validated", "suggestion", "justification_required",
                                 "inconclusive"]
    assert sum(map(sum, changes["matrix"])) == n and changes["changed"] > 0
    for b in ("current", "new"):
        m = report["metrics"][b]
        assert len(m["confusion"]) == len(report["grades"]) == 4
        assert sum(map(sum, m["confusion"])) == judged
        assert sum(m["decisions"].values()) == n
        assert 0 <= m["justification_share"] <= 1
    for key in ("by_refurbisher", "by_model"):
        groups = report[key]
        assert sum(g["n"] for g in groups) == n
        assert [g["n"] for g in groups] == sorted((g["n"] for g in groups), reverse=True)
    assert {g["group"] for g in report["by_refurbisher"]} >= {"R900"}
    page = (tmp_path / "report.html").read_text()
    assert "<script" not in page and "http" not in page.replace(str(tmp_path), "")
    assert rec["line"].split(" (n=")[0] in page
    assert page.count("<table") == 7  # bundles, summary, decisions, 2 confusions, 2 breakdowns
    _Checker().feed(page)
    assert json.loads((tmp_path / "report.json").read_text()) == report


def _since():
    from photograde.history import parse_when

    return parse_when(SINCE, "--since")


class _Checker(HTMLParser):
    """Fails on a closing tag that does not match the open one (void tags aside)."""

    VOID = frozenset({"meta", "br", "hr", "img", "input", "link"})

    def __init__(self) -> None:
        super().__init__()
        self.stack: list[str] = []

    def handle_starttag(self, tag, attrs):
        if tag not in self.VOID:
            self.stack.append(tag)

    def handle_endtag(self, tag):
        assert self.stack and self.stack.pop() == tag, tag


def _rows(n: int, cur_right: int, new_right: int, new_just: int = 0) -> list[Replayed]:
    """``n`` replays with a final grade: the first ``cur_right`` right for the current
    bundle, the first ``new_right`` for the new one; ``new_just`` justification requests."""
    out = []
    for i in range(n):
        grades = ("good" if i < cur_right else "fair", "good" if i < new_right else "fair")
        decisions = ("validated", "justification_required" if i < new_just else "validated")
        out.append(Replayed(str(i), "R1", "Apple iPhone 12", "good", "validated", "v1",
                            grades[0], grades, decisions))
    return out


def _verdict(rows: list[Replayed]) -> dict:
    from photograde.backtest import bundle_metrics

    grades = ("excellent", "good", "fair", "broken")
    return recommend(rows, {b: bundle_metrics(rows, k, grades)
                            for k, b in enumerate(("current", "new"))})


def test_the_recommendation_rule():
    assert _verdict(_rows(100, 80, 80))["verdict"] == "no change"
    better = _verdict(_rows(100, 80, 90))
    assert better["verdict"] == "promote" and better["delta_points"]["agreement"] == 10.0
    assert better["line"].startswith("promote: agreement +10.0 points, justification "
                                     "requests +0.0 points")
    assert better["mcnemar"]["new_right_current_wrong"] == 10
    assert _verdict(_rows(100, 80, 90, new_just=5))["verdict"] == "keep current"  # +5 points
    assert _verdict(_rows(100, 80, 79))["verdict"] == "keep current"
    few = _verdict(_rows(20, 10, 20))
    assert few["verdict"] == "keep current" and "only 20 evaluations" in few["line"]


def test_mcnemar():
    assert mcnemar_p(0, 0) == 1.0
    assert mcnemar_p(10, 0) == pytest.approx(2 / 2**10)
    assert mcnemar_p(5, 5) == 1.0


def test_export_and_backtest_are_torch_free():
    code = ("import photograde.backtest, photograde.backtest_html, photograde.dataset_export\n"
            + none_imported("torch", "timm", "sklearn", "skl2onnx", "onnx", "cv2"))
    proc = run_python(code)
    assert proc.returncode == 0, proc.stderr
