"""The one mapping from domain errors to HTTP problems (serve/problems.py), as the API's and the
UI's exception handlers answer them; an unexpected error is a bare 500."""

from __future__ import annotations

import io
from types import SimpleNamespace

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from PIL import Image

from fusion.bundle import BundleError
from serve import problems as P
from serve.handlers import MAX_ERRORS, install_handlers
from serve.metrics import Metrics
from serve.ui import mount_ui
from tabular.schema import ChecklistError, parse_device_info
from vision.errors import PhotogradeError
from vision.preprocess import ImageError, ImageTooLarge, NotAnImage, open_image

# (the error, its status, its problem type)
CASES = [
    (P.InvalidRequest("text: too short", "text"), 422, "invalid-request"),
    (P.Unauthorized("unknown API key", headers={"WWW-Authenticate": "Bearer"}), 401,
     "unauthorized"),
    (P.Forbidden("this route needs an admin key"), 403, "forbidden"),
    (P.CrossOrigin("sent from another site"), 403, "cross-origin-request"),
    (P.NotFound("evaluation 'x' not found", "evaluation_id"), 404, "not-found"),
    (P.InvalidTransition("evaluation x is listed", "status", current_status="listed",
                         next_actions=[]), 409, "invalid-transition"),
    (P.NotListed("evaluation x is in_review", "evaluation_id"), 409, "not-listed"),
    (P.AlreadyReturned("evaluation x already has a return"), 409, "already-returned"),
    (P.IdempotencyKeyReused("Idempotency-Key 'k' was already used", "Idempotency-Key"), 422,
     "idempotency-key-reused"),
    (P.UnknownGrade("grade: unknown grade 'mint'", "grade"), 422, "unknown-grade"),
    (P.UnknownCondition("screen_condition: unknown", "screen_condition"), 422,
     "unknown-condition"),
    (P.UnknownReason("reason: unknown reason 'x'", "reason"), 422, "unknown-reason"),
    (P.InvalidRefurbisherId("refurbisher_id: expected ...", "refurbisher_id"), 422,
     "invalid-refurbisher-id"),
    (P.InvalidBase64("devices[0].front: not valid base64", "devices[0].front"), 422,
     "invalid-base64"),
    (P.PhotoTooLarge("front: larger than the limit", "front"), 413, "photo-too-large"),
    (P.PhotoRejected("front: the photo is too dark", "front", reason="too_dark"), 422,
     "photo-rejected"),
    (P.BatchTooLarge("devices: 40 exceeds the limit of 32", "devices"), 413, "batch-too-large"),
    (P.RequestTooLarge("request body exceeds the limit"), 413, "request-too-large"),
    (P.RateLimited("too many requests", headers={"Retry-After": "3"}), 429, "rate-limited"),
    (P.TooManyAuthFailures("too many failed authentications", headers={"Retry-After": "9"}),
     429, "too-many-auth-failures"),
    (P.NotReady("the model bundle is still loading"), 503, "not-ready"),
    (P.Overloaded("the inference queue is full", headers={"Retry-After": "1"}), 503,
     "overloaded"),
    (P.StorageUnavailable("the photo store is unavailable", headers={"Retry-After": "5"}), 503,
     "storage-unavailable"),
    (ImageTooLarge("image too large: 9000 x 9000 pixels"), 413, "image-too-large"),
    (NotAnImage("not an image"), 415, "unsupported-image"),
    (ImageError("truncated or corrupt image"), 422, "unreadable-image"),
    (ChecklistError(["brand: Field required"]), 422, "invalid-device"),
    (P.FieldError("front", ImageTooLarge("image too large")), 413, "image-too-large"),
    (P.FieldError("back", NotAnImage("not an image")), 415, "unsupported-image"),
    (P.FieldError("front", ImageError("empty file")), 422, "unreadable-image"),
    (P.FieldError("device", ChecklistError(["brand: Field required"])), 422, "invalid-device"),
]
IDS = [f"{type(e).__name__}-{kind}" for e, _, kind in CASES]


@pytest.mark.parametrize(("error", "status", "kind"), CASES, ids=IDS)
def test_each_domain_error_has_its_status_and_type(error, status, kind):
    assert isinstance(error, PhotogradeError)
    assert P.problem_type(error) == (status, kind)
    details = P.problem_of(error)
    assert (details.status, details.kind) == (status, kind)
    if isinstance(error, P.Problem):
        assert (error.status, error.kind) == (status, kind)
        assert (details.detail, details.field) == (error.detail, error.field)


def test_every_problem_class_is_mapped():
    def subclasses(cls):
        for sub in cls.__subclasses__():
            yield sub
            yield from subclasses(sub)

    unmapped = [c.__name__ for c in subclasses(P.Problem)
                if c is not P.FieldError and c not in P.PROBLEM_TYPES]
    assert unmapped == []
    assert {type(e) for e, _, _ in CASES} >= set(P.PROBLEM_TYPES)


def test_a_field_error_names_its_field():
    e = P.FieldError("devices[2].front", NotAnImage("not an image (or not a supported format)"))
    assert (e.detail, e.field) == ("devices[2].front: not an image (or not a supported format)",
                                   "devices[2].front")


@pytest.mark.parametrize("error", [RuntimeError("boom"), KeyError("x"), ValueError("bare"),
                                   BundleError("bundle: vision.onnx is missing")])
def test_anything_else_is_an_internal_error(error):
    assert P.problem_type(error) == (500, "internal-error")
    details = P.problem_of(error)
    assert details.status == 500 and details.detail == "unexpected error (logged on the server)"


def test_the_lower_layers_raise_their_typed_errors():
    buf = io.BytesIO()
    Image.new("RGB", (100, 100)).save(buf, "PNG")
    with pytest.raises(ImageTooLarge, match="image too large"):
        open_image(buf.getvalue(), max_pixels=5000)
    with pytest.raises(NotAnImage, match="not an image"):
        open_image(b"hello, not an image")
    with pytest.raises(ChecklistError) as e:
        parse_device_info({"brand": ""})
    assert str(e.value).startswith("invalid device info: brand:")
    assert e.value.errors[0].startswith("brand:")


# -- the handlers ---------------------------------------------------------------------------
def _app() -> FastAPI:
    app = FastAPI()
    app.state.service = SimpleNamespace(metrics=Metrics())
    app.state.workflow = SimpleNamespace(svc=SimpleNamespace(grader=None))
    install_handlers(app)
    mount_ui(app)
    errors = {str(i): e for i, (e, _, _) in enumerate(CASES)}
    errors["bug"] = RuntimeError("secret internal state 0xdeadbeef")

    @app.get("/v1/raise/{name}")
    async def raise_api(name: str):
        raise errors[name]

    @app.get("/ui/raise/{name}")
    async def raise_ui(name: str):
        raise errors[name]

    @app.post("/v1/numbers")
    async def numbers(body: list[int]) -> int:
        return len(body)

    @app.post("/v1/lists")
    async def lists(body: dict[str, list[dict[str, int]]]) -> int:
        return len(body)

    return app


@pytest.fixture(scope="module")
def client():
    with TestClient(_app(), raise_server_exceptions=False) as c:
        yield c


@pytest.mark.parametrize(("i", "case"), list(enumerate(CASES)), ids=IDS)
def test_the_api_answers_each_domain_error_as_problem_json(client, i, case):
    error, status, kind = case
    r = client.get(f"/v1/raise/{i}")
    assert r.status_code == status
    assert r.headers["content-type"] == "application/problem+json"
    body = r.json()
    assert body["type"] == f"https://photograde.dev/problems/{kind}"
    assert body["title"] == kind.replace("-", " ") and body["status"] == status
    assert body["instance"] == f"/v1/raise/{i}"
    if isinstance(error, P.Problem):
        assert body["detail"] == error.detail and body.get("field") == error.field
        for name, value in error.headers.items():
            assert r.headers[name] == value
        for name, value in error.extra.items():
            assert body[name] == value
    else:
        assert body["detail"] == str(error)


def test_an_unexpected_error_is_a_500_without_its_traceback(client):
    r = client.get("/v1/raise/bug")
    assert r.status_code == 500
    assert r.headers["content-type"] == "application/problem+json"
    body = r.json()
    assert body["type"].endswith("/internal-error") and body["status"] == 500
    assert body["detail"] == "unexpected error (logged on the server)"
    for leak in ("secret", "deadbeef", "RuntimeError", "Traceback", "File \""):
        assert leak not in r.text


def test_a_validation_problem_lists_at_most_max_errors(client):
    r = client.post("/v1/numbers", json=["x"] * 5000)
    assert r.status_code == 422
    body = r.json()
    assert len(body["errors"]) == MAX_ERRORS and body["error_count"] == 5000
    assert body["errors"][0] == {"field": "[0]", "reason": body["errors"][0]["reason"]}
    assert body["detail"].endswith(f"and {5000 - MAX_ERRORS} more errors")
    assert len(r.content) < 5000


def test_a_validation_problem_writes_fields_as_the_batch_does(client):
    r = client.post("/v1/lists", json={"devices": [{"a": 1}, {"a": 2}, {"a": 3}, {"a": "x"}]})
    assert r.status_code == 422 and r.json()["field"] == "devices[3].a", r.text
    assert r.json()["detail"].startswith("devices[3].a: ")


@pytest.mark.parametrize(("i", "case"), list(enumerate(CASES)), ids=IDS)
def test_the_ui_answers_each_domain_error_with_a_page_of_its_status(client, i, case):
    error, status, _ = case
    r = client.get(f"/ui/raise/{i}", follow_redirects=False)
    if status == 401:
        assert (r.status_code, r.headers["location"]) == (303, "/ui/login")
        return
    assert r.status_code == status
    assert r.headers["content-type"].startswith("text/html")
    detail = error.detail if isinstance(error, P.Problem) else str(error)
    assert detail.replace("'", "&#39;") in r.text
