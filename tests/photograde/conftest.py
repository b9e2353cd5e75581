"""A workflow history shared by the production-loop tests (dataset export, backtest).

Seeded through the real code paths: :func:`photograde.seed.seed_history` (120 synthetic
devices graded by the tiny bundle, the workflow played out over 90 days, their returns), then
named cases through the HTTP API (FastAPI's TestClient): an accepted suggestion, kept grades
(returned, not returned), a justification approved and one overridden against declared
conditions, open cases, and, with a grader whose config abstains, an inconclusive case
approved and one left open.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from tests.support import DB_KINDS, World, database_url, small_photos, workflow_app

ALMOST_SURE = 0.999999  # above any confidence of the tiny test model: every grade abstains


@dataclass
class SeededHistory:
    url: str
    photo_dir: Path
    synth_manifest: Path
    seeded: dict[str, int]
    cases: dict[str, dict[str, Any]]  # name -> the evaluation's JSON after its last action


def _justify(w: World, ev: dict[str, Any]) -> None:
    r = w.client.post(f"/v1/evaluations/{ev['id']}/justification", headers=w.h("ref"),
                      data={"text": "checked again under a lamp"},
                      files=[("photos", ("j.jpg", w.pair()[1]))])
    assert r.status_code == 201, r.text


def _act(w: World, ev: dict[str, Any], action: str, who: str = "ref",
         **body: Any) -> dict[str, Any]:
    r = w.client.post(f"/v1/evaluations/{ev['id']}/{action}", headers=w.h(who),
                      json=body or None)
    assert r.status_code == 200, r.text
    return r.json()


def _submit(w: World, gap: int, **form: Any) -> dict[str, Any]:
    r = w.submit("ref", gap, **form)
    assert r.status_code == 201, r.text
    return r.json()


def _play_cases(w: World) -> dict[str, dict[str, Any]]:
    """Each resolution (and open status) once, through the API."""
    cases = {"accepted": _act(w, _submit(w, 1), "accept-suggestion"),
             "kept_returned": _act(w, _submit(w, 1), "keep-grade"),
             "kept_open": _act(w, _submit(w, 1), "keep-grade"),
             "unanswered": _submit(w, 1),
             "no_justification": _submit(w, 2),
             "validated_declared": _submit(w, 0, screen_condition="flawless")}
    r = w.client.post("/v1/returns", headers=w.h("platform"), json={
        "evaluation_id": cases["kept_returned"]["id"], "kind": "return",
        "reason": "cosmetic_worse_than_described"})
    assert r.status_code == 201, r.text
    approved = _submit(w, 2)
    _justify(w, approved)
    cases["approved"] = _act(w, approved, "approve", "reviewer")
    # declared: a cracked screen (contradicted by the reviewer's grade) and light wear
    overridden = _submit(w, 2, screen_condition="cracked", shell_condition="light_wear")
    _justify(w, overridden)
    cases["overridden"] = _act(w, overridden, "override", "reviewer", grade="good")
    return cases


@pytest.fixture(scope="session", params=DB_KINDS)
def workflow_history(request, bundle, grader, synth_dir, tmp_path_factory
                     ) -> Iterator[SeededHistory]:
    from training.synth.generate import generate

    tmp = tmp_path_factory.mktemp(f"history-{request.param}")
    synth = generate(120, tmp / "synth", seed=5, size=128, progress=False)
    with database_url(request.param, tmp) as url:
        yield _seed(url, tmp, synth, bundle, grader, synth_dir)


def _seed(url: str, tmp: Path, synth: Path, bundle: Path, grader: Any, synth_dir: Path
          ) -> SeededHistory:
    from photograde.seed import seed_history
    from serve.auth import create_key
    from serve.photostore import LocalPhotoStore
    from serve.runtime import Grader

    pairs = small_photos(synth_dir, 16)
    grades = list(grader.policy.grades)
    with TestClient(workflow_app(url, tmp, grader)) as client:
        db = client.app.state.workflow.db  # type: ignore[attr-defined]
        seeded = seed_history(db, LocalPhotoStore(tmp / "photos"), synth, grader=grader)
        keys = {"ref": create_key(db, "refurbisher", "R900")[1],
                "platform": create_key(db, "platform")[1],
                "reviewer": create_key(db, "reviewer")[1]}
        w = World(client, grades, keys, pairs)
        cases = _play_cases(w)
    abstaining = Grader(bundle, threads=1)  # its own: the policy is changed
    abstaining.policy = dataclasses.replace(abstaining.policy, min_confidence=ALMOST_SURE)
    with TestClient(workflow_app(url, tmp, abstaining)) as client:
        w = World(client, grades, keys, pairs[w.used:])
        unsure = _submit(w, 0)
        assert unsure["decision"] == "inconclusive"
        cases["inconclusive_approved"] = _act(w, unsure, "approve", "reviewer")
        cases["inconclusive_open"] = _submit(w, 0)
    return SeededHistory(url, tmp / "photos", synth, seeded, cases)
