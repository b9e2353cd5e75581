"""Every response carries the security headers; UI pages are not cached; a request id is
echoed only when it is a plain token."""

from __future__ import annotations

from fastapi.testclient import TestClient

from tests.support import workflow_app


def test_security_headers_no_store_pages_and_safe_request_ids(tmp_path, grader):
    app = workflow_app(f"sqlite:///{tmp_path / 's.db'}", tmp_path, grader)
    with TestClient(app) as client:
        for path in ("/healthz", "/ui/login", "/v1/evaluations", "/docs"):
            r = client.get(path)
            assert r.headers["x-content-type-options"] == "nosniff", path
            assert r.headers["x-frame-options"] == "DENY", path
            assert "frame-ancestors 'none'" in r.headers["content-security-policy"], path
            assert r.headers["referrer-policy"] == "same-origin", path
        assert client.get("/ui/login").headers["cache-control"] == "no-store"
        assert "no-store" not in client.get("/ui/static/app.js").headers.get("cache-control", "")
        assert client.get("/healthz", headers={"X-Request-Id": "abc-123.4_5"}
                          ).headers["x-request-id"] == "abc-123.4_5"
        for bad in ("<script>alert(1)</script>", "x" * 65, "a b"):
            echoed = client.get("/healthz", headers={"X-Request-Id": bad}).headers["x-request-id"]
            assert echoed != bad and len(echoed) == 32


def test_photos_and_the_sqlite_file_are_private(tmp_path, synth_dir):
    from serve.db import Database
    from serve.photostore import PhotoStore

    store = PhotoStore(tmp_path / "photos")
    digest = store.put(next(synth_dir.glob("images/*_front.jpg")).read_bytes())
    assert store.path(digest).stat().st_mode & 0o777 == 0o600
    assert store.path(digest).parent.stat().st_mode & 0o777 == 0o700
    db = Database(f"sqlite:///{tmp_path / 'p.db'}")
    db.migrate()
    for name in ("p.db", "p.db-wal"):
        if (tmp_path / name).exists():
            assert (tmp_path / name).stat().st_mode & 0o777 == 0o600, name
    db.dispose()
