"""``photograde bundle register|list|shadow|promote|rollback|retire``: the model versions of
the workflow database (:mod:`serve.registry`), torch-free. The running workers follow a switch
within ``bundle_poll_seconds`` (:mod:`serve.versions`), without a restart."""

from __future__ import annotations

import argparse
import getpass
import json
from pathlib import Path
from typing import Any


def _who() -> str:
    try:
        return f"{getpass.getuser()} (command line)"
    except (KeyError, OSError):  # no user name for this uid (a container)
        return "command line"


def _db(args: argparse.Namespace) -> Any:
    from serve.cli import workflow_db

    return workflow_db(args)


def _switch_note() -> str:
    from serve.settings import load_settings

    return (f"every worker switches within {load_settings().bundle_poll_seconds:g} s "
            "(bundle_poll_seconds, plus loading the bundle)")


def _register(args: argparse.Namespace) -> int:
    from fusion.bundle import load_manifest
    from serve import registry

    backtest = None
    if args.backtest is not None:
        version = load_manifest(args.directory, verify_hashes=False).bundle_version
        backtest = registry.read_backtest(args.backtest, version)
    db = _db(args)
    try:
        b = registry.register(db, args.directory, _who(), backtest)
    finally:
        db.dispose()
    summary = b["backtest"]["line"] if b["backtest"] else "no backtest"
    print(f"registered bundle {b['version']} ({b['model_name'] or 'unnamed'}) from "
          f"{b['directory']}: {b['state']}; backtest: {summary}")
    return 0


def _list(args: argparse.Namespace) -> int:
    from serve import registry

    db = _db(args)
    try:
        items = registry.list_bundles(db)
    finally:
        db.dispose()
    if args.json:
        print(json.dumps(items, indent=2))
        return 0
    for b in items:
        verdict = (b["backtest"] or {}).get("verdict") or "no backtest"
        print(f"{b['version']:<30s} {b['state']:<10s} {b['model_name'] or '-':<18s} "
              f"{b['registered_at'][:19]} {b['registered_by']:<28s} {verdict:<13s} "
              f"{b['directory']}")
    if not items:
        print("no bundle registered (a server registers its bundle at its first start)")
    return 0


def _action(name: str) -> Any:
    """The command for registry action ``name`` (promote, shadow, retire, rollback)."""
    def run(args: argparse.Namespace) -> int:
        from serve import registry

        db = _db(args)
        try:
            if name == "rollback":
                b = registry.rollback(db, _who())
            else:
                b = getattr(registry, name)(db, args.version, _who())
        finally:
            db.dispose()
        print(f"bundle {b['version']} is {b['state']} now; {_switch_note()}")
        return 0
    return run


def _register_options(p: argparse.ArgumentParser) -> None:
    from serve.cli import database_option

    p.add_argument("directory", type=Path, help="the bundle folder (its hashes are verified)")
    p.add_argument("--backtest", type=Path, metavar="REPORT",
                   help="its photograde backtest report (report.json or its folder)")
    database_option(p)


def _version_options(p: argparse.ArgumentParser) -> None:
    from serve.cli import database_option

    p.add_argument("version", help="a registered bundle version (photograde bundle list)")
    database_option(p)


def _list_options(p: argparse.ArgumentParser) -> None:
    from serve.cli import database_option

    p.add_argument("--json", action="store_true", help="JSON, with the backtest summaries")
    database_option(p)


def register(bundle_sub: argparse._SubParsersAction) -> None:
    """Add the registry's actions to ``photograde bundle``."""
    bundle_sub.add_parser("register", help="register a bundle in the workflow database "
                          "(with its backtest report)",
                          populate=_register_options).set_defaults(func=_register)
    bundle_sub.add_parser("list", help="registered bundles: version, state, model, who, "
                          "backtest verdict, folder",
                          populate=_list_options).set_defaults(func=_list)
    for name, help_text in (
            ("shadow", "score every graded request with this bundle too, off the request "
             "path (stored, never shown)"),
            ("promote", "serve this bundle in every worker, without downtime"),
            ("retire", "retire a bundle that is not active (ends its shadow)")):
        bundle_sub.add_parser(name, help=help_text, populate=_version_options
                              ).set_defaults(func=_action(name))
    from serve.cli import database_option

    bundle_sub.add_parser("rollback", help="serve the previously active bundle again, without "
                          "downtime", populate=database_option
                          ).set_defaults(func=_action("rollback"))
