"""Every response carries the security headers (serve/headers.py): the CSP, nosniff, no
framing, no referrer, nothing authenticated cached (photos included), HSTS when set; a request
id is echoed only when it is a plain token; private files."""

from __future__ import annotations

import json

import pytest
from fastapi.testclient import TestClient

from serve.auth import create_key
from serve.headers import CSP
from tests.support import INFO, small_photos, workflow_app

STRICT = ("default-src 'self'", "script-src 'self'", "style-src 'self'", "object-src 'none'",
          "base-uri 'none'", "form-action 'self'", "frame-ancestors 'none'")


@pytest.fixture(scope="module")
def site(grader, synth_dir, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("headers")
    app = workflow_app(f"sqlite:///{tmp / 's.db'}", tmp, grader, hsts_max_age=31536000)

    @app.get("/v1/boom", include_in_schema=False)
    def boom() -> None:
        raise RuntimeError("a bug")  # a 500: answered outside the app's middleware

    with TestClient(app, base_url="https://testserver", raise_server_exceptions=False) as c:
        key = create_key(app.state.workflow.db, "platform")[1]
        front, back = small_photos(synth_dir, 1)[0]
        r = c.post("/v1/evaluations", headers={"X-API-Key": key},
                   files={"front": ("f.jpg", front), "back": ("b.jpg", back)},
                   data={"device": json.dumps(INFO), "refurbisher_grade": "good",
                         "refurbisher_id": "R001"})
        assert r.status_code == 201, r.text
        assert c.post("/ui/login", data={"key": key}, follow_redirects=False).status_code == 303
        yield c, key, r.json()["id"]


def test_every_ui_and_api_response_carries_the_headers(site):
    c, key, ev = site
    assert "no-store" in c.post("/v1/evaluations", headers={"X-API-Key": key}).headers[
        "cache-control"]  # a 422 too
    answers = {
        "/healthz": c.get("/healthz"), "/metrics": c.get("/metrics"),
        "/v1/model": c.get("/v1/model"), "/openapi.json": c.get("/openapi.json"),
        "401": c.get("/v1/evaluations"), "/v1/evaluations": c.get(
            "/v1/evaluations", headers={"X-API-Key": key}),
        "api photo": c.get(f"/v1/evaluations/{ev}/photos/front", headers={"X-API-Key": key}),
        "404": c.get("/v1/nowhere"), "413": c.post(
            "/v1/returns", content=b"x" * 4_000_000, headers={"X-API-Key": key}),
        "500": c.get("/v1/boom"), "/ui/login": c.get("/ui/login"), "/ui": c.get("/ui"),
        "page": c.get(f"/ui/evaluations/{ev}"), "ui photo": c.get(
            f"/ui/evaluations/{ev}/photos/front"),
        "heatmap": c.get(f"/ui/evaluations/{ev}/heatmaps/shell.png"),
        "/ui/platform": c.get("/ui/platform"), "redirect": c.get("/", follow_redirects=False),
        "/docs": c.get("/docs"), "/docs/init.js": c.get("/docs/init.js"),
        "app.js": c.get("/ui/static/app.js"), "docs asset": c.get(
            "/docs/assets/swagger-ui-bundle.js")}
    UI = {"/ui/login", "/ui", "page", "ui photo", "heatmap", "/ui/platform"}
    expected = {"/ui": 200, "page": 200, "ui photo": 200, "heatmap": 200, "401": 401,
                "404": 404, "413": 413, "500": 500, "redirect": 307, "api photo": 200}
    for name, r in answers.items():
        assert r.status_code == expected.get(name, 200), (name, r.status_code, r.text[:200])
        h = r.headers
        # UI pages: no Referer to other sites, but their forms keep their Origin (same-origin)
        referrer = "same-origin" if name in UI else "no-referrer"
        assert (h["x-content-type-options"], h["x-frame-options"], h["referrer-policy"]) == (
            "nosniff", "DENY", referrer), name
        assert h["content-security-policy"] == CSP, name  # /docs included
        assert h["strict-transport-security"] == "max-age=31536000", name
        cache = h.get("cache-control", "")
        if name in ("app.js", "docs asset"):  # static assets: cacheable
            assert "no-store" not in cache, name
        elif "photo" in name or name == "heatmap":
            assert cache == "private, no-store", name
        else:
            assert cache == "no-store", name
    assert all(d in CSP.split("; ") for d in STRICT) and "unsafe" not in CSP


def test_no_inline_script_or_style_in_the_pages(site):
    """The UI's own pages would break under their CSP with inline code: none is left."""
    c, _, ev = site
    for path in ("/ui/login", "/ui", f"/ui/evaluations/{ev}", "/ui/evaluations/new",
                 "/ui/evaluations", "/ui/platform", "/ui/dashboard?refurbisher=R001",
                 "/ui/reviews", "/docs"):
        text = c.get(path).text.lower()
        assert "style=" not in text and "<style" not in text, path
        assert " onchange=" not in text and " onclick=" not in text, path
        scripts = text.count("<script")
        assert scripts == text.count('<script src="'), path  # every script is a file


def test_request_ids_are_echoed_only_when_plain(tmp_path, grader):
    app = workflow_app(f"sqlite:///{tmp_path / 's.db'}", tmp_path, grader)
    with TestClient(app) as client:
        r = client.get("/healthz")
        assert "strict-transport-security" not in r.headers  # not set: not sent
        assert client.get("/healthz", headers={"X-Request-Id": "abc-123.4_5"}
                          ).headers["x-request-id"] == "abc-123.4_5"
        for bad in ("<script>alert(1)</script>", "x" * 65, "a b"):
            echoed = client.get("/healthz", headers={"X-Request-Id": bad}).headers["x-request-id"]
            assert echoed != bad and len(echoed) == 32


def test_photos_and_the_sqlite_file_are_private(tmp_path, synth_dir):
    from serve.db import Database
    from serve.photostore import LocalPhotoStore

    store = LocalPhotoStore(tmp_path / "photos")
    digest = store.put(next(synth_dir.glob("images/*_front.jpg")).read_bytes())
    assert store.path(digest).stat().st_mode & 0o777 == 0o600
    assert store.path(digest).parent.stat().st_mode & 0o777 == 0o700
    db = Database(f"sqlite:///{tmp_path / 'p.db'}")
    db.migrate()
    for name in ("p.db", "p.db-wal"):
        if (tmp_path / name).exists():
            assert (tmp_path / name).stat().st_mode & 0o777 == 0o600, name
    db.dispose()
