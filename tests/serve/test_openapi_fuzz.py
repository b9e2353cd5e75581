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

import httpx
import pytest
import schemathesis
from fastapi.routing import APIRoute
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, seed, settings
from schemathesis.specs.openapi.checks import positive_data_acceptance

from serve.auth import create_key
from serve.gate import key_check
from serve.problems import PROBLEM
from serve.routes import ROUTERS
from serve.routes.ops import metrics_router
from tests.support import INFO, ThreadServer, small_photos, workflow_app

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
    with ThreadServer(app) as server:
        yield app, keys, server.url


def roles_of(method: str, path: str) -> tuple[str, ...]:
    """The roles that may call an operation (none: no key)."""
    for route in (r for router in (*ROUTERS, metrics_router) for r in router.routes):
        if isinstance(route, APIRoute) and route.path == path and method.upper() in route.methods:
            check = key_check(route.dependant)
            return check.roles if check else ()
    raise AssertionError(f"no route {method} {path}")


def _spec() -> dict:
    """The app's OpenAPI (the same app as :func:`fuzzed`'s, but for its bundle and database:
    the schema is needed when the tests are collected; a test checks that they are equal)."""
    from serve.app import create_app
    from serve.settings import Settings

    return create_app(Settings(database_url="sqlite://")).openapi()


SPEC = _spec()
#: Operations whose schema-valid requests may still be refused: the photo forms (the fuzzer
#: sends random bytes, never a photo), an override (a grade on the bundle's scale), a new key
#: (a refurbisher_id for a refurbisher key only).
REFUSES_VALID = {("POST", "/v1/evaluations/{evaluation_id}/override"), ("POST", "/v1/keys")} | {
    (method.upper(), path) for path, ops in SPEC["paths"].items() for method, op in ops.items()
    if "multipart/form-data" in op.get("requestBody", {}).get("content", {})}
schema = schemathesis.openapi.from_dict(SPEC)
# The tests send real keys (X-API-Key); schemathesis's own checks then try without them.
schema.config.generation.update(max_examples=MAX_EXAMPLES, deterministic=True,
                                with_security_parameters=False)


def call_as(case, fuzzed, prefer: str) -> None:
    """Call ``case`` with the key of ``prefer`` if that role may call it (else skipped for a
    refurbisher, a key of the first role that may for the platform) and check the answer."""
    op = case.operation
    roles = roles_of(op.method, op.path)
    if prefer in roles:
        role: str | None = prefer
    elif prefer == "refurbisher":
        pytest.skip("not an operation a refurbisher key may call")
    else:
        role = roles[0] if roles else None
    _, keys, url = fuzzed
    excluded = [positive_data_acceptance] if (op.method.upper(), op.path) in REFUSES_VALID else []
    case.call_and_validate(base_url=url, headers={"X-API-Key": keys[role]} if role else {},
                           excluded_checks=excluded)


FUZZ = settings(max_examples=MAX_EXAMPLES, deadline=None, derandomize=True,
                suppress_health_check=list(HealthCheck))


@pytest.mark.slow
@schema.parametrize()
@seed(20)
@FUZZ
def test_every_answer_to_a_platform_key_is_as_documented(case, fuzzed):
    call_as(case, fuzzed, "platform")


@pytest.mark.slow
@schema.parametrize()
@seed(21)
@FUZZ
def test_every_answer_to_a_refurbisher_key_is_as_documented(case, fuzzed):
    call_as(case, fuzzed, "refurbisher")


def test_every_error_answer_is_a_documented_problem(fuzzed):
    """Each operation's 4xx and 5xx answers are problem+json with the Problem schema (but
    /readyz's 503, a JSON status); keyed operations document 401, 403 and 429."""
    spec = fuzzed[0].openapi()
    assert spec == SPEC  # the schema the fuzz tests were made from
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


def test_what_the_fuzzer_found_is_refused_as_documented(fuzzed):
    """A key with ``refurbisher_id: ""`` (was a 500), Unix time for a date-time, 0 for a
    boolean (were accepted), the methods of a path in a 405's Allow (Starlette names one
    route's)."""
    _, keys, url = fuzzed
    admin, platform = {"X-API-Key": keys["admin"]}, {"X-API-Key": keys["platform"]}
    with httpx.Client(base_url=url) as c:
        r = c.post("/v1/keys", headers=admin, json={"role": "admin", "refurbisher_id": ""})
        assert r.status_code == 422 and r.json()["field"] == "refurbisher_id", r.text
        r = c.get("/v1/evaluations", headers=platform, params={"until": "0.5"})
        assert r.status_code == 422 and r.json()["field"] == "until", r.text
        r = c.post("/v1/grade/batch", headers=platform, json={"devices": [
            {"id": "0", "front": "", "back": "", "device": {}, "quality_check": 0}]})
        assert r.status_code == 422 and r.json()["field"] == "devices[0].quality_check", r.text
        r = c.request("OPTIONS", "/v1/evaluations", headers=platform)
        assert r.status_code == 405 and r.headers["allow"] == "GET, HEAD, POST"
        assert r.headers["content-type"] == PROBLEM
