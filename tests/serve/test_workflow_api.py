"""The workflow API on SQLite, PostgreSQL and SQLite + S3 photos: every route's auth and tenant
isolation, the status machine, idempotency, returns, dashboards and bad input (problem+json)."""

from __future__ import annotations

import json

import httpx
import pytest
from fastapi.testclient import TestClient

from serve.auth import create_key
from tests.support import (
    INFO,
    WORLDS,
    World,
    small_photos,
    workflow_app,
    world_url,
)

DEVICE = json.dumps(INFO)


@pytest.fixture(scope="module")
def pairs(synth_dir):
    return small_photos(synth_dir, 40)


@pytest.fixture(scope="module", params=WORLDS)
def world(request, tmp_path_factory, grader, pairs):
    tmp = tmp_path_factory.mktemp(f"api-{request.param}")
    with world_url(request.param, tmp) as (url, stored):
        app = workflow_app(url, tmp, grader, **stored)
        with TestClient(app) as client:
            db = app.state.workflow.db
            keys = {"ref_a": create_key(db, "refurbisher", "R001")[1],
                    "ref_b": create_key(db, "refurbisher", "R002")[1],
                    "platform": create_key(db, "platform")[1],
                    "reviewer": create_key(db, "reviewer")[1],
                    "admin": create_key(db, "admin")[1]}
            w = World(client, list(grader.policy.grades), keys, pairs)
            # tenant A's evaluations, one in every status
            for name, gap, extra in (("a_listed", 0, {}), ("a_sugg", 1, {}),
                                     ("a_just", 2, {}), ("a_review", 2, {}),
                                     ("a_idem", 0, {"headers": {"Idempotency-Key": "same"}})):
                r = w.submit("ref_a", gap, **extra)
                assert r.status_code == 201, r.text
                w.ids[name] = r.json()["id"]
            r = client.post(f"/v1/evaluations/{w.ids['a_review']}/justification",
                            headers=w.h("ref_a"), data={"text": "checked under a lamp"},
                            files=[("photos", ("x.jpg", w.pair()[1]))])
            assert r.status_code == 201, r.text
            r = w.submit("ref_b", 0)
            assert r.status_code == 201, r.text
            w.ids["b_own"] = r.json()["id"]
            yield w


def _tenant_a_markers(w: World) -> list[str]:
    out = [v for k, v in w.ids.items() if k.startswith("a_")]
    for k in ("a_listed", "a_review"):
        ev = w.client.get(f"/v1/evaluations/{w.ids[k]}", headers=w.h("platform")).json()
        out += [ev["photos"]["front"]["sha256"], ev["photos"]["back"]["sha256"]]
    return [*out, "R001"]


# Every route, called with tenant B's refurbisher key on tenant A's data.
# (method, path, request kwargs, allowed statuses)
CROSS = [
    ("POST", "/v1/evaluations", {"as_a": True}, {403}),
    ("POST", "/v1/evaluations", {"idem_of_a": True}, {201}),  # keys are per refurbisher
    ("GET", "/v1/evaluations", {}, {200}),
    ("GET", "/v1/evaluations?refurbisher_id=R001", {}, {404}),
    ("GET", "/v1/evaluations/{a_listed}", {}, {404}),
    ("GET", "/v1/evaluations/{a_review}", {}, {404}),
    ("GET", "/v1/evaluations/{a_listed}/photos/front", {}, {404}),
    ("GET", "/v1/evaluations/{a_listed}/photos/back", {}, {404}),
    ("GET", "/v1/evaluations/{a_review}/photos/justification-1", {}, {404}),
    ("POST", "/v1/evaluations/{a_sugg}/accept-suggestion", {}, {404}),
    ("POST", "/v1/evaluations/{a_sugg}/keep-grade", {}, {404}),
    ("POST", "/v1/evaluations/{a_just}/justification", {"justify": True}, {404}),
    ("POST", "/v1/evaluations/{a_review}/approve", {"json": {}}, {403}),
    ("POST", "/v1/evaluations/{a_review}/override", {"json": {"grade": "fair"}}, {403}),
    ("POST", "/v1/returns", {"json": {"evaluation_id": "{a_listed}", "reason": "battery"}},
     {403}),
    ("GET", "/v1/dashboard/refurbisher/R001", {}, {404}),
    ("GET", "/v1/dashboard/platform", {}, {403}),
    ("GET", "/v1/dashboard/model-health", {}, {403}),
    ("GET", "/v1/me", {}, {200}),
    ("POST", "/v1/keys", {"json": {"role": "refurbisher", "refurbisher_id": "R001"}}, {403}),
    ("GET", "/v1/keys", {}, {403}),
    ("DELETE", "/v1/keys/000000000000", {}, {403}),
    ("GET", "/v1/admin/bundles", {}, {403}),
    ("GET", "/v1/admin/bundles/VERSION", {}, {403}),
    *(("POST", f"/v1/admin/bundles/VERSION/{action}", {}, {403})
      for action in ("promote", "shadow", "retire", "rollback")),
    ("POST", "/v1/grade", {"grade": True}, {200}),
    ("POST", "/v1/grade/batch", {"batch": True}, {200}),
    ("GET", "/v1/model", {}, {200}),  # bundle metadata, open like /healthz
]


def _call(w: World, who: str, method: str, path: str, kw: dict) -> httpx.Response:
    path = path.format(**w.ids)
    kw = dict(kw)
    if "json" in kw:
        kw["json"] = json.loads(json.dumps(kw["json"]).replace("{a_listed}", w.ids["a_listed"]))
    if kw.pop("as_a", False):
        return w.submit(who, grade="good", refurbisher_id="R001")
    if kw.pop("idem_of_a", False):
        return w.submit(who, grade="good", headers={"Idempotency-Key": "same"})
    if kw.pop("justify", False):
        kw = {"data": {"text": "this is my justification"},
              "files": [("photos", ("x.jpg", w.pairs[0][1]))]}
    if kw.pop("grade", False):
        kw = {"files": {"front": ("f.jpg", w.pairs[0][0]), "back": ("b.jpg", w.pairs[0][1])},
              "data": {"device": DEVICE}}
    if kw.pop("batch", False):
        import base64

        b64 = [base64.b64encode(x).decode() for x in w.pairs[0]]
        kw = {"json": {"devices": [{"id": "x", "front": b64[0], "back": b64[1],
                                    "device": INFO}]}}
    return w.client.request(method, path, headers=w.h(who), **kw)


@pytest.mark.parametrize(("method", "path", "kw", "allowed"), CROSS,
                         ids=[f"{m} {p}" for m, p, *_ in CROSS])
def test_another_tenant_never_reads_or_writes(world, method, path, kw, allowed):
    w = world
    before = {k: w.client.get(f"/v1/evaluations/{v}", headers=w.h("platform")).json()
              for k, v in w.ids.items() if k.startswith("a_")}
    r = _call(w, "ref_b", method, path, kw)
    assert r.status_code in allowed, (r.status_code, r.text)
    if r.status_code >= 400:
        assert r.headers["content-type"].startswith("application/problem+json")
    for marker in _tenant_a_markers(w):  # (a value the caller sent may be echoed back)
        if marker not in path.format(**w.ids) + json.dumps(kw).replace("{a_listed}",
                                                                      w.ids["a_listed"]):
            assert marker not in r.text, (marker, r.text[:500])
    if r.status_code == 200 and path == "/v1/evaluations":
        assert {e["refurbisher_id"] for e in r.json()["items"]} == {"R002"}
    after = {k: w.client.get(f"/v1/evaluations/{v}", headers=w.h("platform")).json()
             for k, v in w.ids.items() if k.startswith("a_")}
    assert after == before  # nothing of tenant A changed
    a_list = w.client.get("/v1/evaluations?refurbisher_id=R001&limit=200",
                          headers=w.h("platform")).json()
    assert {e["id"] for e in a_list["items"]} == {w.ids[k] for k in before}  # none added


def test_every_v1_route_is_covered_by_the_tenant_test(world):
    paths = world.client.get("/openapi.json").json()["paths"]
    routes = {(m.upper(), p) for p, ops in paths.items() if p.startswith("/v1") for m in ops}
    assert len(routes) >= 19
    covered = {(m, p.split("?")[0]) for m, p, *_ in CROSS}
    normal = {(m, p.replace("{a_listed}", "{evaluation_id}").replace("{a_review}",
              "{evaluation_id}").replace("{a_sugg}", "{evaluation_id}")
               .replace("{a_just}", "{evaluation_id}").replace("R001", "{refurbisher_id}")
               .replace("000000000000", "{key_id}").replace("photos/front", "photos/{name}")
               .replace("photos/back", "photos/{name}").replace("justification-1", "{name}")
               .replace("VERSION", "{version}"))
              for m, p in covered}
    assert routes <= normal, routes - normal


def test_requests_without_a_valid_key_are_401_problems(world):
    c = world.client
    for path in ("/v1/evaluations", "/v1/dashboard/platform", "/v1/me", "/v1/keys"):
        r = c.get(path)
        assert r.status_code == 401 and r.headers["www-authenticate"].startswith("Bearer")
        assert r.headers["content-type"].startswith("application/problem+json")
        for headers in ({"Authorization": "Bearer nope"}, {"X-API-Key": "pgk_x"},
                        {"Authorization": "Basic dXNlcjpwYXNz"}):
            assert c.get(path, headers=headers).status_code == 401
    r = c.post("/v1/grade", files={"front": ("f.jpg", b"x"), "back": ("b.jpg", b"x")},
               data={"device": DEVICE})
    assert r.status_code == 401
    me = c.get("/v1/me", headers={"X-API-Key": world.keys["ref_a"]}).json()
    assert me["role"] == "refurbisher" and me["refurbisher_id"] == "R001"
    assert c.get("/v1/grade", headers=world.h("admin")).status_code == 405
    r = c.post("/v1/grade", headers=world.h("admin"), files={
        "front": ("f.jpg", world.pairs[0][0]), "back": ("b.jpg", world.pairs[0][1])},
        data={"device": DEVICE})
    assert r.status_code == 403 and "admin" in r.json()["detail"]


def test_admin_keys_api_and_revocation(world):
    c, h = world.client, world.h("admin")
    r = c.post("/v1/keys", headers=h, json={"role": "refurbisher", "refurbisher_id": "R009"})
    assert r.status_code == 201 and r.json()["key"].startswith("pgk_")
    key, key_id = r.json()["key"], r.json()["id"]
    assert c.get("/v1/me", headers={"X-API-Key": key}).json()["refurbisher_id"] == "R009"
    listed = c.get("/v1/keys", headers=h).json()["items"]
    assert key_id in {k["id"] for k in listed} and key not in json.dumps(listed)
    assert c.delete(f"/v1/keys/{key_id}", headers=h).json()["revoked_at"]
    assert c.get("/v1/me", headers={"X-API-Key": key}).status_code == 401
    assert c.delete("/v1/keys/nope", headers=h).status_code == 404
    for body, field_ in (({"role": "refurbisher"}, "refurbisher_id"),
                         ({"role": "root"}, "role"),
                         ({"role": "platform", "refurbisher_id": "R1"}, "refurbisher_id"),
                         ({"role": "refurbisher", "refurbisher_id": "a b"}, "refurbisher_id")):
        r = c.post("/v1/keys", headers=h, json=body)
        assert r.status_code == 422 and r.json()["field"] == field_, r.text


def test_validated_grade_is_listed(world):
    ev = world.client.get(f"/v1/evaluations/{world.ids['a_listed']}",
                          headers=world.h("ref_a")).json()
    assert (ev["decision"], ev["gap"], ev["status"], ev["resolution"]) == (
        "validated", 0, "listed", "validated")
    assert ev["final_grade"] == ev["refurbisher_grade"] == ev["predicted_grade"]
    assert ev["listed_at"] and ev["bundle_version"] and ev["next_actions"] == []
    assert ev["prediction"]["parts"]["screen"]["condition"]
    for name in ("front", "back"):
        r = world.client.get(ev["photos"][name]["url"], headers=world.h("ref_a"))
        assert r.status_code == 200 and r.headers["content-type"] == "image/jpeg"
        import hashlib

        assert hashlib.sha256(r.content).hexdigest() == ev["photos"][name]["sha256"]
    r = world.client.get(f"/v1/evaluations/{ev['id']}/photos/side", headers=world.h("ref_a"))
    assert r.status_code == 404 and r.json()["field"] == "name"


@pytest.mark.parametrize("action", ["accept-suggestion", "keep-grade"])
def test_suggestion_accept_or_keep(world, action):
    w = world
    r = w.submit("ref_a", 1, device_ref="SKU-1", screen_condition="flawless")
    ev = r.json()
    assert r.status_code == 201 and r.headers["location"] == f"/v1/evaluations/{ev['id']}"
    assert (ev["decision"], ev["status"], ev["gap"]) == ("suggestion", "awaiting_refurbisher", 1)
    assert ev["next_actions"] == ["accept-suggestion", "keep-grade"]
    assert ev["declared"] == {"screen": "flawless", "shell": None}
    assert ev["device_ref"] == "SKU-1"
    done = w.client.post(f"/v1/evaluations/{ev['id']}/{action}", headers=w.h("ref_a"))
    assert done.status_code == 200, done.text
    d = done.json()
    assert d["status"] == "listed" and d["listed_at"]
    if action == "accept-suggestion":
        assert d["final_grade"] == ev["predicted_grade"] and not d["kept_grade"]
    else:
        assert d["final_grade"] == ev["refurbisher_grade"] and d["kept_grade"]
    again = w.client.post(f"/v1/evaluations/{ev['id']}/accept-suggestion", headers=w.h("ref_a"))
    assert again.status_code == 409
    body = again.json()
    assert body["current_status"] == "listed" and body["field"] == "status"
    assert "listed" in body["detail"]
    assert w.client.post(f"/v1/evaluations/{ev['id']}/keep-grade",
                         headers=w.h("platform")).status_code == 403


@pytest.mark.parametrize("action", ["approve", "override"])
def test_justification_then_review(world, action):
    w, c = world, world.client
    ev = w.submit("ref_a", 2).json()
    assert (ev["decision"], ev["status"]) == ("justification_required", "awaiting_justification")
    url = f"/v1/evaluations/{ev['id']}"
    assert c.post(f"{url}/accept-suggestion", headers=w.h("ref_a")).status_code == 409
    assert c.post(f"{url}/approve", headers=w.h("reviewer")).json()["current_status"] == \
        "awaiting_justification"
    extra = w.pair()
    r = c.post(f"{url}/justification", headers=w.h("ref_a"),
               data={"text": "  the shell only has a light mark  "},
               files=[("photos", ("a.jpg", extra[0])), ("photos", ("b.jpg", extra[1]))])
    assert r.status_code == 201, r.text
    j = r.json()
    assert j["status"] == "in_review" and j["next_actions"] == ["approve", "override"]
    assert j["justification"]["text"] == "the shell only has a light mark"
    assert len(j["justification"]["photos"]) == 2
    photo = c.get(j["justification"]["photos"][1]["url"], headers=w.h("reviewer"))
    assert photo.status_code == 200 and photo.content == extra[1]
    queue = c.get("/v1/evaluations?status=in_review&limit=200", headers=w.h("reviewer")).json()
    assert ev["id"] in {e["id"] for e in queue["items"]}
    assert c.post(f"{url}/justification", headers=w.h("ref_a"), data={"text": "again, again"},
                  files=[("photos", ("a.jpg", extra[0]))]).status_code == 409
    r, final = w.review(ev, action)
    assert r.status_code == 200, r.text
    d = r.json()
    assert (d["status"], d["final_grade"], d["review"]["action"]) == ("listed", final, action)
    assert d["resolution"] == ("approved" if action == "approve" else "overridden")
    assert c.post(f"{url}/approve", headers=w.h("reviewer")).status_code == 409


def test_bad_justifications(world):
    w, c = world, world.client
    url = f"/v1/evaluations/{w.ids['a_just']}/justification"
    ok_photo = ("photos", ("a.jpg", w.pairs[0][1]))
    cases = [
        ({"data": {"text": "long enough text"}}, 422, "photos"),
        ({"data": {"text": "short"}, "files": [ok_photo]}, 422, "text"),
        ({"files": [ok_photo]}, 422, "text"),
        ({"data": {"text": "long enough text"}, "files": [("photos", ("a.txt", b"hello"))]},
         415, "photos[0]"),
        ({"data": {"text": "long enough text"}, "files": [ok_photo] * 7}, 422, "photos"),
    ]
    for kw, status, field_ in cases:
        r = c.post(url, headers=w.h("ref_a"), **kw)
        assert r.status_code == status, (field_, r.text)
        assert r.json()["field"] == field_, r.text
    r = c.post("/v1/evaluations/0123/justification", headers=w.h("ref_a"),
               data={"text": "long enough text"}, files=[ok_photo])
    assert r.status_code == 404 and r.json()["field"] == "evaluation_id"
    assert c.get(f"/v1/evaluations/{w.ids['a_just']}", headers=w.h("ref_a")).json()[
        "status"] == "awaiting_justification"


def test_idempotency_key_replays_and_refuses_reuse(world):
    w = world
    pair = w.pair()
    first = w.submit("platform", grade="good", pair=pair, refurbisher_id="R003",
                     headers={"Idempotency-Key": "evt-42"})
    assert first.status_code == 201
    again = w.submit("platform", grade="good", pair=pair, refurbisher_id="R003",
                     headers={"Idempotency-Key": "evt-42"})
    assert again.status_code == 200 and again.headers["idempotent-replayed"] == "true"
    assert again.json()["id"] == first.json()["id"]
    other = w.submit("platform", grade="fair", pair=pair, refurbisher_id="R003",
                     headers={"Idempotency-Key": "evt-42"})
    assert other.status_code == 422 and other.json()["field"] == "Idempotency-Key"
    plain = [w.submit("platform", grade="good", pair=pair, refurbisher_id="R003")
             for _ in range(2)]
    assert plain[0].json()["id"] != plain[1].json()["id"]
    listed = w.client.get("/v1/evaluations?refurbisher_id=R003",
                          headers=w.h("platform")).json()
    assert listed["total"] == 3


def test_bad_evaluation_requests_name_the_field(world):
    w = world
    INFO_PHOTO = w.pairs[0][1]
    cases = [
        (dict(grade="mint"), 422, "refurbisher_grade"),
        (dict(grade="good", device="{oops"), 422, "device"),
        (dict(grade="good", device=json.dumps({**INFO, "storage_gb": "128"})), 422, "device"),
        (dict(grade="good", screen_condition="shattered"), 422, "screen_condition"),
        (dict(grade="good", shell_condition="dented"), 422, "shell_condition"),
        (dict(grade="good", refurbisher_id="R002"), 403, "refurbisher_id"),
        (dict(grade="good", headers={"Idempotency-Key": "x" * 300}), 422, "Idempotency-Key"),
        (dict(grade="good", pair=(b"not a photo", INFO_PHOTO)), 415, "front"),
    ]
    for kw, status, field_ in cases:
        r = w.submit("ref_a", **kw)
        assert r.status_code == status, (field_, r.text)
        assert field_ in r.json().get("field", "") + r.json()["detail"], (field_, r.text)
    r = w.client.post("/v1/evaluations", headers=w.h("ref_a"), data={"device": DEVICE},
                      files={"front": ("f.jpg", w.pairs[0][0]), "back": ("b.jpg", w.pairs[0][1])})
    assert r.status_code == 422 and r.json()["field"] == "refurbisher_grade"
    r = w.submit("platform", grade="good")
    assert r.status_code == 422 and r.json()["field"] == "refurbisher_id"
    r = w.submit("platform", grade="good", refurbisher_id="../R1")
    assert r.status_code == 422 and r.json()["field"] == "refurbisher_id"
    c, h = w.client, w.h("platform")
    for path, field_ in (("/v1/evaluations/nope", "evaluation_id"),
                         ("/v1/evaluations?status=sold", "status"),
                         ("/v1/evaluations?limit=0", "limit"),
                         ("/v1/evaluations?since=yesterday", "since"),
                         ("/v1/dashboard/platform?days=0", "days"),
                         ("/v1/dashboard/refurbisher/R404", "refurbisher_id")):
        r = c.get(path, headers=h)
        assert r.status_code in (404, 422) and r.json()["field"] == field_, (path, r.text)
    url = f"/v1/evaluations/{w.ids['a_review']}/override"
    for body, field_ in (({}, "grade"), ({"grade": "mint"}, "grade"),
                         ({"grade": "good", "why": 1}, "why")):
        r = c.post(url, headers=w.h("reviewer"), json=body)
        assert r.status_code == 422 and r.json()["field"] == field_, r.text


def test_returns_and_claims(world):
    w, c, h = world, world.client, world.h("platform")
    listed = w.ids["a_listed"]
    ok = {"evaluation_id": listed, "reason": "cosmetic_worse_than_described"}
    cases = [
        ({**ok, "reason": "didnt_like_it"}, 422, "reason"),
        ({**ok, "kind": "refund"}, 422, "kind"),
        ({**ok, "evaluation_id": "nope"}, 404, "evaluation_id"),
        ({**ok, "evaluation_id": w.ids["a_sugg"]}, 409, "evaluation_id"),
        ({**ok, "occurred_at": "2999-01-01T00:00:00Z"}, 422, "occurred_at"),
        ({**ok, "occurred_at": "last week"}, 422, "occurred_at"),
        ({"reason": "battery"}, 422, "evaluation_id"),
    ]
    for body, status, field_ in cases:
        r = c.post("/v1/returns", headers=h, json=body)
        assert r.status_code == status, (body, r.text)
        assert r.json()["field"] == field_, r.text
    first = c.post("/v1/returns", headers={**h, "Idempotency-Key": "ret-1"}, json=ok)
    assert first.status_code == 201, first.text
    again = c.post("/v1/returns", headers={**h, "Idempotency-Key": "ret-1"}, json=ok)
    assert again.status_code == 200 and again.json()["id"] == first.json()["id"]
    dup = c.post("/v1/returns", headers=h, json=ok)
    assert dup.status_code == 409 and dup.json()["type"].endswith("already-returned")
    claim = c.post("/v1/returns", headers=h, json={**ok, "kind": "claim", "reason": "battery",
                                                   "occurred_at": "2026-01-05"})
    assert claim.status_code == 201 and claim.json()["occurred_at"].startswith("2026-01-05")
    ev = c.get(f"/v1/evaluations/{listed}", headers=w.h("ref_a")).json()
    assert [r["kind"] for r in ev["returns"]] == ["return", "claim"]
    for who in ("ref_a", "reviewer", "admin"):
        assert c.post("/v1/returns", headers=w.h(who), json=ok).status_code == 403


def test_dashboards(world):
    w, c = world, world.client
    mine = c.get("/v1/dashboard/refurbisher/R001?days=30", headers=w.h("ref_a"))
    assert mine.status_code == 200, mine.text
    d = mine.json()
    all_a = c.get("/v1/evaluations?limit=200", headers=w.h("ref_a")).json()
    assert d["evaluations"] == all_a["total"]
    assert sum(d["performance"]["decisions"].values()) == d["evaluations"]
    assert d["performance"]["validated_share"] == pytest.approx(
        d["performance"]["decisions"]["validated"] / d["evaluations"], abs=1e-3)
    assert [x["category"] for x in d["categories"]] == ["screen", "shell", "functional"]
    assert len(d["returns"]["weekly"]) >= 5
    corr = {x["id"] for x in d["recent_corrections"]}
    assert w.ids["a_sugg"] in corr and w.ids["a_listed"] not in corr
    assert 0 <= d["trust"]["score"] <= 100
    assert c.get("/v1/dashboard/refurbisher/R001", headers=w.h("reviewer")).status_code == 200
    p = c.get("/v1/dashboard/platform?days=7", headers=w.h("reviewer")).json()
    everything = c.get("/v1/evaluations?limit=1", headers=w.h("platform")).json()["total"]
    assert p["evaluations"] == everything == sum(p["gap_distribution"].values())
    assert p["gaps_2_or_more"] == sum(v for k, v in p["gap_distribution"].items() if int(k) >= 2)
    assert p["queues"]["in_review"] >= 1 and p["justifications"] >= 1
    assert {r["refurbisher_id"] for r in p["refurbishers"]} >= {"R001", "R002"}
    assert p["trust_quartiles"]["min"] <= p["trust_quartiles"]["median"] <= \
        p["trust_quartiles"]["max"]
    assert sum(wk["total"] for wk in p["predicted_grades_weekly"]) == everything


def test_rate_limit_per_key_answers_429_with_retry_after(tmp_path, grader):
    app = workflow_app(f"sqlite:///{tmp_path / 'rl.db'}", tmp_path, grader, rate_limit_per_minute=6,
               rate_limit_burst=2, rate_limits={})  # platform keys under the default limit
    with TestClient(app) as c:
        key = create_key(app.state.workflow.db, "platform")[1]
        other = create_key(app.state.workflow.db, "platform")[1]
        codes = [c.get("/v1/me", headers={"X-API-Key": key}).status_code for _ in range(3)]
        assert codes == [200, 200, 429]
        r = c.get("/v1/me", headers={"X-API-Key": key})
        assert r.status_code == 429 and int(r.headers["retry-after"]) >= 1
        assert r.headers["content-type"].startswith("application/problem+json")
        assert c.get("/v1/me", headers={"X-API-Key": other}).status_code == 200


def test_auth_can_be_turned_off(tmp_path, grader, pairs):
    app = workflow_app(f"sqlite:///{tmp_path / 'open.db'}", tmp_path, grader, auth_required=False)
    with TestClient(app) as c:
        files = {"front": ("f.jpg", pairs[0][0]), "back": ("b.jpg", pairs[0][1])}
        r = c.post("/v1/evaluations", files=files, data={"device": DEVICE,
                                                         "refurbisher_grade": "good",
                                                         "refurbisher_id": "R001"})
        assert r.status_code == 201, r.text
        assert c.get(f"/v1/evaluations/{r.json()['id']}").status_code == 200
        assert c.get("/v1/me").json()["auth_required"] is False
