"""Workflow storage on SQLite and PostgreSQL: migrations, keys, idempotency, transitions under
concurrency, returns, seeding and dashboards; the photo store, the rate limiter, the CLI."""

from __future__ import annotations

import datetime as dt
import threading

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import func, inspect, select

from fusion.trust import trust_score
from photograde.seed import seed_history
from serve import evaluations as evals
from serve.auth import (
    Principal,
    RateLimiter,
    authenticate,
    create_key,
    hash_key,
    list_keys,
    revoke_key,
)
from serve.dashboard import platform_dashboard, refurbisher_dashboard
from serve.db import Database, alembic_config
from serve.models import ApiKey, Base, Evaluation, Photo, ReturnReport
from serve.photostore import LocalPhotoStore, sha256
from serve.problems import Problem
from serve.responses import EvaluationOut
from tabular.schema import parse_device_info
from tests.support import DB_KINDS, INFO, database_url, grade_at_gap, small_photos


@pytest.fixture(scope="module")
def pairs(synth_dir):
    return small_photos(synth_dir, 6)


def _evaluation(grader, pair, refurbisher_grade, refurbisher_id="R001", key=None):
    info = parse_device_info(INFO)
    result = grader.grade(pair[0], pair[1], info, refurbisher_grade)
    fp = evals.request_fingerprint(front=sha256(pair[0]), back=sha256(pair[1]),
                                   grade=refurbisher_grade, refurbisher=refurbisher_id)
    ev = evals.build_evaluation(grader.policy, result, refurbisher_id=refurbisher_id,
                                refurbisher_grade=refurbisher_grade,
                                info=info.model_dump(mode="json"), front_sha256=sha256(pair[0]),
                                back_sha256=sha256(pair[1]), request_sha256=fp,
                                idempotency_key=key)
    return ev, result


def _grade_for(grader, pair, gap):
    predicted = grader.grade(pair[0], pair[1], parse_device_info(INFO)).grade
    return grade_at_gap(list(grader.policy.grades), predicted, gap)


def _saved(db, store, grader, pair, gap):
    """An evaluation of ``pair`` at ``gap`` grades from the model's, saved; (it, its result)."""
    ev, result = _evaluation(grader, pair, _grade_for(grader, pair, gap))
    evals.save_evaluation(db, store, ev, *pair)
    return ev, result


@pytest.mark.parametrize("kind", DB_KINDS)
def test_migration_creates_exactly_the_models_tables(kind, tmp_path):
    with database_url(kind, tmp_path) as url:
        d = Database(url)
        d.migrate()
        d.migrate()  # idempotent
        names = set(inspect(d.engine).get_table_names())
        assert names == set(Base.metadata.tables) | {"alembic_version"}
        with d.engine.connect() as conn:
            diff = compare_metadata(MigrationContext.configure(conn, opts={
                "compare_type": True}), Base.metadata)
        assert diff == [], diff  # columns, types, indexes, constraints: as the models say
        for table in Base.metadata.tables.values():
            got = {c["name"] for c in inspect(d.engine).get_columns(table.name)}
            assert got == {c.name for c in table.columns}, table.name
        cfg = alembic_config(url)
        command.downgrade(cfg, "base")
        assert set(inspect(d.engine).get_table_names()) <= {"alembic_version"}
        d.migrate()
        assert set(inspect(d.engine).get_table_names()) >= set(Base.metadata.tables)
        d.dispose()


def test_sqlite_is_wal_and_synchronous_full(tmp_path):
    d = Database(f"sqlite:///{tmp_path / 'x.db'}")
    d.migrate()
    with d.engine.connect() as c:
        assert c.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert c.exec_driver_sql("PRAGMA synchronous").scalar() == 2  # FULL
        assert c.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
    d.dispose()


def test_keys_are_hashed_found_by_prefix_and_revocable(db):
    record, key = create_key(db, "refurbisher", "R001", name="shop")
    assert key.startswith(f"pgk_{record['id']}_") and len(key) > 50
    with db.read() as s:
        row = s.get(ApiKey, record["id"])
        assert row.secret_sha256 == hash_key(key) and key not in (row.secret_sha256, row.id)
    who = authenticate(db, key)
    assert who == Principal(record["id"], "refurbisher", "R001", "shop")
    for bad in (None, "", "nope", key[:-1] + ("A" if key[-1] != "A" else "B"),
                f"pgk_{'0' * 12}_{key.rsplit('_', 1)[1]}"):
        with pytest.raises(Problem) as e:
            authenticate(db, bad)
        assert e.value.status == 401 and "WWW-Authenticate" in e.value.headers
    assert revoke_key(db, record["id"])["revoked_at"]
    with pytest.raises(Problem, match="revoked"):
        authenticate(db, key)
    assert revoke_key(db, "000000000000") is None
    assert [k["id"] for k in list_keys(db)] == [record["id"]]
    for role, ref in (("refurbisher", None), ("platform", "R001"), ("root", None)):
        with pytest.raises(ValueError):
            create_key(db, role, ref)


def test_idempotent_save_under_concurrency(db, store, grader, pairs):
    pair = pairs[0]
    evs = [_evaluation(grader, pair, "good", key="k-1")[0] for _ in range(8)]
    results, errors = [], []

    def save(ev):
        try:
            results.append(evals.save_evaluation(db, store, ev, *pair))
        except Exception as e:  # pragma: no cover - reported below
            errors.append(e)

    threads = [threading.Thread(target=save, args=(ev,)) for ev in evs]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    assert sum(created for _, created in results) == 1
    assert len({ev.id for ev, _ in results}) == 1
    with db.read() as s:
        assert s.scalar(select(func.count()).select_from(Evaluation)) == 1
        assert s.scalar(select(func.count()).select_from(Photo)) == 2
    assert store.get(sha256(pair[0])) == pair[0] and store.get(sha256(pair[1])) == pair[1]
    other, _ = _evaluation(grader, pair, "fair", key="k-1")  # same key, new content
    with pytest.raises(Problem) as e:
        evals.save_evaluation(db, store, other, *pair)
    assert e.value.status == 422 and e.value.field == "Idempotency-Key"


def test_concurrent_transitions_only_one_wins(db, tmp_path, grader, pairs):
    store = LocalPhotoStore(tmp_path / "photos")
    pair = pairs[1]
    ev, _ = _saved(db, store, grader, pair, 1)
    assert ev.status == "awaiting_refurbisher"
    who = Principal(None, "refurbisher", "R001")
    outcomes: list[str] = []

    def act(action):
        try:
            outcomes.append(evals.act(db, who, ev.id, action)["resolution"])
        except Problem as p:
            outcomes.append(str(p.status))

    threads = [threading.Thread(target=act, args=(a,))
               for a in ("accept-suggestion", "keep-grade") * 3]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(outcomes).count("409") == 5, outcomes
    final = evals.load(db, who, ev.id)
    assert final["status"] == "listed" and final["resolution"] in outcomes
    with pytest.raises(Problem) as e:
        evals.load(db, Principal(None, "refurbisher", "R002"), ev.id)
    assert e.value.status == 404


def test_justification_review_and_returns(db, tmp_path, grader, pairs):
    store = LocalPhotoStore(tmp_path / "photos")
    pair = pairs[2]
    ev, _ = _saved(db, store, grader, pair, 2)
    assert ev.status == "awaiting_justification"
    ref = Principal(None, "refurbisher", "R001")
    out = evals.justify(db, store, ref, ev.id, "the back is fine, see photo", [pairs[3][1]])
    assert out["status"] == "in_review"
    assert out["justification"]["photos"][0]["sha256"] == sha256(pairs[3][1])
    out = evals.act(db, Principal(None, "reviewer"), ev.id, "override", grade="fair",
                    comment="scratches visible")
    assert (out["status"], out["resolution"], out["final_grade"]) == ("listed", "overridden",
                                                                      "fair")
    assert out["review"]["action"] == "override"
    plat = Principal(None, "platform")
    kw = dict(evaluation_id=ev.id, kind="return", reason="battery", comment=None,
              occurred_at=None)
    row, created = evals.report_return(db, plat, idempotency_key="r-1", **kw)
    again, created2 = evals.report_return(db, plat, idempotency_key="r-1", **kw)
    assert created and not created2 and again.id == row.id
    with pytest.raises(Problem) as e:
        evals.report_return(db, plat, idempotency_key="r-2", **kw)
    assert e.value.status == 409 and e.value.kind == "already-returned"
    with pytest.raises(Problem) as e:
        evals.report_return(db, plat, idempotency_key="r-1", **{**kw, "reason": "other"})
    assert e.value.status == 422
    for _ in range(2):
        evals.report_return(db, plat, idempotency_key=None, **{**kw, "kind": "claim"})
    with db.read() as s:
        assert s.scalar(select(func.count()).select_from(ReturnReport)) == 3


def test_evaluation_json_is_what_its_response_model_writes(db, tmp_path, grader, pairs):
    store = LocalPhotoStore(tmp_path / "photos")
    ev, result = _saved(db, store, grader, pairs[4], 2)
    assert ev.prediction == result.prediction().model_dump(mode="json")
    out = evals.justify(db, store, Principal(None, "refurbisher", "R001"), ev.id,
                        "the back is fine, see photo", [pairs[5][1]])
    out = evals.act(db, Principal(None, "reviewer"), ev.id, "override", grade="fair")
    for stored in (out, evals.load(db, Principal(None, "platform"), ev.id)):
        typed = EvaluationOut.model_validate(stored).model_dump(mode="json")
        assert typed == stored and list(typed) == list(stored)
        assert list(typed["prediction"]) == list(stored["prediction"])


def test_seed_history_stores_the_models_predictions_and_fills_dashboards(db, tmp_path,
                                                                         grader, synth_dir):
    store = LocalPhotoStore(tmp_path / "photos")
    today = dt.date(2026, 3, 1)
    with pytest.raises(ValueError, match="grader"):
        seed_history(db, store, synth_dir / "manifest.csv")
    counts = seed_history(db, store, synth_dir / "manifest.csv", grader=grader, today=today)
    assert counts["evaluations"] == 24 and counts.get("listed", 0) > 0
    assert seed_history(db, store, synth_dir / "manifest.csv", grader=grader,
                        today=today) == {"skipped": 24}
    from training.manifest import load_manifest

    rows = {r.device_id: r for r in load_manifest(synth_dir / "manifest.csv").rows}
    with db.read() as s:
        stored = s.scalars(select(Evaluation)).all()
        for ev in stored[:5]:
            row = rows[ev.device_ref]
            expected = grader.grade(row.front_path, row.back_path, row.device_info(),
                                    row.refurbisher_grade).model_dump(mode="json")
            assert ev.predicted_grade == expected["grade"]
            assert ev.confidence == pytest.approx(expected["confidence"])
            assert store.get(ev.front_sha256) == row.front_path.read_bytes()
        assert max(ev.created_at for ev in stored).date() <= today
    now = dt.datetime.combine(today, dt.time(23), dt.UTC)
    plat = platform_dashboard(db, grader.policy, days=120, now=now)
    assert plat["evaluations"] == 24
    assert sum(plat["gap_distribution"].values()) == 24
    assert sum(w["total"] for w in plat["predicted_grades_weekly"]) == 24
    assert plat["trust_quartiles"]["min"] <= plat["trust_quartiles"]["max"]
    rid = plat["refurbishers"][0]["refurbisher_id"]
    mine = refurbisher_dashboard(db, rid, days=120, now=now)
    assert mine["evaluations"] == plat["refurbishers"][0]["evaluations"]
    assert {c["category"] for c in mine["categories"]} == {"screen", "shell", "functional"}
    assert all(0 <= c["score"] <= 100 for c in mine["categories"])
    assert all(r["gap"] > 0 for r in mine["recent_corrections"])
    assert refurbisher_dashboard(db, rid, days=1, now=now + dt.timedelta(days=400))[
        "evaluations"] == 0


def test_trust_score_is_smoothed_toward_the_market():
    market_v, market_r = 0.5, 0.1
    newcomer = trust_score(0, 0, 0, 0, market_v, market_r)
    assert newcomer == pytest.approx(100 * (0.5 * 0.5 + 0.5 * (1 - 0.1 / 0.25)), abs=0.1)
    good = trust_score(95, 100, 1, 100, market_v, market_r)
    bad = trust_score(10, 100, 30, 100, market_v, market_r)
    assert bad < newcomer < good <= 100 and bad >= 0
    assert trust_score(1, 1, 0, 1, market_v, market_r) - newcomer < 5  # one case moves little


def test_photo_store_is_content_addressed_and_never_overwrites(tmp_path):
    store = LocalPhotoStore(tmp_path)
    d = store.put(b"\xff\xd8\xff photo")
    path = store.path(d)
    assert path == tmp_path / d[:2] / d and path.read_bytes() == b"\xff\xd8\xff photo"
    inode = path.stat().st_ino
    assert store.put(b"\xff\xd8\xff photo") == d and path.stat().st_ino == inode
    assert not list(path.parent.glob(".*.tmp"))
    with pytest.raises(ValueError):
        store.path("../etc/passwd")


def test_rate_limiter_token_bucket():
    now = [0.0]
    lim = RateLimiter(per_minute=60, burst=3, clock=lambda: now[0])
    assert [lim.take("k") for _ in range(3)] == [0, 0, 0]
    assert lim.take("k") == pytest.approx(1.0)
    assert lim.take("other") == 0  # per key
    now[0] += 1.0
    assert lim.take("k") == 0
    with pytest.raises(Problem) as e:
        lim.check("k")
    assert e.value.status == 429 and e.value.headers["Retry-After"] == "1"
    assert RateLimiter(0).take("k") == 0  # off


def test_cli_keys_create_list_revoke(tmp_path, capsys, monkeypatch):
    from photograde.cli import main

    url = f"sqlite:///{tmp_path / 'cli.db'}"
    monkeypatch.setenv("PHOTOGRADE_DATABASE_URL", url)
    assert main(["keys", "create", "--role", "refurbisher", "--refurbisher", "R007",
                 "--name", "shop 7"]) == 0
    out = capsys.readouterr()
    key = out.out.strip()
    assert key.startswith("pgk_") and "shown only once" in out.err
    key_id = key.split("_")[1]
    assert main(["keys", "list"]) == 0
    listing = capsys.readouterr().out
    assert key_id in listing and "R007" in listing and "active" in listing
    assert key not in listing
    assert main(["keys", "revoke", key_id]) == 0
    assert main(["keys", "list", "--database-url", url]) == 0
    assert "revoked" in capsys.readouterr().out
    assert main(["keys", "create", "--role", "refurbisher"]) == 2
    assert "--refurbisher" in capsys.readouterr().err
    assert main(["keys", "revoke", "nope"]) == 2
    d = Database(url)
    with pytest.raises(Problem):
        authenticate(d, key)
    d.dispose()
