"""Abstention through the API and the UI (FastAPI's TestClient): below the grading config's
``min_confidence`` the decision is ``inconclusive``; nothing is asked of the refurbisher, the
case waits in the review queue with its reason, and the reviewer approves or overrides; the
dashboards show the inconclusive rate and ``/metrics`` counts the decision."""

from __future__ import annotations

import dataclasses
import json

import pytest
from fastapi.testclient import TestClient

from serve.auth import create_key
from serve.runtime import Grader
from tests.support import INFO, World, small_photos, ui_session, workflow_app

ALMOST_SURE = 0.999999  # above any confidence of the tiny test model: every grade abstains


@pytest.fixture(scope="module")
def world(bundle, synth_dir, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("abstain")
    grader = Grader(bundle, threads=1)  # its own: the policy is changed
    grader.policy = dataclasses.replace(grader.policy, min_confidence=ALMOST_SURE)
    app = workflow_app(f"sqlite:///{tmp / 'db.sqlite'}", tmp, grader)
    with TestClient(app) as client:
        db = app.state.workflow.db
        keys = {"ref_a": create_key(db, "refurbisher", "R001")[1],
                "platform": create_key(db, "platform")[1],
                "reviewer": create_key(db, "reviewer")[1]}
        yield World(client, list(grader.policy.grades), keys, small_photos(synth_dir, 8))


def test_grade_is_inconclusive_with_its_reason(world):
    front, back = world.pair()
    r = world.client.post("/v1/grade", headers=world.h("platform"),
                          files={"front": ("f.jpg", front), "back": ("b.jpg", back)},
                          data={"device": json.dumps(INFO), "refurbisher_grade": "good"})
    assert r.status_code == 200, r.text
    g = r.json()
    assert g["confidence"] < ALMOST_SURE and g["decision"] == "inconclusive"
    assert "likely (threshold 100%)" in g["inconclusive_reason"]
    assert g["inconclusive_reason"].split(":")[0] in ("screen", "shell")
    plain = world.client.post("/v1/grade", headers=world.h("platform"),
                              files={"front": ("f.jpg", front), "back": ("b.jpg", back)},
                              data={"device": json.dumps(INFO)}).json()
    assert "decision" not in plain and "inconclusive_reason" not in plain


@pytest.mark.parametrize("action", ["approve", "override"])
def test_inconclusive_goes_straight_to_the_review_queue(world, action):
    w, c = world, world.client
    r = w.submit("ref_a", 0)
    assert r.status_code == 201, r.text
    ev = r.json()
    assert (ev["decision"], ev["status"]) == ("inconclusive", "in_review")
    assert ev["next_actions"] == ["approve", "override"] and ev["justification"] is None
    assert "threshold" in ev["inconclusive_reason"]
    url = f"/v1/evaluations/{ev['id']}"
    for asked in ("accept-suggestion", "keep-grade"):  # nothing is asked of the refurbisher
        assert c.post(f"{url}/{asked}", headers=w.h("ref_a")).status_code == 409
    assert c.post(f"{url}/justification", headers=w.h("ref_a"), data={"text": "it is fine!"},
                  files=[("photos", ("a.jpg", w.pairs[0][0]))]).status_code == 409
    queue = c.get("/v1/evaluations?status=in_review&limit=200", headers=w.h("reviewer")).json()
    queued = {e["id"]: e for e in queue["items"]}
    assert queued[ev["id"]]["inconclusive_reason"] == ev["inconclusive_reason"]
    mine = c.get("/v1/evaluations?decision=inconclusive&limit=200", headers=w.h("ref_a")).json()
    assert ev["id"] in {e["id"] for e in mine["items"]}
    session = ui_session(c, w.keys["reviewer"])
    page = c.get("/ui/reviews", headers=session)
    assert page.status_code == 200 and ev["id"] in page.text
    assert ev["inconclusive_reason"].split(";")[0] in page.text
    detail = c.get(f"/ui/evaluations/{ev['id']}", headers=session).text
    assert 'data-decision="inconclusive"' in detail and 'id="inconclusive-reason"' in detail
    assert 'id="send-justification"' not in detail and 'id="accept"' not in detail
    assert 'id="approve"' in detail and 'id="override"' in detail
    r, final = w.review(ev, action, "looks right")
    assert r.status_code == 200, r.text
    d = r.json()
    assert (d["status"], d["final_grade"], d["review"]["action"]) == ("listed", final, action)
    assert d["decision"] == "inconclusive" and d["inconclusive_reason"]


def test_dashboards_and_metrics_count_inconclusive(world):
    w, c = world, world.client
    assert w.submit("ref_a", 2).json()["decision"] == "inconclusive"  # whatever the gap
    d = c.get("/v1/dashboard/refurbisher/R001?days=30", headers=w.h("ref_a")).json()
    decisions = d["performance"]["decisions"]
    assert decisions["inconclusive"] == d["evaluations"] >= 1
    assert d["performance"]["inconclusive_share"] == 1.0
    assert d["performance"]["market_inconclusive_share"] == 1.0
    p = c.get("/v1/dashboard/platform?days=7", headers=w.h("reviewer")).json()
    assert p["inconclusive_share"] == 1.0 and p["queues"]["in_review"] >= 1
    metrics = c.get("/metrics").text
    assert 'photograde_decision_total{decision="inconclusive"}' in metrics
    session = ui_session(c, w.keys["reviewer"])
    assert "100% inconclusive" in c.get("/ui/dashboard?refurbisher=R001", headers=session).text
    assert 'id="kpi-inconclusive">100%' in c.get("/ui/platform", headers=session).text
