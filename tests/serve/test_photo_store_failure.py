"""A failing photo store (a full or unwritable disk, an S3 server's error) is a 503 that
stores nothing; once the store works, a retry with the same Idempotency-Key stores it once."""

from __future__ import annotations

import json

from fastapi.testclient import TestClient

from tests.support import INFO, small_photos, workflow_app

DEVICE = json.dumps(INFO)


def test_a_failing_photo_store_is_a_503_and_a_retry_stores_it_once(tmp_path, grader, synth_dir):
    """A full or unwritable disk (here: a file where the photo folder should be) or an S3
    error: 503 storage-unavailable with Retry-After, nothing stored; once the store works, the
    same request with the same Idempotency-Key is stored once."""
    pairs = small_photos(synth_dir, 1)
    (tmp_path / "photos").write_text("not a folder")
    app = workflow_app(f"sqlite:///{tmp_path / 'st.db'}", tmp_path, grader, auth_required=False)
    with TestClient(app) as c:
        files = {"front": ("f.jpg", pairs[0][0]), "back": ("b.jpg", pairs[0][1])}
        form = {"device": DEVICE, "refurbisher_grade": "good", "refurbisher_id": "R001"}
        headers = {"Idempotency-Key": "store-down-1"}
        r = c.post("/v1/evaluations", files=files, data=form, headers=headers)
        assert r.status_code == 503, r.text
        assert r.json()["type"].endswith("/storage-unavailable") and r.headers["retry-after"]
        assert "not a folder" not in r.text and c.get("/v1/evaluations").json()["total"] == 0
        (tmp_path / "photos").unlink()
        r = c.post("/v1/evaluations", files=files, data=form, headers=headers)
        assert r.status_code == 201, r.text
        again = c.post("/v1/evaluations", files=files, data=form, headers=headers)
        assert again.status_code == 200 and again.json()["id"] == r.json()["id"]
        assert c.get("/v1/evaluations").json()["total"] == 1
