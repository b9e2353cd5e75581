"""``photograde bundle register|list|shadow|promote|rollback|retire`` on the seeded workflow
history (tests/photograde/conftest.py), after a real ``photograde backtest`` of the shipped base
model against the tiny bundle that graded the history (found in the registry: the server
registered it at its first start). The registry is left as it was found: the tiny bundle
active."""

from __future__ import annotations

import json

from fusion.bundle import load_manifest
from photograde.cli import main
from serve.settings import SHIPPED_BUNDLE

SHIPPED = load_manifest(SHIPPED_BUNDLE, verify_hashes=False).bundle_version


def _states(url: str, capsys) -> dict[str, dict]:
    assert main(["bundle", "list", "--json", "--database-url", url]) == 0
    return {b["version"]: b for b in json.loads(capsys.readouterr().out)}


def test_backtest_register_shadow_promote_rollback(workflow_history, bundle, tmp_path, capsys):
    url, db = workflow_history.url, ["--database-url", workflow_history.url]
    tiny = load_manifest(bundle, verify_hashes=False).bundle_version
    assert {v: b["state"] for v, b in _states(url, capsys).items()} == {tiny: "active"}
    report = tmp_path / "backtest"
    assert main(["backtest", "--bundle", str(SHIPPED_BUNDLE), "--database", url, "--photo-dir",
                 str(workflow_history.photo_dir), "--since", "2000-01-01", "--out", str(report),
                 "--quiet"]) == 0  # the current bundle: the registered one that graded them
    line = capsys.readouterr().out.splitlines()[0]
    assert json.loads((report / "report.json").read_text())["bundles"]["current"]["version"] \
        == tiny

    assert main(["bundle", "register", str(bundle), "--backtest", str(report), *db]) == 2
    assert f"is the backtest of bundle {SHIPPED}, not of {tiny}" in capsys.readouterr().err
    assert main(["bundle", "register", str(SHIPPED_BUNDLE), "--backtest",
                 str(report / "report.json"), *db]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"registered bundle {SHIPPED} (photograde-base) from ")
    assert out.rstrip().endswith(f"registered; backtest: {line}")
    listed = _states(url, capsys)
    b = listed[SHIPPED]
    assert (b["state"], b["backtest"]["line"], b["backtest"]["against"]) == ("registered", line,
                                                                              tiny)
    assert b["registered_by"].endswith("(command line)")
    assert main(["bundle", "list", *db]) == 0
    table = capsys.readouterr().out.splitlines()
    assert len(table) == 2 and any(row.startswith(SHIPPED) and " registered " in row
                                   for row in table)

    assert main(["bundle", "shadow", SHIPPED, *db]) == 0
    assert capsys.readouterr().out.startswith(f"bundle {SHIPPED} is shadow now; every worker "
                                              "switches within 5 s")
    assert main(["bundle", "promote", SHIPPED, *db]) == 0
    assert f"bundle {SHIPPED} is active now" in capsys.readouterr().out
    assert {v: b["state"] for v, b in _states(url, capsys).items()} == {tiny: "retired",
                                                                        SHIPPED: "active"}
    assert main(["bundle", "promote", "nope", *db]) == 2
    assert capsys.readouterr().err.startswith("photograde: error: no registered bundle 'nope'")
    assert main(["bundle", "retire", SHIPPED, *db]) == 2
    assert "is active; promote another bundle or roll back first" in capsys.readouterr().err

    assert main(["bundle", "rollback", *db]) == 0
    assert f"bundle {tiny} is active now" in capsys.readouterr().out
    assert {v: b["state"] for v, b in _states(url, capsys).items()} == {tiny: "active",
                                                                        SHIPPED: "retired"}
