"""The OpenAPI is the truth: schemathesis fuzzes every operation of the real app (in-process ASGI,
the tiny bundle, SQLite, real keys) with a fixed seed and checks every answer against it: never a
5xx, every status documented, its content type and body schema and headers as documented.

The photo routes get no valid photo from the fuzzer (random bytes): their error answers are
what is checked there (problems, 4xx, documented). Each operation runs with a platform key, and
again with a refurbisher key where a refurbisher may call it; a route that neither may call
runs with a key of its own role (reviewer, admin).
"""

from __future__ import annotations

import json

import pytest
import schemathesis
from fastapi.routing import APIRoute
from fastapi.testclient import TestClient

from serve.auth import create_key
from serve.gate import key_check
from serve.problems import PROBLEM
from serve.routes import ROUTERS
from serve.routes.ops import metrics_router
from tests.support import INFO, small_photos, workflow_app

#: Examples per operation and key: bounded, to keep the test near a minute on two cores.
MAX_EXAMPLES = 25


@pytest.fixture(scope="module")
def fuzzed(tmp_path_factory, grader, synth_dir):
    """The app under test, its keys by role, and one stored evaluation (ids to find)."""
    tmp = tmp_path_factory.mktemp("fuzz")
    app = workflow_app(f"sqlite:///{tmp / 'fuzz.db'}", tmp, grader)
    with TestClient(app) as client:
        db = app.state.workflow.db
        keys = {role: create_key(db, role, "R001" if role == "refurbisher" else None)[1]
                for role in ("platform", "refurbisher", "reviewer", "admin")}
        front, back = small_photos(synth_dir, 1)[0]
        r = client.post("/v1/evaluations", headers={"X-API-Key": keys["refurbisher"]},
                        files={"front": ("f.jpg", front), "back": ("b.jpg", back)},
                        data={"device": json.dumps(INFO),
                              "refurbisher_grade": grader.policy.grades[0]})
        assert r.status_code == 201, r.text
        yield app, keys


@pytest.fixture(scope="module")
def api_schema(fuzzed):
    schema = schemathesis.openapi.from_asgi("/openapi.json", fuzzed[0])
    schema.config.generation.update(max_examples=MAX_EXAMPLES, deterministic=True)
    return schema


def roles_of(method: str, path: str) -> tuple[str, ...]:
    """The roles that may call an operation (none: no key)."""
    for route in (r for router in (*ROUTERS, metrics_router) for r in router.routes):
        if isinstance(route, APIRoute) and route.path == path and method.upper() in route.methods:
            check = key_check(route.dependant)
            return check.roles if check else ()
    raise AssertionError(f"no route {method} {path}")


def test_every_error_answer_is_a_documented_problem(fuzzed):
    """Each operation's 4xx and 5xx answers are problem+json with the Problem schema (but
    /readyz's 503, a JSON status); keyed operations document 401, 403 and 429."""
    app, _ = fuzzed
    spec = app.openapi()
    for path, ops in spec["paths"].items():
        for method, op in ops.items():
            for status, response in op["responses"].items():
                if int(status) < 400 or (path, status) == ("/readyz", "503"):
                    continue
                assert list(response["content"]) == [PROBLEM], (method, path, status)
                assert response["content"][PROBLEM]["schema"] == {
                    "$ref": "#/components/schemas/Problem"}
            if roles_of(method, path):
                assert {"401", "403", "429"} <= set(op["responses"]), (method, path)
    assert "HTTPValidationError" not in spec["components"]["schemas"]


def test_the_batch_body_and_return_reasons_are_in_the_schema(fuzzed):
    from tabular.schema import RETURN_REASONS

    spec = fuzzed[0].openapi()
    body = spec["paths"]["/v1/grade/batch"]["post"]["requestBody"]
    assert body["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/BatchRequest"}
    schemas = spec["components"]["schemas"]
    assert schemas["BatchRequest"]["properties"]["devices"]["items"] == {
        "$ref": "#/components/schemas/BatchDevice"}
    assert schemas["ReturnBody"]["properties"]["reason"]["enum"] == list(RETURN_REASONS)
