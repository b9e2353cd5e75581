"""Crash safety: SIGKILL the server (a real ``photograde serve`` process on SQLite) while 200
evaluations are being submitted concurrently, restart it, retry every unanswered request with
its Idempotency-Key, and check that every acknowledged evaluation is stored with its photos and
that nothing was stored twice."""

from __future__ import annotations

import asyncio
import hashlib
import json
import os

import httpx
import pytest
from sqlalchemy import func, select

from serve.auth import create_key
from serve.db import Database
from serve.models import Evaluation
from tests.support import INFO, PHOTOGRADE_SERVE, ServerProcess, small_photos

pytestmark = pytest.mark.torch  # a trained bundle
N = 200
CONCURRENCY = 32
KILL_AFTER = 70  # acknowledged submissions before the SIGKILL


async def _submit_all(url: str, key: str, pairs, indexes, on_ack=None) -> dict[int, httpx.Response
                                                                                | Exception]:
    sem = asyncio.Semaphore(CONCURRENCY)
    out: dict[int, httpx.Response | Exception] = {}
    limits = httpx.Limits(max_connections=CONCURRENCY)
    async with httpx.AsyncClient(timeout=60, limits=limits) as client:
        async def one(i: int) -> None:
            async with sem:
                front, back = pairs[i]
                try:
                    r = await client.post(
                        url + "/v1/evaluations",
                        headers={"X-API-Key": key, "Idempotency-Key": f"kill-{i}"},
                        files={"front": ("f.jpg", front), "back": ("b.jpg", back)},
                        data={"device": json.dumps(INFO), "refurbisher_id": f"R{i % 4 + 1:03d}",
                              "refurbisher_grade": ("excellent", "good", "fair")[i % 3]})
                    out[i] = r
                    if on_ack and r.is_success:
                        on_ack()
                except httpx.HTTPError as e:
                    out[i] = e

        await asyncio.gather(*(one(i) for i in indexes))
    return out


@pytest.mark.slow
def test_kill_9_during_200_concurrent_submissions(bundle, synth_dir, tmp_path):
    pairs = small_photos(synth_dir, N)
    assert len({p for pair in pairs for p in pair}) == 2 * N  # every photo is distinct
    url = f"sqlite:///{tmp_path / 'photograde.db'}"
    photo_dir = tmp_path / "photos"
    db = Database(url)
    db.migrate()
    key = create_key(db, "platform", name="durability test")[1]
    env = {**os.environ, "PHOTOGRADE_DATABASE_URL": url, "PHOTOGRADE_PHOTO_DIR": str(photo_dir),
           "PHOTOGRADE_RATE_LIMIT_PER_MINUTE": "0", "PHOTOGRADE_QUEUE_SIZE": "512",
           "PHOTOGRADE_MAX_WAIT_MS": "2",
           "PHOTOGRADE_PHOTO_CHECK": "false"}  # small synthetic photos, often soft
    server = ServerProcess([*PHOTOGRADE_SERVE, "--bundle", str(bundle), "--threads", "1"], env,
                           tmp_path / "server.log")

    first_url = server.start()
    acks = 0

    def on_ack() -> None:
        nonlocal acks
        acks += 1
        if acks == KILL_AFTER:
            server.kill()

    first = asyncio.run(_submit_all(first_url, key, pairs, range(N), on_ack))
    server.kill()
    acked = {i: r.json() for i, r in first.items()
             if isinstance(r, httpx.Response) and r.is_success}
    unanswered = [i for i in range(N) if i not in acked]
    assert KILL_AFTER <= len(acked) < N and unanswered  # the kill happened mid-way

    second_url = server.start()  # restart on the same database and photo folder
    try:
        retry = asyncio.run(_submit_all(second_url, key, pairs, unanswered))
        sample = sorted(acked)[:10]
        replays = asyncio.run(_submit_all(second_url, key, pairs, sample))
    finally:
        server.kill()
    assert all(isinstance(r, httpx.Response) and r.is_success for r in retry.values()), \
        {i: str(r) for i, r in retry.items() if not getattr(r, "is_success", False)}
    replayed = sum(r.headers.get("idempotent-replayed") == "true" for r in retry.values())
    for i in sample:  # an acknowledged evaluation replays, with the same id
        assert replays[i].status_code == 200 and replays[i].json()["id"] == acked[i]["id"]

    with db.read() as s:
        rows = {e.idempotency_key: e for e in s.scalars(select(Evaluation))}
        per_key = s.execute(select(Evaluation.idempotency_key, func.count())
                            .group_by(Evaluation.idempotency_key)
                            .having(func.count() > 1)).all()
    with db.engine.connect() as c:
        assert c.exec_driver_sql("PRAGMA integrity_check").scalar() == "ok"
    db.dispose()
    assert per_key == []  # no duplicates
    assert len(rows) == N
    for i in range(N):
        ev = rows[f"kill-{i}"]
        if i in acked:
            assert ev.id == acked[i]["id"]
        for data, digest in zip(pairs[i], (ev.front_sha256, ev.back_sha256), strict=True):
            assert hashlib.sha256(data).hexdigest() == digest
            stored = photo_dir / digest[:2] / digest
            assert hashlib.sha256(stored.read_bytes()).hexdigest() == digest
    print(f"\nkill -9 after {KILL_AFTER} acks: {len(acked)} acknowledged before the kill, "
          f"{len(unanswered)} unanswered and retried ({replayed} of them had been stored "
          f"before the kill and were replayed), {len(rows)} evaluations stored, "
          f"0 duplicates, photos verified: {2 * N}")
