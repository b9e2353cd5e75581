"""The rate limiter's contract, the same tests in memory and in Redis (a real redis-server from
scripts/test-redis; skipped without PHOTOGRADE_TEST_REDIS_URL); buckets shared across
processes through Redis; per-role limits; the start-up warning for workers without Redis."""

from __future__ import annotations

import math
import os
import threading
import uuid

import pytest
from fastapi.testclient import TestClient

from serve.auth import create_key
from serve.problems import Problem
from serve.ratelimit import Limiter, RateLimiter, RedisLimiter
from serve.server import start_warnings
from serve.settings import Settings, SettingsError, load_settings
from tests.support import LIMITER_KINDS, REDIS_ENV, workflow_app


def _limiter(kind: str, per_minute: float, burst: int = 0, namespace: str = "") -> Limiter:
    if kind == "memory":
        return RateLimiter(per_minute, burst)
    return RedisLimiter(per_minute, burst, url=os.environ[REDIS_ENV],
                        namespace=namespace or f"t-{uuid.uuid4().hex[:8]}")


@pytest.mark.parametrize("kind", LIMITER_KINDS)
def test_bucket_takes_all_or_none_per_key(kind):
    lim = _limiter(kind, per_minute=60, burst=3)  # one token a second
    assert [lim.take("k") for _ in range(3)] == [0, 0, 0]
    wait = lim.take("k")
    assert 0 < wait <= 1.0  # the next token within a second
    assert 0 < lim.wait("k") <= 1.0 and lim.take("other") == 0  # per key
    assert lim.take("k2", 2) == 0 and 0 < lim.take("k2", 2) <= 1.0  # 1 left: none taken
    assert lim.take("k2", 4) == math.inf  # more than the bucket holds: never
    with pytest.raises(Problem) as e:
        lim.check("k")
    assert e.value.status == 429 and e.value.headers["Retry-After"] == "1"


@pytest.mark.parametrize("kind", LIMITER_KINDS)
def test_wait_takes_nothing_and_zero_is_off(kind):
    lim = _limiter(kind, per_minute=60, burst=2)
    assert [lim.wait("k") for _ in range(5)] == [0] * 5
    assert [lim.take("k") for _ in range(2)] == [0, 0]
    off = _limiter(kind, per_minute=0)
    assert [off.take("k") for _ in range(100)] == [0] * 100


@pytest.mark.parametrize("kind", LIMITER_KINDS)
def test_concurrent_takes_never_exceed_the_bucket(kind):
    lim = _limiter(kind, per_minute=1, burst=20)  # refills one token a minute: none here
    taken: list[float] = []

    def hammer():
        for _ in range(10):
            taken.append(lim.take("k"))

    threads = [threading.Thread(target=hammer) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sum(1 for w in taken if w == 0) == 20 and len(taken) == 80


@pytest.mark.skipif(not os.environ.get(REDIS_ENV), reason=f"{REDIS_ENV} is not set")
def test_two_processes_share_one_bucket_in_redis():
    ns = f"t-{uuid.uuid4().hex[:8]}"
    a, b = (_limiter("redis", 60, 4, namespace=ns) for _ in range(2))  # two replicas
    assert [a.take("k"), b.take("k"), a.take("k"), b.take("k")] == [0, 0, 0, 0]
    assert b.take("k") > 0 and a.take("k") > 0  # the bucket is empty for both
    mem_a, mem_b = RateLimiter(60, 4), RateLimiter(60, 4)  # in memory: one each
    assert [mem_a.take("k") for _ in range(4)] + [mem_b.take("k") for _ in range(4)] == [0] * 8
    assert 0 < a.client.ttl(f"{ns}:k") <= a.ttl == 5  # forgotten once full again (4 s + 1)


def test_unreachable_redis_falls_back_to_the_process(caplog):
    lim = RedisLimiter(60, 2, url="redis://127.0.0.1:9/0")  # nothing listens on port 9
    calls = []
    script = lim.script
    lim.script = lambda **kw: calls.append(kw) or script(**kw)  # count the tries of Redis
    assert [lim.take("k"), lim.take("k")] == [0, 0] and lim.take("k") > 0
    assert "Redis unreachable" in caplog.text
    assert len(calls) == 1  # then per process, without a connection attempt per request
    lim._down_until = 0  # the retry delay has passed: Redis is tried again
    lim.take("k")
    assert len(calls) == 2


def test_per_role_limits(tmp_path, grader):
    app = workflow_app(f"sqlite:///{tmp_path / 'roles.db'}", tmp_path, grader,
                       rate_limit_per_minute=2, rate_limits={"platform": 6})
    with TestClient(app) as client:
        db = app.state.workflow.db
        keys = {"refurbisher": create_key(db, "refurbisher", "R001")[1],
                "platform": create_key(db, "platform")[1]}
        ok = {role: sum(client.get("/v1/evaluations", headers={"X-API-Key": key})
                        .status_code == 200 for _ in range(8)) for role, key in keys.items()}
    assert ok == {"refurbisher": 2, "platform": 6}  # each role's burst: a minute's worth


def test_settings_and_start_warning(monkeypatch):
    assert Settings().rate_limits == {"platform": 6000}  # a platform back end: not throttled
    monkeypatch.setenv("PHOTOGRADE_RATE_LIMITS__PLATFORM", "6000")
    assert load_settings().rate_limits == {"platform": 6000}
    with pytest.raises(SettingsError, match="unknown role 'owner'"):
        load_settings(rate_limits={"owner": 1})
    [warning] = start_warnings(Settings(workers=4))
    assert "4 workers without redis_url" in warning and "PHOTOGRADE_REDIS_URL" in warning
    assert start_warnings(Settings(workers=4, redis_url="redis://r:6379/0")) == []
    assert start_warnings(Settings(workers=1)) == []
