"""A bundle switch without downtime: a real ``photograde serve`` with two worker processes
serves the tiny test bundle while a load generator posts ``/v1/grade`` continuously; the shipped
base model is registered and promoted with the command line, then rolled back. Not one request
fails, and every worker follows each switch within a few polls (``/v1/model``, ``/metrics`` and
the answers' ``bundle_version``)."""

from __future__ import annotations

import json
import os
import re
import threading
import time
from collections import Counter
from dataclasses import dataclass, field

import httpx
import pytest

from fusion.bundle import load_manifest
from photograde.cli import main
from serve.db import Database
from serve.settings import SHIPPED_BUNDLE
from tests.support import INFO, PHOTOGRADE_SERVE, ServerProcess, small_photos

pytestmark = pytest.mark.slow
SHIPPED = load_manifest(SHIPPED_BUNDLE, verify_hashes=False).bundle_version
WORKERS = 2
CLIENTS = 3
POLL = 0.5
CONSECUTIVE = 24  # answers in a row from the new bundle: both workers switched


@dataclass
class Load:
    """Clients posting /v1/grade until stopped: every answer's (time, bundle) or failure."""

    url: str
    pairs: list[tuple[bytes, bytes]]
    answers: list[tuple[float, str]] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    stop: threading.Event = field(default_factory=threading.Event)

    def client(self, k: int) -> None:
        # a connection per request: the workers share the listening socket, and a kept-alive
        # connection would stay with one worker
        with httpx.Client(timeout=60, headers={"Connection": "close"}) as http:
            i = k
            while not self.stop.is_set():
                front, back = self.pairs[i % len(self.pairs)]
                i += CLIENTS
                try:
                    r = http.post(self.url + "/v1/grade", data={"device": json.dumps(INFO)},
                                  files={"front": ("f.jpg", front), "back": ("b.jpg", back)})
                except httpx.HTTPError as e:
                    self.failures.append(repr(e))
                    continue
                if r.status_code != 200:
                    self.failures.append(f"{r.status_code} {r.text[:200]}")
                else:
                    self.answers.append((time.monotonic(), r.json()["bundle_version"]))

    def switched_to(self, version: str, since: float) -> float | None:
        """When the answers after ``since`` became ``version`` for good (CONSECUTIVE in a
        row, to the last one), or None."""
        after = [(t, v) for t, v in self.answers if t > since]
        tail = 0
        for _, v in reversed(after):
            if v != version:
                break
            tail += 1
        return after[-tail][0] if tail >= CONSECUTIVE else None


def _metrics_show(url: str, version: str) -> bool:
    text = httpx.get(url + "/metrics", timeout=10).text
    return f'photograde_bundle_info{{role="active",version="{version}"}} 1.0' in text


def _switch(load: Load, url: str, version: str, argv: list[str]) -> float:
    """Run the command, wait until every answer, /v1/model and /metrics show ``version``;
    the seconds it took."""
    t0 = time.monotonic()
    assert main(argv) == 0
    deadline = t0 + 45
    while time.monotonic() < deadline:
        done = load.switched_to(version, t0)
        if (done and httpx.get(url + "/v1/model", timeout=10).json()["bundle_version"] == version
                and _metrics_show(url, version)):
            return done - t0
        time.sleep(0.2)
    raise AssertionError(f"not switched to {version} in 45 s: "
                         f"{Counter(v for t, v in load.answers if t > t0)}")


# long: one scenario, start to end, with the server and the clients to stop
def test_promote_and_rollback_under_load_without_a_failed_request(bundle, synth_dir, tmp_path,
                                                                   capsys):
    tiny = load_manifest(bundle, verify_hashes=False).bundle_version
    url = f"sqlite:///{tmp_path / 'photograde.db'}"
    env = {**os.environ, "PHOTOGRADE_DATABASE_URL": url,
           "PHOTOGRADE_PHOTO_DIR": str(tmp_path / "photos"), "PHOTOGRADE_AUTH_REQUIRED": "false",
           "PHOTOGRADE_PHOTO_CHECK": "false", "PHOTOGRADE_RATE_LIMIT_PER_MINUTE": "0",
           "PHOTOGRADE_BUNDLE_POLL_SECONDS": str(POLL)}
    server = ServerProcess([*PHOTOGRADE_SERVE, "--bundle", str(bundle), "--threads", "1",
                            "--workers", str(WORKERS)], env, tmp_path / "server.log")
    db = ["--database-url", url]
    started = time.monotonic()
    with server:
        assert httpx.get(server.url + "/v1/model").json()["bundle_version"] == tiny
        load = Load(server.url, small_photos(synth_dir, 12))
        clients = [threading.Thread(target=load.client, args=(k,)) for k in range(CLIENTS)]
        for c in clients:
            c.start()
        try:
            time.sleep(1)
            assert main(["bundle", "register", str(SHIPPED_BUNDLE), *db]) == 0
            promoted = _switch(load, server.url, SHIPPED, ["bundle", "promote", SHIPPED, *db])
            time.sleep(1)
            rolled_back = _switch(load, server.url, tiny, ["bundle", "rollback", *db])
            time.sleep(1)
        finally:
            load.stop.set()
            for c in clients:
                c.join(60)
    capsys.readouterr()
    assert load.failures == [], load.failures[:5]
    counts = Counter(v for _, v in load.answers)
    assert counts[SHIPPED] >= CONSECUTIVE and counts[tiny] >= 2 * CONSECUTIVE
    d = Database(url)
    states = {(b.version, b.state) for b in _bundles(d)}
    d.dispose()
    assert states == {(tiny, "active"), (SHIPPED, "retired")}
    log = (tmp_path / "server.log").read_text()
    for new, old in ((SHIPPED, tiny), (tiny, SHIPPED)):  # each worker swapped, each time
        assert len(re.findall(rf"\[(\d+)\]: serving bundle {new} \(was {old}\)", log)) == WORKERS
    assert len(set(re.findall(r"\[(\d+)\]: serving bundle", log))) == WORKERS
    print(f"\n{WORKERS} workers, {CLIENTS} clients: {len(load.answers)} answers, 0 failed "
          f"({dict(counts)}); every answer from the new bundle {promoted:.1f} s after promote, "
          f"{rolled_back:.1f} s after rollback (poll {POLL} s); "
          f"{time.monotonic() - started:.0f} s in all")


def _bundles(d: Database) -> list:
    from sqlalchemy import select

    from serve.models import Bundle

    with d.read() as s:
        return list(s.scalars(select(Bundle)))
