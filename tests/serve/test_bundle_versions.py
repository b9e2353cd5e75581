"""Model versions: the registry's states and switches (serve/registry.py) on a real database,
and the admin API on a running app (FastAPI's TestClient): a shadow bundle scores every graded
request off the request path (stored, the answers unchanged), promote and rollback switch the
served bundle within a few polls, and each evaluation keeps the version that graded it.

Two real bundles: the tiny test bundle (``bundle``) and the shipped base model."""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Callable
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError

from fusion.bundle import load_manifest
from photograde.cli import main
from serve import registry
from serve.auth import create_key
from serve.db import Database
from serve.models import Bundle, Evaluation, ShadowPrediction
from serve.settings import SHIPPED_BUNDLE
from tests.support import INFO, small_photos, workflow_app

SHIPPED = load_manifest(SHIPPED_BUNDLE, verify_hashes=False).bundle_version
POLL = 0.1


def wait_until(check: Callable[[], Any], seconds: float = 60, what: str = "") -> Any:
    """Poll ``check`` until it returns something true; that value."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if value := check():
            return value
        time.sleep(0.05)
    raise AssertionError(f"not within {seconds} s: {what}")


def _states(db: Database) -> dict[str, str]:
    return {b["version"]: b["state"] for b in registry.list_bundles(db)}


def test_registry_promote_shadow_rollback_retire(db, bundle, tmp_path):
    tiny = load_manifest(bundle, verify_hashes=False).bundle_version
    first = registry.start_serving(db, bundle)  # the settings' bundle at the first start
    assert first.active == registry.Ref(tiny, bundle.resolve()) and first.shadow is None
    b = registry.register(db, SHIPPED_BUNDLE, "alice")
    assert (b["state"], b["registered_by"], b["model_name"]) == ("registered", "alice",
                                                                 "photograde-base")
    registry.shadow(db, SHIPPED, "alice")
    assert registry.serving(db).shadow == registry.Ref(SHIPPED, SHIPPED_BUNDLE.resolve())
    with pytest.raises(registry.BundleStateError, match="already active"):
        registry.promote(db, tiny, "bob")
    with pytest.raises(registry.BundleStateError, match="is active; shadow a candidate"):
        registry.shadow(db, tiny, "bob")
    with pytest.raises(registry.UnknownBundle, match="no registered bundle 'nope'"):
        registry.promote(db, "nope", "bob")
    registry.promote(db, SHIPPED, "bob")  # the shadow bundle becomes the active one
    assert _states(db) == {tiny: "retired", SHIPPED: "active"}
    assert registry.serving(db) == registry.Serving(registry.Ref(SHIPPED,
                                                                 SHIPPED_BUNDLE.resolve()), None)
    # a restart with the settings' (known) bundle keeps what was promoted
    assert registry.start_serving(db, bundle).active.version == SHIPPED
    with pytest.raises(registry.BundleStateError, match="not the active one"):
        registry.rollback(db, "bob", expect=tiny)
    assert registry.rollback(db, "bob", expect=SHIPPED)["version"] == tiny
    assert registry.rollback(db, "carol")["version"] == SHIPPED  # back and forth
    with pytest.raises(registry.BundleStateError, match="promote another bundle or roll back"):
        registry.retire(db, SHIPPED, "carol")
    record = registry.get(db, SHIPPED)
    assert record["changed_by"] == "carol" and record["activated_at"] is not None


def test_at_most_one_active_and_one_shadow(db, bundle):
    registry.start_serving(db, bundle)
    registry.register(db, SHIPPED_BUNDLE, "alice")
    with pytest.raises(IntegrityError), db.write() as s:  # whatever writes the table
        s.execute(update(Bundle).values(state="active"))
    registry.shadow(db, SHIPPED, "alice")
    with pytest.raises(IntegrityError), db.write() as s:
        s.execute(update(Bundle).where(Bundle.state == "active").values(state="shadow"))
    registry.retire(db, SHIPPED, "alice")  # the shadow ends
    assert registry.serving(db).shadow is None


def test_a_moved_bundle_or_another_bundles_backtest_is_refused(db, bundle, tmp_path):
    registry.start_serving(db, bundle)
    copy = shutil.copytree(SHIPPED_BUNDLE, tmp_path / "copy")
    registry.register(db, copy, "alice")
    shutil.rmtree(copy)
    with pytest.raises(registry.RegistryError, match="its folder cannot be loaded"):
        registry.promote(db, SHIPPED, "alice")
    assert registry.serving(db).active.version != SHIPPED  # nothing switched
    shutil.copytree(bundle, copy)  # the folder now holds another bundle
    with pytest.raises(registry.RegistryError, match="holds bundle"):
        registry.shadow(db, SHIPPED, "alice")
    report = tmp_path / "bt" / "report.json"
    report.parent.mkdir()
    report.write_text(json.dumps({"bundles": {"new": {"version": "someone-else"}}}))
    with pytest.raises(registry.RegistryError, match="backtest of bundle someone-else, not"):
        registry.read_backtest(report.parent, SHIPPED)
    report.write_text("{}")
    with pytest.raises(registry.RegistryError, match="not a photograde backtest report"):
        registry.read_backtest(report, SHIPPED)


# -- the admin API and the shadow, on a running app --------------------------------------------
def _grade(client: TestClient, key: str, pair: tuple[bytes, bytes], **form: str
           ) -> dict[str, Any]:
    r = client.post("/v1/grade", headers={"X-API-Key": key}, data={"device": json.dumps(INFO),
                    **form}, files={"front": ("f.jpg", pair[0]), "back": ("b.jpg", pair[1])})
    assert r.status_code == 200, r.text
    return r.json()


def _served(client: TestClient, active: str, shadow: str | None) -> bool:
    v = client.get("/v1/model").json()["versions"]
    return v["active"] == active and v["shadow"] == shadow


def _metric(client: TestClient, prefix: str) -> list[str]:
    return [line for line in client.get("/metrics").text.splitlines()
            if line.startswith(prefix)]


# long: one story (shadow, then promote, then rollback) on one running app
def test_admin_api_shadow_promote_rollback(bundle, grader, synth_dir, tmp_path, capsys):
    tiny = grader.manifest.bundle_version
    url = f"sqlite:///{tmp_path / 'photograde.db'}"
    pairs = small_photos(synth_dir, 6)
    app = workflow_app(url, tmp_path, grader, bundle_poll_seconds=POLL)
    with TestClient(app) as client:
        db = client.app.state.workflow.db  # type: ignore[attr-defined]
        admin, platform = create_key(db, "admin")[1], create_key(db, "platform")[1]
        ref = create_key(db, "refurbisher", "R1")[1]
        h = {"X-API-Key": admin}
        assert client.get("/v1/admin/bundles", headers={"X-API-Key": platform}
                          ).status_code == 403
        listed = client.get("/v1/admin/bundles", headers=h).json()
        assert [(b["version"], b["state"]) for b in listed["items"]] == [(tiny, "active")]
        before = [_grade(client, platform, p, refurbisher_grade="good") for p in pairs[:3]]
        assert main(["bundle", "register", str(SHIPPED_BUNDLE), "--database-url", url]) == 0
        assert f"registered bundle {SHIPPED} (photograde-base)" in capsys.readouterr().out

        r = client.post(f"/v1/admin/bundles/{SHIPPED}/shadow", headers=h)
        assert r.status_code == 200 and r.json()["bundle"]["state"] == "shadow", r.text
        wait_until(lambda: _served(client, tiny, SHIPPED), what="the shadow loaded")
        assert _metric(client, "photograde_bundle_info{") == [
            f'photograde_bundle_info{{role="active",version="{tiny}"}} 1.0',
            f'photograde_bundle_info{{role="shadow",version="{SHIPPED}"}} 1.0']
        after = [_grade(client, platform, p, refurbisher_grade="good") for p in pairs[:3]]
        for a, b in zip(before, after, strict=True):  # the answers do not change
            assert {**a, "request_id": None} == {**b, "request_id": None}
        ev = client.post("/v1/evaluations", headers={"X-API-Key": ref},
                         data={"device": json.dumps(INFO), "refurbisher_grade": "good"},
                         files={"front": ("f.jpg", pairs[3][0]), "back": ("b.jpg", pairs[3][1])})
        assert ev.status_code == 201 and ev.json()["bundle_version"] == tiny, ev.text
        batch = client.post("/v1/grade/batch", headers={"X-API-Key": platform}, json={
            "devices": [{"id": f"d{i}", "front": _b64(p[0]), "back": _b64(p[1]),
                         "device": INFO} for i, p in enumerate(pairs[4:6])]})
        assert batch.status_code == 200 and all(x["ok"] for x in batch.json()["results"])

        def rows() -> list[ShadowPrediction]:
            with db.read() as s:
                found = list(s.scalars(select(ShadowPrediction).order_by(ShadowPrediction.id)))
            return found if len(found) == 6 else []
        shadowed = wait_until(rows, what="6 shadow predictions stored")
        assert {r.bundle_version for r in shadowed} == {SHIPPED}
        assert {r.active_version for r in shadowed} == {tiny}
        graded = {r.request_id: r for r in shadowed[:3]}
        assert set(graded) == {a["request_id"] for a in after}
        for a in after:
            row = graded[a["request_id"]]
            assert (row.active_grade, row.active_decision) == (a["grade"], a["decision"])
            assert 0 < row.confidence <= 1 and row.decision is not None
        assert shadowed[3].evaluation_id == ev.json()["id"]
        assert shadowed[3].request_id == ev.headers["x-request-id"]
        assert [(r.item, r.decision) for r in shadowed[4:]] == [("d0", None), ("d1", None)]
        assert _metric(client, "photograde_shadow_predictions_total{") == [
            'photograde_shadow_predictions_total{outcome="stored"} 6.0']

        r = client.post(f"/v1/admin/bundles/{SHIPPED}/promote", headers=h)
        assert r.status_code == 200 and "every worker switches within" in r.json()["note"]
        wait_until(lambda: _served(client, SHIPPED, None), what="the promoted bundle served")
        assert _grade(client, platform, pairs[0])["bundle_version"] == SHIPPED
        ev2 = client.post("/v1/evaluations", headers={"X-API-Key": ref},
                          data={"device": json.dumps(INFO), "refurbisher_grade": "good"},
                          files={"front": ("f.jpg", pairs[5][0]),
                                 "back": ("b.jpg", pairs[5][1])})
        assert ev2.json()["bundle_version"] == SHIPPED
        r = client.post(f"/v1/admin/bundles/{tiny}/rollback", headers=h)
        assert r.status_code == 409 and "not the active one" in r.json()["detail"]
        assert client.post("/v1/admin/bundles/nope/promote", headers=h).status_code == 404
        r = client.post(f"/v1/admin/bundles/{SHIPPED}/rollback", headers=h)
        assert r.status_code == 200 and r.json()["bundle"]["version"] == tiny
        wait_until(lambda: _served(client, tiny, None), what="rolled back")
        assert _grade(client, platform, pairs[1])["bundle_version"] == tiny
        full = client.get(f"/v1/admin/bundles/{SHIPPED}", headers=h).json()
        assert full["state"] == "retired" and full["changed_by"].startswith("key ")
    with db.read() as s:  # each evaluation keeps the version that graded it
        stored = {e.id: e.bundle_version for e in s.scalars(select(Evaluation))}
    assert stored == {ev.json()["id"]: tiny, ev2.json()["id"]: SHIPPED}
    db.dispose()


def _b64(data: bytes) -> str:
    import base64

    return base64.b64encode(data).decode()


def test_a_bundle_that_fails_to_load_keeps_the_current_one(bundle, grader, tmp_path):
    url = f"sqlite:///{tmp_path / 'photograde.db'}"
    copy = shutil.copytree(SHIPPED_BUNDLE, tmp_path / "shipped")
    with TestClient(workflow_app(url, tmp_path, grader, bundle_poll_seconds=POLL,
                                 auth_required=False)) as client:
        db = client.app.state.workflow.db  # type: ignore[attr-defined]
        registry.register(db, copy, "alice")
        (copy / "fusion.json").write_text("{}")  # tampered after registration
        registry.promote(db, SHIPPED, "alice")
        versions = wait_until(lambda: (v := client.get("/v1/model").json()["versions"])["error"]
                              and v, what="the load error reported")
        assert versions["active"] == grader.manifest.bundle_version
        assert versions["registry"]["active"] == SHIPPED
        assert "fusion.json" in versions["error"]
        assert client.get("/readyz").status_code == 200
