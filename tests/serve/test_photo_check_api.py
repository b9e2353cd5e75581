"""The photo check through the API (FastAPI's TestClient, the real app and database): a refused
photo is a 422 ``photo-rejected`` problem naming the field, with its ``reason``; a platform key
may skip the check (``quality_check=false``), a refurbisher key may not; the same photo for
another device is a ``duplicate``; rejections are recorded, counted in /metrics and shown on
the platform dashboard; migration 0003 upgrades a 0002 database and 0006 adds the
``compressed`` and ``noisy`` reasons."""

from __future__ import annotations

import base64
import dataclasses
import io
import json
import random

import numpy as np
import pytest
from alembic import command
from fastapi.testclient import TestClient
from PIL import Image, ImageDraw, ImageFilter
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import select, text
from sqlalchemy.exc import IntegrityError

from serve.auth import create_key
from serve.db import Database, alembic_config
from serve.models import PhotoHash, PhotoRejection
from serve.problems import PROBLEM
from serve.runtime import Grader
from tests.serve.test_abstention_storage import _insert, _seed
from tests.support import DB_KINDS, INFO, database_url, workflow_app
from vision.photocheck import PhotoCheckConfig, RejectReason, retake_advice

DEVICE = json.dumps(INFO)


def jpeg(im: Image.Image, quality: int = 90) -> bytes:
    buf = io.BytesIO()
    im.save(buf, "JPEG", quality=quality)
    return buf.getvalue()


def scene(seed: int, size: tuple[int, int] = (300, 400)) -> Image.Image:
    """A sharp, well-lit photo that no other seed's resembles: random shapes on grey."""
    rng = random.Random(seed)
    im = Image.new("RGB", size, (120, 120, 120))
    draw = ImageDraw.Draw(im)
    for _ in range(14):
        x, y = rng.randrange(size[0]), rng.randrange(size[1])
        box = (x, y, x + rng.randrange(30, 160), y + rng.randrange(30, 160))
        colour = tuple(rng.randrange(20, 235) for _ in range(3))
        (draw.rectangle if rng.random() < 0.5 else draw.ellipse)(box, fill=colour)
    return im


class Photos:
    """Distinct photos the check accepts (front, back), one pair per call."""

    def __init__(self) -> None:
        self.seed = 0

    def pair(self) -> tuple[bytes, bytes]:
        self.seed += 2
        return jpeg(scene(self.seed)), jpeg(scene(self.seed + 1))


BLACK = jpeg(Image.new("RGB", (400, 300)))
TINY = jpeg(scene(10_001, (60, 60)))


@dataclasses.dataclass
class Api:
    client: TestClient
    keys: dict[str, str]
    grades: list[str]
    photos: Photos

    @property
    def db(self) -> Database:
        return self.client.app.state.workflow.db  # type: ignore[attr-defined]

    def h(self, who: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.keys[who]}"}

    def grade(self, who: str, front: bytes, back: bytes, **form: str):
        return self.client.post("/v1/grade", headers=self.h(who), data={"device": DEVICE,
                                **form}, files={"front": ("f.jpg", front),
                                                "back": ("b.jpg", back)})

    def submit(self, who: str, front: bytes, back: bytes, headers: dict | None = None,
               **form: str):
        data = {"device": DEVICE, "refurbisher_grade": self.grades[0], **form}
        return self.client.post("/v1/evaluations", headers={**self.h(who), **(headers or {})},
                                data=data, files={"front": ("f.jpg", front),
                                                  "back": ("b.jpg", back)})


@pytest.fixture(scope="module", params=DB_KINDS)
def api(request, tmp_path_factory, grader):
    tmp = tmp_path_factory.mktemp(f"photocheck-{request.param}")
    with database_url(request.param, tmp) as url:
        app = workflow_app(url, tmp, grader, photo_check=True)
        with TestClient(app) as client:
            db = app.state.workflow.db
            keys = {"ref_a": create_key(db, "refurbisher", "R001")[1],
                    "platform": create_key(db, "platform")[1],
                    "reviewer": create_key(db, "reviewer")[1]}
            yield Api(client, keys, list(grader.policy.grades), Photos())


def assert_rejected(r, field: str, reason: str) -> dict:
    assert r.status_code == 422, r.text
    assert r.headers["content-type"] == PROBLEM
    body = r.json()
    assert body["type"].endswith("/photo-rejected") and body["status"] == 422
    assert (body["field"], body["reason"]) == (field, reason)
    advice = retake_advice(RejectReason(reason), field.rsplit(".")[-1], PhotoCheckConfig())
    assert body["detail"] == f"{field}: {advice}"
    return body


def rejections(api: Api) -> list[tuple]:
    with api.db.read() as s:
        rows = s.scalars(select(PhotoRejection).order_by(PhotoRejection.id)).all()
        return [(r.refurbisher_id, r.route, r.slot, r.reason) for r in rows]


def sample(metrics: str, name: str, **labels: str) -> float:
    for family in text_string_to_metric_families(metrics):
        for s in family.samples:
            if s.name == name and s.labels == labels:
                return s.value
    return 0.0


def test_accepted_photos_are_graded(api):
    r = api.grade("platform", *api.photos.pair())
    assert r.status_code == 200, r.text


def test_a_black_front_is_too_dark(api):
    _, back = api.photos.pair()
    body = assert_rejected(api.grade("platform", BLACK, back), "front", "too_dark")
    assert "good light" in body["detail"]
    assert_rejected(api.grade("platform", BLACK, TINY), "front", "too_dark")  # front first


def test_a_tiny_back_is_too_small(api):
    front, _ = api.photos.pair()
    body = assert_rejected(api.grade("ref_a", front, TINY), "back", "too_small")
    assert "100 pixels" in body["detail"]


def test_a_blurred_front_is_blurry(api):
    front, back = api.photos.pair()
    blurred = jpeg(Image.open(io.BytesIO(front)).filter(ImageFilter.GaussianBlur(16)))
    assert_rejected(api.grade("platform", blurred, back), "front", "blurry")


def test_a_grainy_or_hard_compressed_back_is_refused_and_recorded(api):
    front, back = api.photos.pair()
    # small enough that no DCT scaling averages the grain away before it is measured
    grey = np.asarray(Image.open(io.BytesIO(back)).convert("RGB").resize((120, 160)), float)
    grain = np.random.default_rng(0).normal(0, 40, grey.shape)
    grainy = jpeg(Image.fromarray(np.clip(grey + grain, 0, 255).astype(np.uint8)), 95)
    body = assert_rejected(api.submit("ref_a", front, grainy), "back", "noisy")
    assert "brighter light" in body["detail"]
    blocky = jpeg(Image.open(io.BytesIO(back)), quality=12)
    assert_rejected(api.submit("ref_a", front, blocky), "back", "compressed")
    assert rejections(api)[-2:] == [("R001", "/v1/evaluations", "back", "noisy"),
                                    ("R001", "/v1/evaluations", "back", "compressed")]


def test_batch_names_the_device_and_photo(api):
    ok, other = api.photos.pair(), api.photos.pair()

    def item(i: str, front: bytes, back: bytes) -> dict:
        return {"id": i, "front": base64.b64encode(front).decode(),
                "back": base64.b64encode(back).decode(), "device": INFO}

    r = api.client.post("/v1/grade/batch", headers=api.h("ref_a"), json={"devices": [
        item("a", *ok), item("b", other[0], TINY)]})
    assert r.status_code == 200, r.text
    first, second = r.json()["results"]
    assert first["ok"] is True
    p = second["problem"]
    assert second["ok"] is False and p["status"] == 422
    assert p["type"] == "https://photograde.dev/problems/photo-rejected"
    assert p["field"] == "devices[1].back"
    assert p["reason"] == "too_small" and p["detail"].startswith("devices[1].back: ")


def test_a_platform_key_may_skip_the_check(api):
    _, back = api.photos.pair()
    assert api.grade("platform", BLACK, back, quality_check="false").status_code == 200
    r = api.submit("platform", BLACK, back, refurbisher_id="R001", quality_check="false")
    assert r.status_code == 201, r.text
    # unchecked photos are remembered all the same: the back again, for another device
    front, _ = api.photos.pair()
    assert_rejected(api.submit("platform", front, back, refurbisher_id="R001",
                               device_ref="IMEI-skip"), "back", "duplicate")


def test_a_refurbisher_key_may_not_skip_the_check(api):
    front, back = api.photos.pair()
    for r in (api.grade("ref_a", front, back, quality_check="false"),
              api.submit("ref_a", front, back, quality_check="false")):
        assert r.status_code == 403 and r.headers["content-type"] == PROBLEM
        assert r.json()["field"] == "quality_check" and "platform" in r.json()["detail"]
    r = api.client.post("/v1/grade/batch", headers=api.h("ref_a"), json={"devices": [
        {"id": "x", "front": base64.b64encode(front).decode(),
         "back": base64.b64encode(back).decode(), "device": INFO, "quality_check": False}]})
    p = r.json()["results"][0]["problem"]
    assert (p["status"], p["field"]) == (403, "devices[0].quality_check")


def test_the_same_photo_for_another_device_is_a_duplicate(api):
    front, back = api.photos.pair()
    first = api.submit("ref_a", front, back, device_ref="IMEI-1")
    assert first.status_code == 201, first.text
    again = api.submit("ref_a", front, back, device_ref="IMEI-1")  # the same device, again
    assert again.status_code == 201, again.text
    _, new_back = api.photos.pair()
    body = assert_rejected(api.submit("ref_a", front, new_back, device_ref="IMEI-2"),
                           "front", "duplicate")
    assert "another device" in body["detail"]
    new_front, _ = api.photos.pair()  # re-encoded and resized, the back is still the same
    resaved = Image.open(io.BytesIO(back))
    resaved = jpeg(resaved.resize((resaved.width * 4 // 5, resaved.height * 4 // 5)), 70)
    assert_rejected(api.submit("platform", new_front, resaved, refurbisher_id="R002",
                               device_ref="IMEI-3"), "back", "duplicate")
    # without a device_ref every other evaluation is another device; /v1/grade refuses any
    assert_rejected(api.submit("ref_a", front, new_back), "front", "duplicate")
    assert_rejected(api.grade("platform", new_front, back), "back", "duplicate")
    # a platform key may still grade it
    assert api.grade("platform", new_front, back, quality_check="false").status_code == 200
    # /v1/grade with the stored device's device_ref: the same device, graded again
    assert api.grade("platform", front, new_back, device_ref="IMEI-1").status_code == 200
    assert_rejected(api.grade("platform", front, new_back, device_ref="IMEI-7"), "front",
                    "duplicate")


def test_an_idempotent_replay_is_answered_before_the_check(api):
    front, back = api.photos.pair()
    key = {"Idempotency-Key": "photo-check-replay"}
    r = api.submit("ref_a", front, back, headers=key)
    assert r.status_code == 201, r.text
    replay = api.submit("ref_a", front, back, headers=key)
    assert replay.status_code == 200 and replay.headers["Idempotent-Replayed"] == "true"
    assert replay.json()["id"] == r.json()["id"]


def test_accepted_evaluation_photos_are_stored_with_their_hashes(api):
    front, back = api.photos.pair()
    r = api.submit("platform", front, back, refurbisher_id="R003", device_ref="IMEI-9")
    assert r.status_code == 201, r.text
    with api.db.read() as s:
        rows = s.scalars(select(PhotoHash).where(PhotoHash.evaluation_id == r.json()["id"])
                         .order_by(PhotoHash.slot.desc())).all()
        got = [(h.slot, h.refurbisher_id, h.device_ref, len(h.phash)) for h in rows]
        bands = [(h.band0 << 51 | h.band1 << 38 | h.band2 << 25 | h.band3 << 12 | h.band4)
                 for h in rows]
        hashes = [int(h.phash, 16) for h in rows]
    assert got == [("front", "R003", "IMEI-9", 16), ("back", "R003", "IMEI-9", 16)]
    assert bands == hashes


def test_rejections_are_recorded_counted_and_on_the_dashboard(api):
    c = api.client
    before = c.get("/metrics").text
    _, back = api.photos.pair()
    assert_rejected(api.submit("ref_a", BLACK, back), "front", "too_dark")
    assert rejections(api)[-1] == ("R001", "/v1/evaluations", "front", "too_dark")
    assert_rejected(api.grade("platform", back, TINY), "back", "too_small")
    assert rejections(api)[-1] == (None, "/v1/grade", "back", "too_small")
    after = c.get("/metrics").text
    for reason, slot in (("too_dark", "front"), ("too_small", "back")):
        name = "photograde_photo_rejections_total"
        assert sample(after, name, reason=reason, slot=slot) == sample(
            before, name, reason=reason, slot=slot) + 1
    d = c.get("/v1/dashboard/platform?days=7", headers=api.h("reviewer")).json()
    stored = rejections(api)
    expected = {reason: sum(r[3] == reason for r in stored) for reason in d["photo_rejections"]}
    assert d["photo_rejections"] == expected and d["photo_rejections_total"] == len(stored)
    weekly = d["photo_check_weekly"]
    assert sum(w["rejected"] for w in weekly) == len(stored)
    assert weekly[-1]["rejections"]["too_dark"] >= 1
    assert sum(w["evaluations"] for w in weekly) == d["evaluations"]


def test_inconclusive_decisions_are_counted_and_on_the_dashboard(bundle, tmp_path):
    grader = Grader(bundle, threads=1)  # its own: every grade abstains
    grader.policy = dataclasses.replace(grader.policy, min_confidence=0.999999)
    app = workflow_app(f"sqlite:///{tmp_path / 'db.sqlite'}", tmp_path, grader,
                       photo_check=True, auth_required=False)
    photos = Photos()
    with TestClient(app) as c:
        name = "photograde_decision_total"
        before = sample(c.get("/metrics").text, name, decision="inconclusive")
        front, back = photos.pair()
        files = {"front": ("f.jpg", front), "back": ("b.jpg", back)}
        r = c.post("/v1/grade", files=files, data={"device": DEVICE,
                                                   "refurbisher_grade": grader.policy.grades[0]})
        assert r.status_code == 200 and r.json()["decision"] == "inconclusive"
        r = c.post("/v1/evaluations", files=files, data={
            "device": DEVICE, "refurbisher_grade": grader.policy.grades[0],
            "refurbisher_id": "R001"})
        assert r.status_code == 201 and r.json()["decision"] == "inconclusive"
        assert sample(c.get("/metrics").text, name, decision="inconclusive") == before + 2
        # auth off: anyone may skip the check
        r = c.post("/v1/grade", files={"front": ("f.jpg", BLACK), "back": ("b.jpg", back)},
                   data={"device": DEVICE, "quality_check": "false"})
        assert r.status_code == 200, r.text
        d = c.get("/v1/dashboard/platform?days=7").json()
    assert d["inconclusive"] == 1 and d["inconclusive_share"] == 1.0
    assert sum(w["inconclusive"] for w in d["photo_check_weekly"]) == 1


@pytest.mark.parametrize("kind", DB_KINDS)
def test_migration_0003_upgrades_a_0002_database(kind, tmp_path):
    with database_url(kind, tmp_path) as url:
        cfg = alembic_config(url)
        command.upgrade(cfg, "0002")
        d = Database(url)
        with d.engine.begin() as conn:
            _seed(conn)
            _insert(conn, "old", "validated")
        d.migrate()
        insert_hash = text(
            "INSERT INTO photo_hashes (evaluation_id, refurbisher_id, device_ref, slot, phash, "
            "band0, band1, band2, band3, band4, created_at) VALUES (:ev, 'r1', NULL, 'front', "
            "'00ff00ff00ff00ff', 255, 255, 255, 255, 255, '2026-11-30 00:00:00')")
        insert_rejection = text(
            "INSERT INTO photo_rejections (created_at, refurbisher_id, route, slot, reason) "
            "VALUES ('2026-11-30 00:00:00', NULL, '/v1/grade', 'back', :reason)")
        with d.engine.begin() as conn:
            conn.execute(insert_hash, {"ev": "old"})
            conn.execute(insert_rejection, {"reason": "too_dark"})
            for statement, values in ((insert_hash, {"ev": "missing"}),
                                      (insert_rejection, {"reason": "ugly"})):
                with pytest.raises(IntegrityError), conn.begin_nested():
                    conn.execute(statement, values)
        with d.read() as s:
            assert [h.evaluation_id for h in s.scalars(select(PhotoHash))] == ["old"]
            assert [r.reason for r in s.scalars(select(PhotoRejection))] == ["too_dark"]
        command.downgrade(cfg, "0002")
        with d.engine.begin() as conn:
            assert conn.execute(text("SELECT id FROM evaluations")).scalars().all() == ["old"]
        command.upgrade(cfg, "head")
        d.dispose()


@pytest.mark.parametrize("kind", DB_KINDS)
def test_migration_0006_adds_the_compressed_and_noisy_reasons(kind, tmp_path):
    insert = text("INSERT INTO photo_rejections (created_at, refurbisher_id, route, slot, "
                  "reason) VALUES ('2026-12-01 00:00:00', NULL, '/v1/grade', 'front', :reason)")
    with database_url(kind, tmp_path) as url:
        cfg = alembic_config(url)
        command.upgrade(cfg, "0005")
        d = Database(url)
        with d.engine.begin() as conn:
            conn.execute(insert, {"reason": "blurry"})
            with pytest.raises(IntegrityError), conn.begin_nested():
                conn.execute(insert, {"reason": "noisy"})
        d.migrate()
        with d.engine.begin() as conn:
            for reason in ("noisy", "compressed"):
                conn.execute(insert, {"reason": reason})
        command.downgrade(cfg, "0005")  # the new reasons' rows go, the others stay
        with d.read() as s:
            assert [r.reason for r in s.scalars(select(PhotoRejection))] == ["blurry"]
        command.upgrade(cfg, "head")
        d.dispose()
