"""The production loop end to end, as an operator runs it: a seeded history -> ``dataset
export`` -> tabular and fusion retrained on it -> a candidate bundle -> ``backtest`` against the
serving bundle -> ``bundle register --backtest`` -> ``bundle shadow`` (its predictions stored
beside the live answers) -> ``bundle promote`` while a load generator runs (0 failed requests;
``/v1/model`` and ``/metrics`` show the candidate) -> ``bundle rollback`` the same way."""

from __future__ import annotations

import json
import os
import threading
import time

import pytest
from sqlalchemy import func, select

from fusion.bundle import load_manifest
from photograde.cli import main
from serve.db import Database
from serve.models import ShadowPrediction
from tests.serve.switching import CLIENTS, Load, bundles, switch
from tests.support import PHOTOGRADE_SERVE, ServerProcess, small_photos

pytestmark = pytest.mark.slow


def _candidate(history, bundle, tmp) -> tuple[str, dict]:
    """Export the history, retrain tabular and fusion on it, export the candidate and
    backtest it against the bundle that graded the history; (its folder, the report)."""
    exp, url = tmp / "export", history.url
    assert main(["dataset", "export", "--database", url, "--photo-dir",
                 str(history.photo_dir), "--out", str(exp), "--quiet"]) == 0
    manifest = str(exp / "manifest.csv")
    assert main(["train", "tabular", "--manifest", manifest, "--out", str(tmp / "t")]) == 0
    assert main(["train", "fusion", "--manifest", manifest, "--vision", str(bundle.parent / "v"),
                 "--tabular", str(tmp / "t"), "--out", str(tmp / "f"), "--cache-dir",
                 str(tmp / "cache")]) == 0
    cand = tmp / "candidate"
    assert main(["export", "--vision", str(bundle.parent / "v"), "--tabular", str(tmp / "t"),
                 "--fusion", str(tmp / "f"), "--out", str(cand)]) == 0
    assert main(["backtest", "--bundle", str(cand), "--database", url, "--photo-dir",
                 str(history.photo_dir), "--since", "2000-01-01", "--out", str(tmp / "bt"),
                 "--quiet"]) == 0
    return str(cand), json.loads((tmp / "bt" / "report.json").read_text())


def _shadowed(url: str, version: str, deadline: float) -> int:
    """Wait until the shadow bundle's predictions are stored; how many."""
    d = Database(url)
    try:
        while time.monotonic() < deadline:
            with d.read() as s:
                n = s.scalar(select(func.count()).where(
                    ShadowPrediction.bundle_version == version))
            if n:
                return int(n)
            time.sleep(0.3)
        return 0
    finally:
        d.dispose()


def test_history_to_a_promoted_candidate_and_back(workflow_history, bundle, synth_dir,
                                                   tmp_path, capsys):
    if not workflow_history.url.startswith("sqlite"):
        pytest.skip("one database is enough for the chain (its steps run on both elsewhere)")
    cand, report = _candidate(workflow_history, bundle, tmp_path)
    assert report["evaluations"]["replayed"] > 100 and report["recommendation"]["verdict"]
    tiny = load_manifest(bundle, verify_hashes=False).bundle_version
    new = load_manifest(cand, verify_hashes=False).bundle_version
    assert new != tiny
    url, db = workflow_history.url, ["--database-url", workflow_history.url]
    env = {**os.environ, "PHOTOGRADE_DATABASE_URL": url,
           "PHOTOGRADE_PHOTO_DIR": str(workflow_history.photo_dir),
           "PHOTOGRADE_AUTH_REQUIRED": "false", "PHOTOGRADE_PHOTO_CHECK": "false",
           "PHOTOGRADE_RATE_LIMIT_PER_MINUTE": "0", "PHOTOGRADE_BUNDLE_POLL_SECONDS": "0.5"}
    server = ServerProcess([*PHOTOGRADE_SERVE, "--bundle", str(bundle), "--threads", "1"], env,
                           tmp_path / "server.log")
    with server:
        load = Load(server.url, small_photos(synth_dir, 12))
        clients = [threading.Thread(target=load.client, args=(k,)) for k in range(CLIENTS)]
        for c in clients:
            c.start()
        try:
            assert main(["bundle", "register", cand, "--backtest", str(tmp_path / "bt" /
                                                                      "report.json"), *db]) == 0
            assert main(["bundle", "shadow", new, *db]) == 0
            shadowed = _shadowed(url, new, time.monotonic() + 45)
            promoted = switch(load, server.url, new, ["bundle", "promote", new, *db])
            rolled_back = switch(load, server.url, tiny, ["bundle", "rollback", *db])
        finally:
            load.stop.set()
            for c in clients:
                c.join(60)
    capsys.readouterr()
    assert shadowed > 0 and load.failures == [], load.failures[:5]
    d = Database(url)
    registered = {b.version: b for b in bundles(d)}
    d.dispose()
    assert registered[new].backtest and registered[new].state == "retired"
    assert registered[tiny].state == "active"
    print(f"\nchain: {report['evaluations']['replayed']} evaluations replayed, "
          f"{shadowed}+ shadow predictions, {len(load.answers)} answers, 0 failed; switched "
          f"{promoted:.1f} s after promote, {rolled_back:.1f} s after rollback")
