"""The checklist (``device``) is accepted as a text field or as a JSON file part, the way
``curl -F "device=<d.json"`` and ``curl -F device=@d.json`` send it."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from serve.auth import create_key
from serve.problems import PROBLEM
from tests.serve.test_photo_check_api import DEVICE, Photos
from tests.support import database_url, workflow_app


@pytest.fixture(scope="module")
def client(tmp_path_factory, grader):
    tmp = tmp_path_factory.mktemp("device-part")
    with database_url("sqlite", tmp) as url:
        app = workflow_app(url, tmp, grader)
        with TestClient(app) as c:
            key = create_key(app.state.workflow.db, "platform")[1]
            c.headers["Authorization"] = f"Bearer {key}"
            yield c


def post(client: TestClient, route: str, device_part, **form: str):
    front, back = Photos().pair()
    files = {"front": ("f.jpg", front), "back": ("b.jpg", back)}
    data = dict(form)
    if isinstance(device_part, str):
        data["device"] = device_part
    else:
        files["device"] = device_part
    return client.post(route, data=data, files=files)


@pytest.mark.parametrize("route", ["/v1/grade", "/v1/evaluations"])
def test_the_checklist_as_a_file_part_or_a_field(client, route, grader):
    form = {} if route == "/v1/grade" else {"refurbisher_grade": grader.policy.grades[0],
                                            "refurbisher_id": "R001"}
    for part in (DEVICE, ("device.json", DEVICE.encode(), "application/json")):
        r = post(client, route, part, **form)
        assert r.status_code in (200, 201), r.text
        assert "grade" in r.json() if route == "/v1/grade" else r.json()["id"]


def test_a_file_part_that_is_not_text_or_too_large_names_the_field(client):
    for part, why in (((("d.json", b"\xff\xfe{", "application/json")), "not UTF-8"),
                      (("d.json", b" " * 70_000, "application/json"), "larger than")):
        r = post(client, "/v1/grade", part)
        assert r.status_code == 422 and r.headers["content-type"] == PROBLEM, r.text
        assert r.json()["field"] == "device" and why in r.json()["detail"]
