"""Absurd query values get a 4xx problem naming the field, never a 5xx."""

from __future__ import annotations

from fastapi.testclient import TestClient

from serve.auth import create_key
from tests.support import workflow_app


def test_a_huge_offset_is_a_422_naming_the_field(tmp_path, grader):
    app = workflow_app(f"sqlite:///{tmp_path / 'q.db'}", tmp_path, grader)
    with TestClient(app) as client:
        key = create_key(app.state.workflow.db, "platform")[1]
        headers = {"Authorization": f"Bearer {key}"}
        r = client.get("/v1/evaluations", headers=headers,
                       params={"offset": "563016315260643180544", "since": "0413-05-14T06:29:54Z"})
        assert r.status_code == 422, r.text
        assert r.headers["content-type"].startswith("application/problem+json")
        assert "offset" in r.text
        assert client.get("/v1/evaluations", headers=headers,
                          params={"offset": "1000000000"}).status_code == 200
