"""Three ``photograde serve`` replicas (separate processes on separate ports, as separate machines
would be) behind HAProxy, sharing PostgreSQL, the S3 photo store and Redis. 200 concurrent
evaluation submissions, each with an ``Idempotency-Key`` and retried by its client on connection
errors and 502/503/504; one replica is killed with SIGKILL midway. Every acknowledged
evaluation is stored once with its photos in S3, and a key's rate limit holds across replicas.

Needs haproxy (Debian) and the test servers of scripts/test-postgres, scripts/test-s3 and
scripts/test-redis (.ci/run starts them and installs haproxy); skipped otherwise."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
from sqlalchemy import func, select

from serve.auth import create_key
from serve.db import Database
from serve.models import Evaluation
from serve.photostore import open_photo_store
from serve.settings import Settings
from tests.support import (
    INFO,
    PG_ENV,
    PHOTOGRADE_SERVE,
    REDIS_ENV,
    S3_ENV,
    ServerProcess,
    database_url,
    free_port,
    s3_settings,
    small_photos,
    wait_ready,
)

REPLICAS, SUBMISSIONS, CLIENTS, KILL_AFTER = 3, 200, 24, 60
LIMIT, BURST, LIMITED_CALLS = 10, 5, 30  # the refurbisher key: 10 a minute, 5 saved up
RETRIED = {502, 503, 504}

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not shutil.which("haproxy"), reason="haproxy is not installed"),
    *(pytest.mark.skipif(not os.environ.get(v), reason=f"{v} is not set")
      for v in (PG_ENV, S3_ENV, REDIS_ENV)),
]

HAPROXY_CFG = """global
    maxconn 2000
defaults
    mode http
    timeout connect 2s
    timeout client 60s
    timeout server 60s
    retries 3
    option redispatch 1
    retry-on conn-failure empty-response response-timeout
frontend photograde
    bind 127.0.0.1:{port}
    default_backend replicas
backend replicas
    balance roundrobin
    option httpchk GET /readyz
    http-check expect status 200
    default-server inter 300ms fall 1 rise 2
{servers}
"""


def _haproxy(tmp: Path, ports: list[int]) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    cfg = tmp / "haproxy.cfg"
    cfg.write_text(HAPROXY_CFG.format(port=port, servers="\n".join(
        f"    server r{i} 127.0.0.1:{p} check" for i, p in enumerate(ports))))
    log = (tmp / "haproxy.log").open("wb")
    proc = subprocess.Popen(["haproxy", "-f", str(cfg), "-db"], stdout=log,
                            stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    wait_ready(url, 30, exited=lambda: None if proc.poll() is None else
               (tmp / "haproxy.log").read_text())
    return proc, url


class Submissions:
    """SUBMISSIONS evaluations posted through the load balancer by CLIENTS threads, each
    retried with its Idempotency-Key until acknowledged (201, or 200 when replayed)."""

    def __init__(self, url: str, key: str, grade: str, pairs: list[tuple[bytes, bytes]]):
        self.url, self.key, self.grade, self.pairs = url, key, grade, pairs
        self.acknowledged: dict[str, str] = {}  # Idempotency-Key -> evaluation id
        self.retries, self.replayed, self.failures = 0, 0, []  # type: ignore[var-annotated]
        self.lock = threading.Lock()

    def one(self, client: httpx.Client, i: int) -> None:
        front, back = self.pairs[i % len(self.pairs)]
        key = f"replicas-{i}"
        for attempt in range(30):
            try:
                r = client.post(f"{self.url}/v1/evaluations", headers={
                    "X-API-Key": self.key, "Idempotency-Key": key}, data={
                    "device": json.dumps(INFO), "refurbisher_grade": self.grade,
                    "refurbisher_id": "R001"}, files={"front": ("f.jpg", front),
                                                      "back": ("b.jpg", back)})
            except httpx.TransportError:
                r = None
            if r is None or r.status_code in RETRIED:
                with self.lock:
                    self.retries += 1
                time.sleep(0.1 * (attempt + 1))
                continue
            with self.lock:
                if r.status_code in (200, 201):
                    self.acknowledged[key] = r.json()["id"]
                    self.replayed += r.status_code == 200
                else:
                    self.failures.append((key, r.status_code, r.text[:200]))
            return
        with self.lock:
            self.failures.append((key, "gave up", ""))

    def run(self, kill: ServerProcess) -> None:
        """All submissions; ``kill`` is SIGKILLed once KILL_AFTER are acknowledged."""
        def killer() -> None:
            while len(self.acknowledged) < KILL_AFTER and not done.is_set():
                time.sleep(0.01)
            kill.kill()

        done = threading.Event()
        watcher = threading.Thread(target=killer)
        watcher.start()
        with httpx.Client(timeout=60) as client, ThreadPoolExecutor(CLIENTS) as pool:
            list(pool.map(lambda i: self.one(client, i), range(SUBMISSIONS)))
        done.set()
        watcher.join()


def _limited(urls: list[str], key: str) -> tuple[int, float]:
    """LIMITED_CALLS reads with one key spread over the surviving replicas (directly, not
    through the balancer); (accepted, seconds taken)."""
    t0 = time.monotonic()
    with httpx.Client(timeout=30) as client, ThreadPoolExecutor(6) as pool:
        codes = list(pool.map(lambda i: client.get(
            f"{urls[i % len(urls)]}/v1/evaluations?limit=1",
            headers={"X-API-Key": key}).status_code, range(LIMITED_CALLS)))
    assert set(codes) <= {200, 429}, codes
    return codes.count(200), time.monotonic() - t0


def test_three_replicas_one_killed_midway(bundle, grader, synth_dir, tmp_path, capsys):
    started = time.monotonic()
    with database_url("postgresql", tmp_path) as url:
        db = Database(url)
        db.migrate()  # once, before the replicas start
        platform = create_key(db, "platform")[1]
        refurbisher = create_key(db, "refurbisher", "R001")[1]
        store = s3_settings()
        env = {**os.environ, "PHOTOGRADE_DATABASE_URL": url,
               "PHOTOGRADE_PHOTO_STORE": store["photo_store"],
               "PHOTOGRADE_S3_ENDPOINT_URL": store["s3_endpoint_url"],
               "PHOTOGRADE_REDIS_URL": os.environ[REDIS_ENV], "PHOTOGRADE_PHOTO_CHECK": "false",
               "PHOTOGRADE_RATE_LIMIT_PER_MINUTE": str(LIMIT),
               "PHOTOGRADE_RATE_LIMIT_BURST": str(BURST),
               "PHOTOGRADE_RATE_LIMITS": json.dumps({"platform": 1_000_000}),
               "PHOTOGRADE_AUTH_FAILURES_PER_MINUTE": "0"}
        replicas = [ServerProcess([*PHOTOGRADE_SERVE, "--bundle", str(bundle), "--threads", "1"],
                                  env, tmp_path / f"replica-{i}.log") for i in range(REPLICAS)]
        with ThreadPoolExecutor(REPLICAS) as pool:
            list(pool.map(lambda r: r.start(), replicas))
        balancer, lb_url = _haproxy(tmp_path, [r.port for r in replicas])
        try:
            load = Submissions(lb_url, platform, grader.policy.grades[0],
                               small_photos(synth_dir, 12))
            load.run(kill=replicas[0])
            accepted, seconds = _limited([r.url for r in replicas[1:]], refurbisher)
        finally:
            balancer.terminate()
            balancer.wait(10)
            for r in replicas:
                r.stop()
        with db.read() as s:
            rows = s.execute(select(Evaluation.id, Evaluation.idempotency_key,
                                    Evaluation.front_sha256, Evaluation.back_sha256)).all()
            duplicates = s.scalar(select(func.count()).select_from(
                select(Evaluation.idempotency_key).group_by(Evaluation.idempotency_key)
                .having(func.count() > 1).subquery()))
        db.dispose()
    photos = open_photo_store(Settings(**store))  # type: ignore[arg-type]
    digests = {d for row in rows for d in (row.front_sha256, row.back_sha256)}
    missing = [d for d in digests if not photos.exists(d)]
    stored = {row.idempotency_key: row.id for row in rows}
    bound = BURST + LIMIT * seconds / 60  # a bucket's most in `seconds`, however many replicas
    capsys.readouterr()
    print(f"\n{REPLICAS} replicas behind HAProxy, replica 0 killed (SIGKILL) after "
          f"{KILL_AFTER} acknowledgements: {SUBMISSIONS} submissions by {CLIENTS} clients, "
          f"{len(load.acknowledged)} acknowledged ({load.replayed} as idempotent replays, "
          f"{load.retries} client retries), {len(stored)} stored, {duplicates} duplicates, "
          f"{len(digests)} distinct photos all in S3 ({len(missing)} missing); rate limit "
          f"{LIMIT}/min burst {BURST}: {accepted} of {LIMITED_CALLS} accepted across "
          f"{REPLICAS - 1} replicas in {seconds:.1f} s (bound {bound:.1f}); "
          f"{time.monotonic() - started:.0f} s in all")
    assert replicas[0].proc is not None and replicas[0].proc.returncode == -9  # SIGKILLed
    assert load.failures == [], load.failures[:5]
    assert len(load.acknowledged) == SUBMISSIONS
    assert stored == load.acknowledged and duplicates == 0 and len(rows) == SUBMISSIONS
    assert missing == []
    assert BURST <= accepted <= bound
