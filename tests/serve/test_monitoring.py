"""Monitoring through the real service: the drift window's gauges after real grades (against a
bundle's reference, and a reference learned from the first grades), the photo check's refusal
rate, the outcome gauges computed from the database, and ``GET /v1/dashboard/model-health``
per bundle version, on SQLite and PostgreSQL."""

from __future__ import annotations

import json
import shutil
import statistics
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

from fusion.bundle import ReferenceInfo, load_manifest, write_manifest
from serve import registry
from serve.auth import create_key
from serve.db import Database
from serve.drift import shares
from serve.runtime import Grader
from tabular.schema import CHECKS, parse_device_info
from tests.serve.ui_support import black_jpeg
from tests.support import DB_KINDS, INFO, World, database_url, small_photos, workflow_app
from vision.photocheck import PhotoCheckConfig

#: A checklist with a failed check: the policy grades it broken whatever the photos show.
FAILING = {**INFO, "checks": {**dict.fromkeys(CHECKS, True), CHECKS[0]: False}}
REVIEWED = ("approved", "overridden")


@pytest.fixture(scope="module")
def pairs(synth_dir):
    return small_photos(synth_dir, 40)


def bundle_copy(bundle: Path, out: Path, version: str,
                reference: dict[str, float] | None = None) -> Grader:
    """A copy of ``bundle`` serving as ``version``, with ``reference`` as its reference
    grade distribution."""
    shutil.copytree(bundle, out)
    manifest = load_manifest(out)
    manifest.bundle_version = version
    if reference is not None:
        manifest.reference = ReferenceInfo(grade_distribution=reference, devices=8,
                                           measured_on="the test's devices")
    write_manifest(out, manifest)
    return Grader(out, threads=1)


def scrape(client: TestClient) -> dict[tuple[str, frozenset], float]:
    return {(s.name, frozenset(s.labels.items())): s.value
            for family in text_string_to_metric_families(client.get("/metrics").text)
            for s in family.samples}


def gauge(metrics: dict[tuple[str, frozenset], float], name: str, **labels: str
          ) -> float | None:
    return metrics.get((name, frozenset(labels.items())))


def grade(client: TestClient, key: str, pair: tuple[bytes, bytes], info: dict = INFO
          ) -> dict[str, Any]:
    r = client.post("/v1/grade", headers={"X-API-Key": key},
                    files={"front": ("f.jpg", pair[0]), "back": ("b.jpg", pair[1])},
                    data={"device": json.dumps(info)})
    assert r.status_code == 200, r.text
    return r.json()


def test_drift_gauges_follow_the_served_grades_against_the_bundles_reference(
        bundle, grader, pairs, tmp_path):
    mine = pairs[:8]
    expected = [grader.grade(f, b, parse_device_info(INFO)).grade for f, b in mine]
    reference = shares(Counter(expected))
    assert reference.get("broken", 0) < 1, "the tiny model grades every test device broken"
    served = bundle_copy(bundle, tmp_path / "b", "with-reference", reference)
    app = workflow_app(f"sqlite:///{tmp_path / 'db'}", tmp_path, served, drift_window=8,
                       drift_min_devices=4)
    with TestClient(app) as c:
        key = create_key(app.state.workflow.db, "platform")[1]
        v = "with-reference"
        m = scrape(c)
        assert gauge(m, "photograde_grade_psi", bundle_version=v) is None  # nothing graded
        ref_share = gauge(m, "photograde_reference_grade_share", bundle_version=v,
                          grade=expected[0], source="bundle")
        assert ref_share == pytest.approx(reference[expected[0]])
        results = [grade(c, key, p) for p in mine]
        assert [r["grade"] for r in results] == expected
        m = scrape(c)
        assert gauge(m, "photograde_grade_psi", bundle_version=v) == pytest.approx(0, abs=1e-9)
        assert gauge(m, "photograde_window_devices", bundle_version=v) == 8
        assert gauge(m, "photograde_mean_confidence", bundle_version=v) == pytest.approx(
            statistics.mean(r["confidence"] for r in results))
        low = [r["confidence"] < served.policy.min_confidence for r in results]
        assert gauge(m, "photograde_inconclusive_rate", bundle_version=v) == pytest.approx(
            sum(low) / 8)
        for p in mine:  # the same photos with a failed check: every grade broken
            assert grade(c, key, p, FAILING)["grade"] == "broken"
        m = scrape(c)
        drift = gauge(m, "photograde_grade_psi", bundle_version=v)
        assert drift is not None and drift > 0.2
        assert gauge(m, "photograde_window_grade_share", bundle_version=v, grade="broken") == 1
        monitoring = c.get("/v1/model").json()["monitoring"]
    assert monitoring["reference"]["source"] == "bundle"
    assert monitoring["psi"] == pytest.approx(drift, abs=1e-4)
    assert monitoring["grade_distribution"]["broken"] == 1


def test_a_bundle_without_reference_takes_its_first_grades_and_says_so(grader, pairs,
                                                                        tmp_path):
    assert grader.manifest.reference is None
    app = workflow_app(f"sqlite:///{tmp_path / 'db'}", tmp_path, grader, drift_window=4,
                       drift_min_devices=2)
    with TestClient(app) as c:
        key = create_key(app.state.workflow.db, "platform")[1]

        def monitoring() -> dict[str, Any]:
            return c.get("/v1/model").json()["monitoring"]

        first = [grade(c, key, p)["grade"] for p in pairs[8:11]]
        m = monitoring()
        assert m["reference"]["source"] == "first_served" and not m["reference"]["complete"]
        assert m["reference"]["devices"] == 3 and "(3 so far)" in m["reference"]["note"]
        assert m["psi"] is None
        first.append(grade(c, key, pairs[11])["grade"])
        m = monitoring()
        learned = {g: round(s, 4) for g, s in shares(Counter(first)).items()}
        assert m["reference"]["complete"] and m["reference"]["devices"] == 4
        assert {g: s for g, s in m["reference"]["grade_distribution"].items() if s} == learned
        assert m["psi"] == pytest.approx(0, abs=1e-4)
        assert "broken" not in learned or learned["broken"] < 1, "every first grade is broken"
        for p in pairs[8:12]:
            grade(c, key, p, FAILING)
        assert monitoring()["psi"] > 0.2
        assert monitoring()["reference"]["grade_distribution"] == m["reference"][
            "grade_distribution"]  # learned once


def test_the_photo_check_window_gives_the_refusal_rate_by_reason(grader, pairs, tmp_path):
    app = workflow_app(f"sqlite:///{tmp_path / 'db'}", tmp_path, grader, drift_window=4,
                       drift_min_devices=4, photo_check=True,
                       photo_check_thresholds=PhotoCheckConfig(min_sharpness=0.0))
    with TestClient(app) as c:
        key = create_key(app.state.workflow.db, "platform")[1]
        for p in pairs[12:14]:
            grade(c, key, p)
        for p in pairs[14:16]:
            r = c.post("/v1/grade", headers={"X-API-Key": key},
                       files={"front": ("f.jpg", black_jpeg()), "back": ("b.jpg", p[1])},
                       data={"device": json.dumps(INFO)})
            assert r.status_code == 422 and r.json()["reason"] == "too_dark"
        m = scrape(c)
        v = grader.manifest.bundle_version
        assert gauge(m, "photograde_window_photo_checks", bundle_version=v) == 4
        assert gauge(m, "photograde_photo_rejection_rate", bundle_version=v,
                     reason="too_dark") == 0.5
        assert gauge(m, "photograde_photo_rejection_rate", bundle_version=v,
                     reason="blurry") == 0
        assert c.get("/v1/model").json()["monitoring"]["photo_rejection_rate"]["too_dark"] == 0.5


# -- outcomes from the database -------------------------------------------------------------
def _act(w: World, ev: dict[str, Any], action: str, who: str, **body: Any) -> dict[str, Any]:
    r = w.client.post(f"/v1/evaluations/{ev['id']}/{action}", headers=w.h(who),
                      json=body or None)
    assert r.status_code == 200, r.text
    return r.json()


def _reviewed(w: World, gap: int, action: str, **body: Any) -> dict[str, Any]:
    ev = w.submit("ref", gap).json()
    r = w.client.post(f"/v1/evaluations/{ev['id']}/justification", headers=w.h("ref"),
                      data={"text": "checked again under a lamp"},
                      files=[("photos", ("j.jpg", w.pair()[1]))])
    assert r.status_code == 201, r.text
    return _act(w, ev, action, "reviewer", **body)


def _play(w: World) -> list[dict[str, Any]]:
    """Every resolution once, two reviewed cases overridden, and one case left open."""
    worst = w.grades[-1]
    cases = [w.submit("ref", 0).json(),
             _act(w, w.submit("ref", 1).json(), "accept-suggestion", "ref"),
             _act(w, w.submit("ref", 1).json(), "keep-grade", "ref"),
             _reviewed(w, 2, "approve"), _reviewed(w, 2, "override", grade=worst),
             _reviewed(w, 2, "override", grade=w.grades[0]), w.submit("ref", 2).json()]
    assert [c["status"] for c in cases] == ["listed"] * 6 + ["awaiting_justification"]
    return cases


def _expected(cases: list[dict[str, Any]], grades: list[str]
              ) -> dict[tuple[str, str], dict[str, Any]]:
    """The outcome figures by (version, decision or all), counted by hand from the cases."""
    rank = {g: i for i, g in enumerate(grades)}
    groups: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for c in cases:
        if c["final_grade"] is None:
            continue
        for d in (c["decision"], "all"):
            groups.setdefault((c["bundle_version"], d), []).append(c)

    def share(n: int, of: int) -> float | None:
        return round(n / of, 4) if of else None

    out = {}
    for key, group in groups.items():
        seen = [c for c in group if c["resolution"] in REVIEWED]
        out[key] = {
            "resolved": len(group), "reviewed": len(seen),
            "disagreement_rate": share(sum(c["predicted_grade"] != c["final_grade"]
                                           for c in group), len(group)),
            "false_positive_rate": share(sum(rank[c["predicted_grade"]] > rank[c["final_grade"]]
                                             for c in seen), len(seen)),
            "false_negative_rate": share(sum(rank[c["predicted_grade"]] < rank[c["final_grade"]]
                                             for c in seen), len(seen))}
    return out


def _history(url: str, tmp: Path, grader: Grader, other: Grader, pairs: list
             ) -> tuple[list[dict[str, Any]], dict[str, str]]:
    """Cases graded by two bundle versions, played through the API; (cases, keys)."""
    cases: list[dict[str, Any]] = []
    keys: dict[str, str] = {}
    for served, mine in ((grader, pairs[16:28]), (other, pairs[28:40])):
        app = workflow_app(url, tmp, served)
        with TestClient(app) as c:
            if not keys:
                db = app.state.workflow.db
                keys = {"ref": create_key(db, "refurbisher", "R001")[1],
                        **{r: create_key(db, r)[1] for r in ("platform", "reviewer")}}
            cases += _play(World(c, list(served.policy.grades), keys, mine))
    return cases, keys


def test_the_outcome_gauges_are_refreshed_while_the_service_runs(grader, pairs, tmp_path):
    app = workflow_app(f"sqlite:///{tmp_path / 'db'}", tmp_path, grader,
                       monitor_refresh_s=0.05)
    with TestClient(app) as c:
        db = app.state.workflow.db
        keys = {"ref": create_key(db, "refurbisher", "R001")[1],
                "platform": create_key(db, "platform")[1]}
        v = grader.manifest.bundle_version
        assert gauge(scrape(c), "photograde_outcomes", bundle_version=v, decision="all",
                     kind="resolved") is None  # nothing resolved at start-up
        ev = World(c, list(grader.policy.grades), keys, pairs[16:17]).submit("ref", 0).json()
        assert ev["final_grade"] == ev["predicted_grade"]  # validated
        for _ in range(400):  # the next refresh (every 0.05 s) counts it
            m = scrape(c)
            if gauge(m, "photograde_outcomes", bundle_version=v, decision="all",
                     kind="resolved") == 1:
                break
            time.sleep(0.05)
        assert gauge(m, "photograde_disagreement_rate", bundle_version=v,
                     decision="validated") == 0


@pytest.mark.parametrize("kind", DB_KINDS)
def test_outcome_gauges_and_the_model_health_route_per_bundle_version(
        kind, bundle, grader, pairs, tmp_path):
    other = bundle_copy(bundle, tmp_path / "other", "second-version")
    grades = list(grader.policy.grades)
    with database_url(kind, tmp_path) as url:
        cases, keys = _history(url, tmp_path, grader, other, pairs)
        expected = _expected(cases, grades)
        assert expected[(grader.manifest.bundle_version, "all")]["reviewed"] == 3
        db = Database(url)  # the first version serves again: promoted (the registry decides)
        registry.promote(db, grader.manifest.bundle_version, "test")
        db.dispose()
        app = workflow_app(url, tmp_path, grader, photo_check=True)
        with TestClient(app) as c:  # a fresh worker: its gauges come from the database
            m = scrape(c)
            for (v, d), f in expected.items():
                assert gauge(m, "photograde_outcomes", bundle_version=v, decision=d,
                             kind="resolved") == f["resolved"]
                for name in ("disagreement", "false_positive", "false_negative"):
                    value = gauge(m, f"photograde_{name}_rate", bundle_version=v, decision=d)
                    assert value == f[f"{name}_rate"], (v, d, name)
            r = c.post("/v1/evaluations", headers={"X-API-Key": keys["ref"]},
                       files={"front": ("f.jpg", black_jpeg()), "back": ("b.jpg", pairs[0][1])},
                       data={"device": json.dumps(INFO), "refurbisher_grade": grades[0]})
            assert r.status_code == 422 and r.json()["reason"] == "too_dark"
            assert c.get("/v1/dashboard/model-health",
                         headers={"X-API-Key": keys["ref"]}).status_code == 403
            d = c.get("/v1/dashboard/model-health?days=7",
                      headers={"X-API-Key": keys["reviewer"]}).json()
            daily = c.get("/v1/dashboard/model-health?days=7&bucket=day",
                          headers={"X-API-Key": keys["platform"]}).json()
            bad = c.get("/v1/dashboard/model-health?bucket=month",
                        headers={"X-API-Key": keys["platform"]})
    _check_route(d, daily, cases, expected, grades)
    assert bad.status_code == 422 and "bucket" in bad.text


def _check_route(d: dict[str, Any], daily: dict[str, Any], cases: list[dict[str, Any]],
                 expected: dict[tuple[str, str], dict[str, Any]], grades: list[str]) -> None:
    versions = {v["bundle_version"]: v for v in d["versions"]}
    assert list(versions) == list(dict.fromkeys(c["bundle_version"] for c in cases))
    for v, row in versions.items():
        mine = [c for c in cases if c["bundle_version"] == v]
        assert row["evaluations"] == len(mine) == 7
        assert row["grades"] == {g: sum(c["predicted_grade"] == g for c in mine) for g in grades}
        assert row["mean_confidence"] == round(statistics.mean(c["confidence"] for c in mine), 4)
        assert row["inconclusive_rate"] == 0
        assert row["outcomes"] == expected[(v, "all")]
        for decision, f in row["outcomes_by_decision"].items():
            assert f == expected.get((v, decision), {
                "resolved": 0, "reviewed": 0, "disagreement_rate": None,
                "false_positive_rate": None, "false_negative_rate": None})
        now = d["series"][v][-1]  # everything was submitted in this bucket
        assert now["evaluations"] == 7 and now["grades"] == row["grades"]
        assert {k: now[k] for k in expected[(v, "all")]} == expected[(v, "all")]
        assert all(b["evaluations"] == 0 for b in d["series"][v][:-1])
    refused = d["photo_rejections"][-1]
    assert refused["rejected"] == 1 and refused["reasons"]["too_dark"] == 1
    assert refused["submitted"] == 1 + len(cases)
    assert len(d["buckets"]) in (2, 3) and len(daily["buckets"]) == 8
    assert daily["series"][cases[0]["bundle_version"]][-1]["evaluations"] == 7
    assert d["serving"]["bundle_version"] == cases[0]["bundle_version"]
