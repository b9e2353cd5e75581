"""A bundle switch without downtime: a real ``photograde serve`` with two worker processes
serves the tiny test bundle while a load generator posts ``/v1/grade`` continuously; the shipped
base model is registered and promoted with the command line, then rolled back. Not one request
fails, and every worker follows each switch within a few polls (``/v1/model``, ``/metrics`` and
the answers' ``bundle_version``)."""

from __future__ import annotations

import os
import re
import threading
import time
from collections import Counter

import httpx
import pytest

from fusion.bundle import load_manifest
from photograde.cli import main
from serve.db import Database
from serve.settings import SHIPPED_BUNDLE
from tests.serve.switching import CLIENTS, CONSECUTIVE, Load, bundles, switch
from tests.support import PHOTOGRADE_SERVE, ServerProcess, small_photos

pytestmark = pytest.mark.slow
SHIPPED = load_manifest(SHIPPED_BUNDLE, verify_hashes=False).bundle_version
WORKERS = 2
POLL = 0.5


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
            promoted = switch(load, server.url, SHIPPED, ["bundle", "promote", SHIPPED, *db])
            time.sleep(1)
            rolled_back = switch(load, server.url, tiny, ["bundle", "rollback", *db])
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
    states = {(b.version, b.state) for b in bundles(d)}
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
