"""Serving sub-commands of ``photograde`` (torch-free): ``predict``, ``bundle verify``,
``serve``, ``keys create|list|revoke``, ``db upgrade`` and the model versions' ``bundle
register|list|shadow|promote|rollback|retire`` (:mod:`serve.registry_cli`).

:func:`register` adds them to the root command line (:mod:`photograde.cli`). Each imports its
modules only when it runs; options that need the settings or the models are added when their
sub-command is parsed (``populate``).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path
from typing import Any

from serve import registry_cli
from vision.errors import PhotogradeError

Groups = dict[str, argparse._SubParsersAction]


class InputFileError(PhotogradeError):
    """A file named on the command line cannot be read or decoded."""


def _setting_default(name: str) -> Any:
    from serve.settings import Settings

    return Settings.model_fields[name].default


# -- predict, bundle verify, serve -----------------------------------------------------------
def _predict(args: argparse.Namespace) -> int:
    from serve.runtime import Grader
    from tabular.schema import parse_device_info

    try:
        info = parse_device_info(args.device_info.read_bytes())
    except OSError as e:
        raise InputFileError(f"--device-info: cannot read {args.device_info} "
                             f"({e.strerror})") from None
    grader = Grader(args.bundle, threads=args.threads, int8=args.int8)
    photos = []
    for name, path, view in (("--front", args.front, "front"), ("--back", args.back, "back")):
        try:
            photos.append(grader.decode(path, view=view))
        except (PhotogradeError, OSError) as e:
            raise InputFileError(f"{name} {path}: {e}") from None
    result = grader.grade(photos[0], photos[1], info, args.refurbisher_grade,
                          heatmaps=args.heatmaps is not None)
    out = result.model_dump(mode="json", exclude={"parts": {"__all__": {"heatmap_png"}}})
    if args.heatmaps is not None:
        import base64

        args.heatmaps.mkdir(parents=True, exist_ok=True)
        for part, value in result.parts.items():
            path = args.heatmaps / f"{part}.png"
            path.write_bytes(base64.b64decode(value.heatmap_png or ""))
            out["parts"][part]["heatmap"] = str(path)
    out["execution_provider"] = grader.provider
    print(json.dumps(out, indent=2))
    return 0


def _bundle_verify(args: argparse.Namespace) -> int:
    from fusion.bundle import verify_bundle

    print(json.dumps(verify_bundle(args.bundle), indent=2))
    return 0


def _serve(args: argparse.Namespace) -> int:
    import os

    from fusion.bundle import load_manifest
    from serve.server import serve
    from serve.settings import load_settings

    overrides = {k: v for k, v in (("bundle", args.bundle), ("host", args.host),
                                   ("port", args.port), ("workers", args.workers),
                                   ("threads", args.threads), ("precision", args.precision))
                 if v is not None}
    settings = load_settings(**overrides)
    load_manifest(settings.bundle)  # refuse a missing or tampered bundle before starting
    for key, value in overrides.items():  # workers build their app from the environment
        os.environ[f"PHOTOGRADE_{key.upper()}"] = str(value)
    print(f"photograde: serving {settings.bundle} on http://{settings.host}:{settings.port} "
          f"(docs: /docs)", file=sys.stderr)
    serve(settings)  # uvicorn, with header limits and timeouts (serve/server.py)
    return 0


def _predict_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--bundle", type=Path, required=True)
    p.add_argument("--front", type=Path, required=True, help="front photo")
    p.add_argument("--back", type=Path, required=True, help="back photo")
    p.add_argument("--device-info", type=Path, required=True,
                   help="device facts and checks (JSON, see docs/training.md, Vocabulary)")
    p.add_argument("--refurbisher-grade", help="the refurbisher's grade, for the decision")
    p.add_argument("--heatmaps", type=Path, metavar="DIR",
                   help="write damage heatmaps (screen.png, shell.png) here")
    p.add_argument("--threads", type=int, help="ONNX Runtime threads (default: CPU quota)")
    p.add_argument("--int8", action="store_true", help="use the bundle's int8 vision model")


def _serve_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--bundle", type=Path, help="bundle directory (env PHOTOGRADE_BUNDLE)")
    p.add_argument("--host", help=f"default {_setting_default('host')} (env PHOTOGRADE_HOST)")
    p.add_argument("--port", type=int,
                   help=f"default {_setting_default('port')} (env PHOTOGRADE_PORT)")
    p.add_argument("--workers", type=int,
                   help=f"worker processes (default {_setting_default('workers')})")
    p.add_argument("--threads", type=int, help="ONNX Runtime threads per worker "
                   "(default: the container's CPU quota)")
    p.add_argument("--precision", choices=("auto", "fp32", "int8"),
                   help="the vision model served (default auto: int8 when the bundle measured "
                   "it within 0.5 point of fp32; env PHOTOGRADE_PRECISION)")


# -- keys, db --------------------------------------------------------------------------------
def database_option(p: argparse.ArgumentParser) -> None:
    """``--database-url``, for the sub-commands that use the workflow database."""
    p.add_argument("--database-url", help="default: PHOTOGRADE_DATABASE_URL or "
                   f"{_setting_default('database_url')}")


def workflow_db(args: argparse.Namespace) -> Any:
    """The workflow database of the settings (--database-url or PHOTOGRADE_DATABASE_URL),
    migrated to the latest schema."""
    logging.getLogger("alembic").setLevel(logging.WARNING)  # before its import-time chatter
    from serve.db import Database
    from serve.settings import load_settings

    overrides = {"database_url": args.database_url} if args.database_url else {}
    db = Database(load_settings(**overrides).database_url)
    db.migrate()
    return db


def _keys_create(args: argparse.Namespace) -> int:
    db = workflow_db(args)
    from serve.auth import create_key

    record, key = create_key(db, args.role, args.refurbisher, args.name)
    print(f"created {record['role']} key {record['id']}"
          + (f" for refurbisher {record['refurbisher_id']}" if record["refurbisher_id"]
             else "") + "; it is shown only once:", file=sys.stderr)
    print(key)
    db.dispose()
    return 0


def _keys_list(args: argparse.Namespace) -> int:
    db = workflow_db(args)
    from serve.auth import list_keys

    for k in list_keys(db):
        print(f"{k['id']}  {k['role']:<11s} {k['refurbisher_id'] or '-':<12s} "
              f"{'revoked ' + k['revoked_at'] if k['revoked_at'] else 'active':<40s} "
              f"{k['name'] or ''}".rstrip())
    db.dispose()
    return 0


def _keys_revoke(args: argparse.Namespace) -> int:
    db = workflow_db(args)
    from serve.auth import ApiKeyError, revoke_key

    record = revoke_key(db, args.key_id)
    if record is None:
        raise ApiKeyError(f"key {args.key_id!r} not found")
    print(f"revoked {record['id']} at {record['revoked_at']}")
    db.dispose()
    return 0


def _db_upgrade(args: argparse.Namespace) -> int:
    db = workflow_db(args)
    print(f"{db.url.render_as_string(hide_password=True)}: schema up to date")
    db.dispose()
    return 0


def _keys_create_options(p: argparse.ArgumentParser) -> None:
    from serve.models import ROLES

    p.add_argument("--role", required=True, choices=ROLES)
    p.add_argument("--refurbisher", help="the refurbisher id (refurbisher keys only)")
    p.add_argument("--name", help="a note: who or what uses the key")
    database_option(p)


def _keys_revoke_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("key_id")
    database_option(p)


# -- registration ----------------------------------------------------------------------------
def register(sub: argparse._SubParsersAction) -> Groups:
    """Add the serving sub-commands to ``sub`` (the root's, whose parsers take ``populate``);
    returns the command groups by name (``bundle``, ``keys``, ``db``) for the root to extend."""
    sub.add_parser("predict", help="grade one device with a bundle (torch-free)",
                   populate=_predict_options).set_defaults(func=_predict)
    sub.add_parser("serve", help="the scoring API (FastAPI on ONNX Runtime)",
                   populate=_serve_options).set_defaults(func=_serve)

    bundle = sub.add_parser("bundle", help="model bundles")
    bundle_sub = bundle.add_subparsers(dest="bundle_command", required=True, metavar="ACTION")
    verify = bundle_sub.add_parser("verify", help="re-check every hash and run the embedded "
                                   "samples")
    verify.add_argument("bundle", type=Path)
    verify.set_defaults(func=_bundle_verify)
    registry_cli.register(bundle_sub)  # register, list, shadow, promote, rollback, retire

    keys = sub.add_parser("keys", help="API keys of the workflow API")
    keys_sub = keys.add_subparsers(dest="keys_command", required=True, metavar="ACTION")
    keys_sub.add_parser("create", help="create a key and print it (once)",
                        populate=_keys_create_options).set_defaults(func=_keys_create)
    keys_sub.add_parser("list", help="every key: id, role, refurbisher, state, name",
                        populate=database_option).set_defaults(func=_keys_list)
    keys_sub.add_parser("revoke", help="revoke a key by its id",
                        populate=_keys_revoke_options).set_defaults(func=_keys_revoke)

    db = sub.add_parser("db", help="the workflow database")
    db_sub = db.add_subparsers(dest="db_command", required=True, metavar="ACTION")
    db_sub.add_parser("upgrade", help="migrate to the latest schema (alembic upgrade head)",
                      populate=database_option).set_defaults(func=_db_upgrade)
    return {"bundle": bundle_sub, "keys": keys_sub, "db": db_sub}
