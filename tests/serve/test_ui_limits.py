"""One validation for the UI and the API (serve/fields.py), against a real server on loopback:
a reference, a justification or a review comment that the API refuses is refused by the UI's
forms too (nothing stored), shown beside its field with what was typed; at the limit, both
take it."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass

import httpx
import pytest

from serve.fields import DEVICE_REF_MAX, TEXT_MAX
from tests.support import (
    INFO,
    ThreadServer,
    grade_at_gap,
    role_keys,
    small_photos,
    ui_session,
    workflow_app,
)


@dataclass
class Site:
    url: str
    keys: dict[str, str]
    grades: list[str]
    pairs: list[tuple[bytes, bytes]]

    def api(self, role: str) -> dict[str, str]:
        return {"X-API-Key": self.keys[role]}

    def ui(self, role: str) -> httpx.Client:
        client = httpx.Client(base_url=self.url, timeout=60)
        client.headers.update(ui_session(client, self.keys[role]))
        return client

    def evaluation(self, gap: int) -> dict:
        """A refurbisher's evaluation with a grade ``gap`` steps from the model's."""
        front, back = self.pairs.pop()
        files = {"front": ("f.jpg", front), "back": ("b.jpg", back)}
        device = json.dumps(INFO)
        predicted = httpx.post(self.url + "/v1/grade", headers=self.api("platform"),
                               files=files, data={"device": device}, timeout=60).json()["grade"]
        r = httpx.post(self.url + "/v1/evaluations", headers=self.api("refurbisher"),
                       files=files, timeout=60, data={
                           "device": device,
                           "refurbisher_grade": grade_at_gap(self.grades, predicted, gap)})
        assert r.status_code == 201, r.text
        return r.json()

    def status(self, evaluation_id: str) -> str:
        return httpx.get(f"{self.url}/v1/evaluations/{evaluation_id}",
                         headers=self.api("platform")).json()["status"]


@pytest.fixture(scope="module")
def site(grader, synth_dir, tmp_path_factory) -> Iterator[Site]:
    tmp = tmp_path_factory.mktemp("limits")
    app = workflow_app(f"sqlite:///{tmp / 's.db'}", tmp, grader)
    with ThreadServer(app) as server:
        db = app.state.workflow.db
        keys = role_keys(db)
        yield Site(server.url, keys, list(grader.policy.grades), small_photos(synth_dir, 6))


def form(site: Site, device_ref: str) -> tuple[dict[str, str], dict[str, tuple[str, bytes]]]:
    front, back = site.pairs.pop()
    return ({"brand": INFO["brand"], "model": INFO["model"], "storage_gb": "128",
             "unlocked": "on", "screen_condition": "flawless", "shell_condition": "flawless",
             "refurbisher_grade": site.grades[0], "device_ref": device_ref},
            {"front": ("f.jpg", front), "back": ("b.jpg", back)})


def beside(page: str, field: str) -> bool:
    """The problem is shown beside ``field``'s input (announced there, linked to it)."""
    return (f'id="{field}-problem" role="alert"' in page
            and f'aria-describedby="{field}-problem"' in page)


def total(site: Site) -> int:
    return httpx.get(site.url + "/v1/evaluations", headers=site.api("platform")).json()["total"]


def test_a_reference_the_api_refuses_is_refused_by_the_form(site):
    ui, before = site.ui("refurbisher"), total(site)
    too_long = "R" * (DEVICE_REF_MAX + 1)
    data, files = form(site, too_long)
    r = ui.post("/ui/evaluations", data=data, files=files)
    assert r.status_code == 422 and beside(r.text, "device_ref")
    assert f"at most {DEVICE_REF_MAX} characters" in r.text and f'value="{too_long}"' in r.text
    assert total(site) == before  # nothing stored
    api = httpx.post(site.url + "/v1/evaluations", headers=site.api("refurbisher"),
                     files=files, data={"device": json.dumps(INFO), "refurbisher_grade":
                                        site.grades[0], "device_ref": too_long})
    assert (api.status_code, api.json()["field"]) == (422, "device_ref")
    data, files = form(site, "R" * DEVICE_REF_MAX)  # at the limit: taken
    r = ui.post("/ui/evaluations", data=data, files=files, follow_redirects=False)
    assert r.status_code == 303, r.text[:500]
    assert total(site) == before + 1


def test_a_justification_and_a_comment_over_the_limit_are_refused_beside_them(site):
    ev = site.evaluation(gap=2)
    assert ev["status"] == "awaiting_justification", ev
    url = f"/ui/evaluations/{ev['id']}"
    photo = [("photos", ("p.jpg", site.pairs[0][1]))]
    refurbisher = site.ui("refurbisher")
    r = refurbisher.post(f"{url}/justification", data={"text": "x" * (TEXT_MAX + 1)},
                         files=photo)
    assert r.status_code == 422 and beside(r.text, "text")
    assert f"at most {TEXT_MAX} characters" in r.text
    assert site.status(ev["id"]) == "awaiting_justification"
    r = refurbisher.post(f"{url}/justification", data={"text": "y" * TEXT_MAX}, files=photo,
                         follow_redirects=False)
    assert r.status_code == 303 and site.status(ev["id"]) == "in_review"

    reviewer = site.ui("reviewer")
    long_comment = "z" * (TEXT_MAX + 1)
    for action, extra in (("approve", {}), ("override", {"grade": site.grades[0]})):
        r = reviewer.post(f"{url}/{action}", data={"comment": long_comment, **extra})
        assert r.status_code == 422 and beside(r.text, action), action
        assert f">{long_comment}</textarea>" in r.text  # what was typed, kept
        assert site.status(ev["id"]) == "in_review"
    api = httpx.post(f"{site.url}/v1/evaluations/{ev['id']}/approve",
                     headers=site.api("reviewer"), json={"comment": long_comment})
    assert (api.status_code, api.json()["field"]) == (422, "comment")
    r = reviewer.post(f"{url}/approve", data={"comment": "z" * TEXT_MAX}, follow_redirects=False)
    assert r.status_code == 303 and site.status(ev["id"]) == "listed"
