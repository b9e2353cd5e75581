"""The root's production-loop commands: ``dataset export``, ``backtest`` and ``score``.

They read the workflow database and the photo store (``serve``) and feed training or compare
bundles, so they belong to the root. Neither imports torch; neither migrates the database (a
command that only reads refuses an outdated schema instead).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from serve import cli as serve_cli


def _store_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--database", "--database-url", dest="database_url", metavar="URL",
                   help="SQLAlchemy URL of the workflow database (default: "
                   "PHOTOGRADE_DATABASE_URL or "
                   f"{serve_cli._setting_default('database_url')})")
    p.add_argument("--photo-dir", type=Path, metavar="DIR", help="the photo store (default: "
                   f"PHOTOGRADE_PHOTO_DIR or {serve_cli._setting_default('photo_dir')})")
    p.add_argument("--until", metavar="DATE",
                   help="evaluations submitted before this date or time (UTC)")
    p.add_argument("--return-window-days", type=int, default=30, metavar="N",
                   help="a return counts within this many days of the listing (default 30)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")


def _settings(args: argparse.Namespace) -> Any:
    from serve.settings import load_settings

    return load_settings(**{k: v for k, v in (("database_url", args.database_url),
                                              ("photo_dir", args.photo_dir)) if v})


def _export_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", type=Path, required=True, metavar="DIR",
                   help="folder: manifest.csv, images/, export.json")
    p.add_argument("--since", metavar="DATE",
                   help="evaluations submitted from this date or time (UTC)")
    _store_options(p)
    p.add_argument("--grading", help="grading config of the final grades (default: the "
                   "built-in config of the evaluations' scale); evaluations on another scale "
                   "are skipped")
    p.add_argument("--copy", action="store_true",
                   help="copy the photos (default: hard links where possible)")


def _export(args: argparse.Namespace) -> int:
    from photograde import history
    from photograde.dataset_export import export_dataset, summary_lines
    from serve.photostore import open_photo_store

    settings = _settings(args)
    since = history.parse_when(args.since, "--since")
    until = history.parse_when(args.until, "--until")
    db = history.open_database(settings.database_url)
    try:
        summary = export_dataset(db, open_photo_store(settings), args.out, since=since,
                                 until=until, grading=args.grading, copy=args.copy,
                                 window_days=args.return_window_days,
                                 progress=not args.quiet)
    finally:
        db.dispose()
    print("\n".join(summary_lines(summary)))
    print(f"summary: {args.out / 'export.json'}")
    return 0


def _backtest_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--bundle", type=Path, required=True, metavar="NEW", help="the candidate bundle")
    p.add_argument("--against", type=Path, metavar="CURRENT", help="the current bundle "
                   "(default: the bundle that graded the evaluations, if found: the served "
                   "one, the shipped one or a sibling folder of --bundle)")
    p.add_argument("--since", required=True, metavar="DATE",
                   help="evaluations submitted from this date or time (UTC)")
    p.add_argument("--out", type=Path, required=True, metavar="REPORT",
                   help="report folder: report.json, report.html")
    _store_options(p)
    p.add_argument("--int8", action="store_true", help="the bundles' int8 vision models")
    p.add_argument("--threads", type=int, help="ONNX Runtime threads (default: CPU quota)")


def _backtest(args: argparse.Namespace) -> int:
    from photograde import history
    from photograde.backtest import run_backtest
    from serve import registry
    from serve.photostore import open_photo_store
    from serve.settings import SHIPPED_BUNDLE

    settings = _settings(args)
    since = history.parse_when(args.since, "--since")
    assert since is not None  # a required option
    until = history.parse_when(args.until, "--until")
    db = history.open_database(settings.database_url)
    try:
        # the bundle that graded the evaluations: the served one, the shipped one, or any
        # registered bundle (serve/registry.py)
        registered = [Path(b["directory"]) for b in registry.list_bundles(db)]
        report = run_backtest(
            db, open_photo_store(settings), args.bundle, args.out, since=since,
            until=until, against=args.against,
            candidates=[settings.bundle, SHIPPED_BUNDLE, *registered],
            decision_gaps=(settings.validated_max_gap, settings.suggestion_max_gap),
            int8=args.int8, threads=args.threads, window_days=args.return_window_days,
            progress=not args.quiet)
    finally:
        db.dispose()
    print(report["recommendation"]["line"])
    print(f"report: {args.out / 'report.html'}, {args.out / 'report.json'}")
    return 0


def _score_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--bundle", type=Path, required=True, metavar="B", help="the bundle to score "
                   "with")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--manifest", type=Path, action="append", metavar="M", help="score the "
                     "devices of this manifest (repeatable; id: device_id)")
    src.add_argument("--database", "--database-url", dest="database_url", metavar="URL",
                     help="score every stored evaluation (id: the evaluation's), photos from "
                     "--photo-dir")
    p.add_argument("--photo-dir", type=Path, metavar="DIR", help="the photo store (default: "
                   f"PHOTOGRADE_PHOTO_DIR or {serve_cli._setting_default('photo_dir')})")
    p.add_argument("--out", type=Path, required=True, metavar="SCORES",
                   help="output folder, a Parquet dataset (part-*.parquet); a rerun skips the "
                   "ids already in it")
    p.add_argument("--engine", choices=("auto", "ray", "single"), default="auto",
                   help="auto (default): Ray when it is installed, else this process")
    p.add_argument("--ray-address", metavar="ADDR", help="a running Ray cluster (default: a "
                   "local Ray on this machine)")
    p.add_argument("--num-cpus", type=int, metavar="N", help="Ray: scoring actors, one CPU "
                   "each (default: the cluster's CPUs); a local Ray gets N CPUs")
    p.add_argument("--threads", type=int, help="single process: ONNX Runtime threads "
                   "(default: CPU quota)")
    p.add_argument("--precision", choices=("auto", "fp32", "int8"), default="auto",
                   help="the vision model: auto (default) as the service serves it, int8 only "
                   "when the bundle measured it within 0.5 point of fp32")
    p.add_argument("--quiet", action="store_true", help="no progress bars")


def _store(settings: Any) -> dict[str, str]:
    """What a Scorer (a Ray actor, maybe on another node) needs to open the photo store: the
    folder, or the S3 store without its credentials (each node has its own, PHOTOGRADE_S3_*
    or AWS_*)."""
    if not settings.photo_store:  # "" overrides a node's own PHOTOGRADE_PHOTO_STORE
        return {"photo_dir": str(settings.photo_dir), "photo_store": ""}
    return {k: v for k in ("photo_store", "s3_endpoint_url", "s3_region")
            if (v := getattr(settings, k))}


def _score(args: argparse.Namespace) -> int:
    from photograde import history
    from photograde.score import Engine, database_source, manifest_source, score

    settings = _settings(args)
    db = None
    if args.manifest:
        source = manifest_source(args.manifest)
    else:
        db = history.open_database(settings.database_url)
        source = database_source(db, _store(settings))
    engine = Engine(args.bundle, source.store, (settings.validated_max_gap,
                                                settings.suggestion_max_gap),
                    precision=args.precision, threads=args.threads,
                    ray_address=args.ray_address, num_cpus=args.num_cpus)
    try:
        summary = score(source, args.out, engine, use=args.engine, progress=not args.quiet)
    finally:
        if db is not None:
            db.dispose()
    print(json.dumps(summary, indent=2))
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    """Add ``dataset export``, ``backtest`` and ``score`` to the root's sub-commands."""
    dataset = sub.add_parser("dataset", help="datasets from the workflow's history")
    dataset_sub = dataset.add_subparsers(dest="dataset_command", required=True,
                                         metavar="ACTION")
    dataset_sub.add_parser("export", help="a training manifest of the resolved evaluations: "
                           "final grades, photos, returns (manifest.csv, images/, export.json)",
                           populate=_export_options).set_defaults(func=_export)
    sub.add_parser("backtest", help="replay stored evaluations through a candidate bundle and "
                   "the current one: agreement, decision changes, a recommendation (HTML, JSON)",
                   populate=_backtest_options).set_defaults(func=_backtest)
    sub.add_parser("score", help="grade every device of a manifest or every stored evaluation "
                   "with a bundle, as served, into Parquet (on Ray when installed; resumable)",
                   populate=_score_options).set_defaults(func=_score)
