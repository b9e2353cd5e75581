"""``photograde demo``: a working service with nothing configured.

Serves the shipped base model (``models/photograde-base``), or ``--bundle B``, or with
``--train`` a small demo bundle built from synthetic data in ``DIR/bundle`` when missing (needs
the ``[train]`` extra). In ``DIR`` (default ``./demo``) it creates ``DIR/photograde.db`` and
``DIR/photos`` seeded with a synthetic history, creates one API key per role (kept in
``DIR/demo-keys.json``, mode 600, reused on later runs) and serves the API and the UI over
plain http (its session cookie without ``Secure``: :func:`demo_settings`). ``DIR`` is created
private (mode 700), as are the database (600) and the photo store (700).
"""

from __future__ import annotations

import importlib.util
import json
import logging
import os
import time
from pathlib import Path
from typing import Any

from fusion.bundle import BundleManifest
from serve.models import ROLES
from serve.settings import SHIPPED_BUNDLE, Settings, load_settings
from vision.errors import PhotogradeError

DEMO_REFURBISHER = "demo-refurbisher"
DEMO = "photograde demo"


class DemoError(PhotogradeError):
    """The demo cannot be set up (no bundle and no training extra to build one)."""


def _step(text: str) -> float:
    print(f"demo: {text}", flush=True)
    return time.perf_counter()


def build_demo_bundle(work: Path, out: Path, *, train_devices: int = 200,
                      holdout_devices: int = 120, size: int = 640, img_size: int = 160,
                      epochs: int = 3) -> BundleManifest:
    """Synthetic data -> vision, tabular, fusion -> an ONNX bundle flagged ``demo``."""
    if importlib.util.find_spec("torch") is None:
        raise DemoError(f"demo: {out} does not exist and building the demo bundle needs the "
                        "training extra (torch is not installed): pip install -e '.[train]' "
                        "(scripts/bootstrap does), or pass --dir with an existing bundle")
    from training.export import export_bundle
    from training.fusion_train import train_fusion
    from training.synth.generate import default_workers, generate
    from training.tabular_train import train_tabular
    from training.train_config import TrainConfig
    from training.vision_train import train_vision
    from vision.backbone import DEFAULT_BACKBONE

    start = time.perf_counter()
    cache = str(work / "cache")
    workers = default_workers()
    t = _step(f"1/5 synthetic training set: {train_devices} devices at {size} px")
    train = generate(train_devices, work / "train", seed=0, size=size, workers=workers)
    t = _step(f"    done in {time.perf_counter() - t:.0f} s; 2/5 held-out set: "
              f"{holdout_devices} devices")
    held_out = generate(holdout_devices, work / "holdout", seed=1, size=size, workers=workers)
    t = _step(f"    done in {time.perf_counter() - t:.0f} s; 3/5 vision model "
              f"({DEFAULT_BACKBONE}, {img_size} px, {epochs} epochs)")
    train_vision(TrainConfig(manifests=[str(train)], out=str(work / "vision"),
                             img_size=img_size, epochs=epochs, batch_size=16,
                             cache_dir=cache))
    t = _step(f"    done in {time.perf_counter() - t:.0f} s; 4/5 tabular and fusion models")
    train_tabular([train], work / "tabular")
    train_fusion([str(held_out)], work / "vision", work / "tabular", work / "fusion",
                 cache_dir=cache)
    t = _step(f"    done in {time.perf_counter() - t:.0f} s; 5/5 export (ONNX, demo flag)")
    manifest = export_bundle(work / "vision", work / "tabular", work / "fusion", out,
                             cache_dir=cache, demo=True)
    _step(f"    done in {time.perf_counter() - t:.0f} s; demo bundle "
          f"{manifest.bundle_version} built in {time.perf_counter() - start:.0f} s")
    return manifest


def busiest_refurbisher(db: Any) -> str:
    """The refurbisher with the most evaluations (the demo refurbisher key's), if any."""
    from sqlalchemy import func, select

    from serve.models import Evaluation

    with db.read() as s:
        row = s.execute(select(Evaluation.refurbisher_id, func.count()).group_by(
            Evaluation.refurbisher_id).order_by(func.count().desc()).limit(1)).first()
    return row[0] if row else DEMO_REFURBISHER


def demo_keys(db: Any, path: Path) -> dict[str, str]:
    """One key per role, created once and kept in ``path`` (mode 600); the refurbisher key is
    the busiest seeded refurbisher's, so that its dashboard has data."""
    from serve.auth import authenticate, create_key
    from serve.problems import Problem

    keys: dict[str, str] = {}
    if path.is_file():
        keys = json.loads(path.read_text())
    for role in ROLES:
        key = keys.get(role)
        if key:
            try:
                authenticate(db, key)
                continue
            except Problem:
                pass  # a new database, or a revoked key: make another
        _, keys[role] = create_key(db, role, busiest_refurbisher(db) if role == "refurbisher"
                                   else None, name=f"demo {role}")
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.fchmod(fd, 0o600)  # an older file keeps its mode through O_TRUNC: private before writing
    with os.fdopen(fd, "w") as f:
        json.dump(keys, f, indent=2)
    return keys


def demo_settings(settings: Settings, host: str, port: int) -> Settings:
    """The demo's settings, serving on ``host``:``port`` over plain http: the session cookie
    without ``Secure`` (a browser keeps a Secure cookie from http only from loopback, if at
    all: Safari does not), so that signing in works in any browser."""
    return settings.model_copy(update={"host": host, "port": port,
                                       "session_cookie_secure": False})


def demo_bundle(directory: Path, bundle: Path | None, train: bool) -> Path:
    """The bundle to serve: ``--bundle``, else the demo build (``--train``, built in
    ``directory/bundle`` when missing), else the shipped base model."""
    if train:
        built = directory / "bundle"
        if not (built / "manifest.json").is_file():
            build_demo_bundle(directory / "build", built)
        else:
            _step(f"using the demo build in {built}")
        return built
    if bundle is None:
        bundle = SHIPPED_BUNDLE
        if not (bundle / "manifest.json").is_file():
            raise DemoError(f"demo: the shipped model {bundle} is missing (a partial checkout?): "
                            "pass --train to build a demo model from synthetic photos, or "
                            "--bundle with a bundle directory")
    _step(f"serving the bundle in {bundle}")
    return bundle


def prepare(directory: Path, history_devices: int = 120, *, bundle: Path | None = None,
            train: bool = False) -> tuple[Settings, dict[str, str]]:
    """Bundle, database, photos, seeded history and keys in ``directory``."""
    logging.getLogger("alembic").setLevel(logging.WARNING)
    from photograde.seed import seed_history
    from serve.db import Database
    from serve.photostore import open_photo_store
    from serve.runtime import Grader

    directory.mkdir(mode=0o700, parents=True, exist_ok=True)  # its keys, database and photos
    bundle = demo_bundle(directory, bundle, train)
    db_path = directory / "photograde.db"
    settings = load_settings(bundle=bundle, database_url=f"sqlite:///{db_path.resolve()}",
                             photo_dir=directory / "photos")
    fresh = not db_path.exists()
    db = Database(settings.database_url)
    db.migrate()
    if fresh:
        from training.synth.generate import default_workers, generate

        t = _step(f"seeding a synthetic history ({history_devices} devices)")
        history = generate(history_devices, directory / "build" / "history", seed=2, size=480,
                           workers=default_workers(), mix="marketplace")
        grader = Grader(bundle)
        counts = seed_history(db, open_photo_store(settings), history, grader=grader,
                              n_refurbishers=4, progress=True)
        _step(f"    {counts.get('evaluations', 0)} evaluations, {counts.get('returns', 0)} "
              f"returns in {time.perf_counter() - t:.0f} s")
    serve_in_demo(db, bundle)
    keys = demo_keys(db, directory / "demo-keys.json")
    db.dispose()
    return settings, keys


def serve_in_demo(db: Any, bundle: Path) -> None:
    """Make ``bundle`` the registry's active bundle: the demo serves the bundle it was asked
    for, whatever an earlier run of the same folder promoted (serve/registry.py)."""
    from serve import registry

    record = registry.register(db, bundle, DEMO)
    if record["state"] != "active":
        registry.promote(db, record["version"], DEMO)


def run_demo(directory: Path, host: str, port: int, *, bundle: Path | None = None,
             train: bool = False) -> int:
    logging.getLogger("alembic").setLevel(logging.WARNING)  # before its import-time chatter
    from serve.app import create_app
    from serve.server import serve

    settings, keys = prepare(directory, bundle=bundle, train=train)
    settings = demo_settings(settings, host, port)
    url = f"http://{host}:{port}/ui"
    print(f"\nphotograde demo: open {url}\nDemo API keys (paste one on the login page; also in "
          f"{directory / 'demo-keys.json'}):")
    for role, key in keys.items():
        print(f"  {role:<12s} {key}")
    print(flush=True)
    serve(settings, create_app(settings))  # with the server's header limits and timeouts
    return 0
