"""``photograde``: one command line for everything.

Each package contributes its sub-commands (:func:`training.cli.register`,
:func:`serve.cli.register`); this root adds those that need both: ``demo``, ``db seed``,
the model commands (:mod:`photograde.model_commands`) and the production loop's
(:mod:`photograde.data_commands`).
A sub-command imports its modules only when it runs, and options that need a heavy import are
added only when their sub-command is parsed (:class:`CommandParser`), so serving never imports
torch. Only a :class:`~vision.errors.PhotogradeError` is reported as the user's error (exit
status 2); anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from photograde import data_commands, model_commands
from serve import cli as serve_cli
from training import cli as training_cli
from vision.errors import PhotogradeError

USER_ERROR = 2
INTERRUPTED = 130
Populate = Callable[[argparse.ArgumentParser], None]


class CommandParser(argparse.ArgumentParser):
    """An ``ArgumentParser`` whose options may be added on first use.

    Sub-commands are made with ``add_parser(name, populate=add_options)``: ``add_options(parser)``
    runs when that sub-command is parsed or its help printed, not when the command line is
    built, so the options may come from modules that are slow to import (torch, pydantic
    settings, SQLAlchemy models)."""

    def __init__(self, *args: Any, populate: Populate | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._populate = populate

    def populate(self) -> CommandParser:
        """Add the deferred options now (once); returns the parser."""
        if self._populate is not None:
            add_options, self._populate = self._populate, None
            add_options(self)
        return self

    def parse_known_args(self, args: Iterable[str] | None = None,
                         namespace: Any = None) -> tuple[Any, list[str]]:
        self.populate()
        return super().parse_known_args(args, namespace)

    def format_usage(self) -> str:
        self.populate()
        return super().format_usage()

    def format_help(self) -> str:
        self.populate()
        return super().format_help()


def _demo_options(p: argparse.ArgumentParser) -> None:
    from serve.settings import Settings

    defaults = Settings.model_fields
    p.add_argument("--dir", type=Path, default=Path("demo"), help="default ./demo")
    p.add_argument("--bundle", type=Path, help="serve this bundle (default: the shipped base "
                   "model, models/photograde-base)")
    p.add_argument("--train", action="store_true", help="build (once) and serve a demo model "
                   "trained on synthetic photos, to see the whole pipeline (a few minutes)")
    p.add_argument("--host", default=defaults["host"].default)
    p.add_argument("--port", type=int, default=defaults["port"].default)


def _demo(args: argparse.Namespace) -> int:
    from photograde.demo import run_demo

    return run_demo(args.dir, args.host, args.port, bundle=args.bundle, train=args.train)


def _db_seed_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("manifest", type=Path)
    p.add_argument("--bundle", type=Path, help="default: PHOTOGRADE_BUNDLE")
    p.add_argument("--photo-dir", type=Path, help="default: PHOTOGRADE_PHOTO_DIR")
    p.add_argument("--refurbishers", type=int, help="keep this many refurbishers")
    serve_cli.database_option(p)


def _db_seed(args: argparse.Namespace) -> int:
    db = serve_cli.workflow_db(args)
    from photograde.seed import seed_history
    from serve.photostore import open_photo_store
    from serve.runtime import Grader
    from serve.settings import load_settings

    settings = load_settings(**{k: v for k, v in (("bundle", args.bundle),
                                                  ("photo_dir", args.photo_dir)) if v})
    counts = seed_history(db, open_photo_store(settings), args.manifest,
                          grader=Grader(settings.bundle), n_refurbishers=args.refurbishers,
                          progress=True)
    print(json.dumps(counts, indent=2))
    db.dispose()
    return 0


def build_parser() -> CommandParser:
    """Every sub-command; their options are added when they are parsed."""
    parser = CommandParser(prog="photograde", description=__doc__.splitlines()[0])
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    model_commands.register(training_cli.register(sub))
    groups = serve_cli.register(sub)
    sub.add_parser("demo", help="serve the API and the UI with the shipped model (or a demo "
                   "build with --train), a seeded history and one demo key per role",
                   populate=_demo_options).set_defaults(func=_demo)
    groups["db"].add_parser("seed", help="demo history from a synthetic manifest, graded by "
                            "the bundle's models",
                            populate=_db_seed_options).set_defaults(func=_db_seed)
    data_commands.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run one sub-command; a PhotogradeError is reported in one line (exit status 2)."""
    args = build_parser().parse_args(argv)
    # Libraries log at WARNING (onnxruntime's quantiser logs hundreds of INFO lines to the
    # root logger); photograde's own loggers at INFO, or DEBUG with --verbose.
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("photograde").setLevel(logging.DEBUG if args.verbose else logging.INFO)
    try:
        return args.func(args)
    except PhotogradeError as e:
        print(f"photograde: error: {e}", file=sys.stderr)
        return USER_ERROR
    except KeyboardInterrupt:
        print("photograde: interrupted", file=sys.stderr)
        return INTERRUPTED


if __name__ == "__main__":
    sys.exit(main())
