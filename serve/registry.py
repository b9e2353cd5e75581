"""The bundle registry: which model versions exist, which one is served and which one is
scored in shadow, and the switches between them (the ``bundles`` table, :class:`Bundle`).

States: ``registered`` (known, not used), ``active`` (served: at most one), ``shadow`` (scored
off the request path, never shown: at most one; a unique partial index guarantees both),
``retired`` (was active or shadow). ``promote`` makes a bundle active (the active one is
retired), ``rollback`` makes the previously active bundle active again (the latest
``activated_at`` but the current one's), ``shadow`` and ``retire`` start and end a shadow.
Every switch is one write transaction; the workers follow it by polling :func:`serving`
(:mod:`serve.versions`). Torch-free and synchronous: the CLI, the admin API and the workers
share it.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from fusion.bundle import load_manifest
from serve.db import Database
from serve.models import Bundle, utcnow
from vision.errors import PhotogradeError

log = logging.getLogger("photograde.registry")
#: Who registers and activates the settings' bundle at a worker's start.
SERVE = "photograde serve (settings)"


class RegistryError(PhotogradeError):
    """A registry action that cannot be done: a bad report, a bundle folder that moved."""


class UnknownBundle(RegistryError):
    """No registered bundle has this version."""


class BundleStateError(RegistryError):
    """The bundle's state does not allow the action (promote the active one, retire it, roll
    back with no previous bundle)."""


@dataclass(frozen=True)
class Ref:
    """A bundle to load: its version and folder."""

    version: str
    directory: Path


@dataclass(frozen=True)
class Serving:
    """The registry's active and shadow bundles."""

    active: Ref | None
    shadow: Ref | None


def backtest_summary(report: dict[str, Any] | None) -> dict[str, Any] | None:
    """What a list shows of a backtest report: the verdict, its line, the bundle it was
    compared with and the period."""
    if not report:
        return None
    rec, period = report.get("recommendation", {}), report.get("period", {})
    return {"verdict": rec.get("verdict"), "line": rec.get("line"),
            "against": report.get("bundles", {}).get("current", {}).get("version"),
            "since": period.get("since"), "until": period.get("until")}


def to_dict(b: Bundle, full: bool = False) -> dict[str, Any]:
    """A bundle's JSON form; the backtest summarised unless ``full``."""
    when = {k: (v.isoformat() if v else None) for k, v in (
        ("registered_at", b.registered_at), ("activated_at", b.activated_at),
        ("changed_at", b.changed_at))}
    return {"version": b.version, "state": b.state, "model_name": b.model_name,
            "directory": b.directory, "registered_by": b.registered_by, **when,
            "changed_by": b.changed_by,
            "backtest": b.backtest if full else backtest_summary(b.backtest)}


def read_backtest(path: Path, version: str) -> dict[str, Any]:
    """A ``photograde backtest`` report (its report.json, or the folder holding it), which
    must be of the candidate ``version``."""
    file = path / "report.json" if path.is_dir() else path
    try:
        report = json.loads(file.read_text())
        new = report["bundles"]["new"]["version"]
    except OSError as e:
        raise RegistryError(f"--backtest: cannot read {file} ({e.strerror})") from None
    except (ValueError, KeyError, TypeError):
        raise RegistryError(f"--backtest: {file} is not a photograde backtest report "
                            "(report.json)") from None
    if new != version:
        raise RegistryError(f"--backtest: {file} is the backtest of bundle {new}, not of "
                            f"{version}")
    return report


def check_directory(b: Bundle) -> None:
    """Refuse to switch to a bundle whose folder is gone or holds another version now."""
    try:
        found = load_manifest(b.directory, verify_hashes=False).bundle_version
    except PhotogradeError as e:
        raise RegistryError(f"bundle {b.version}: its folder cannot be loaded ({e})") from None
    if found != b.version:
        raise RegistryError(f"bundle {b.version}: its folder {b.directory} holds bundle {found} "
                            "now (register each bundle from its own folder)")


@contextmanager
def _switching(db: Database) -> Iterator[Session]:
    """A write transaction of the registry; two switches at once (PostgreSQL: one of them
    breaks the unique index of the serving states) answer BundleStateError."""
    try:
        with db.write() as s:
            yield s
    except IntegrityError:
        raise BundleStateError("another switch changed the registry at the same time; check "
                               "photograde bundle list and try again") from None


def _get(s: Session, version: str) -> Bundle:
    b = s.get(Bundle, version)
    if b is None:
        raise UnknownBundle(f"no registered bundle {version!r} (photograde bundle list)")
    return b


def _in_state(s: Session, state: str) -> Bundle | None:
    return s.scalars(select(Bundle).where(Bundle.state == state).with_for_update()).first()


def _set(s: Session, b: Bundle, state: str, by: str) -> None:
    b.state, b.changed_by, b.changed_at = state, by, utcnow()
    if state == "active":
        b.activated_at = b.changed_at
    s.flush()  # one statement at a time: the unique index on the serving states


def _activate(s: Session, b: Bundle, by: str) -> None:
    current = _in_state(s, "active")
    if current is not None:
        _set(s, current, "retired", by)
    _set(s, b, "active", by)
    log.info("bundle %s is active (was %s), by %s", b.version,
             current.version if current else "none", by)


def register(db: Database, directory: Path, by: str,
             backtest: dict[str, Any] | None = None) -> dict[str, Any]:
    """Register the bundle in ``directory`` (its hashes verified) as ``registered``; again:
    its folder (and backtest, when given) updated. Its record."""
    directory = Path(directory).resolve()
    manifest = load_manifest(directory)
    version = manifest.bundle_version
    if backtest is not None and backtest["bundles"]["new"]["version"] != version:
        raise RegistryError(f"the backtest is of bundle {backtest['bundles']['new']['version']}"
                            f", not of {version}")
    with _switching(db) as s:
        b = s.get(Bundle, version)
        if b is None:
            b = Bundle(version=version, directory=str(directory), model_name=manifest.model_name,
                       registered_by=by, registered_at=utcnow(), backtest=backtest,
                       state="registered")
            s.add(b)
        else:
            b.directory, b.changed_by, b.changed_at = str(directory), by, utcnow()
            if backtest is not None:
                b.backtest = backtest
        s.flush()
        return to_dict(b)


def promote(db: Database, version: str, by: str) -> dict[str, Any]:
    """Make ``version`` the active bundle (the active one is retired)."""
    with _switching(db) as s:
        b = _get(s, version)
        if b.state == "active":
            raise BundleStateError(f"bundle {version} is already active")
        check_directory(b)
        _activate(s, b, by)
        return to_dict(b)


def rollback(db: Database, by: str, expect: str | None = None) -> dict[str, Any]:
    """Make the bundle that was active before the current one active again; ``expect``: only
    if the current one is that version. The bundle now active."""
    with _switching(db) as s:
        current = _in_state(s, "active")
        if current is None:
            raise BundleStateError("no bundle is active")
        if expect is not None and current.version != expect:
            raise BundleStateError(f"bundle {expect} is not the active one ({current.version} "
                                   "is)")
        previous = s.scalars(select(Bundle).where(Bundle.version != current.version,
                                                  Bundle.activated_at.is_not(None))
                             .order_by(Bundle.activated_at.desc()).limit(1)).first()
        if previous is None:
            raise BundleStateError(f"no bundle was active before {current.version}")
        check_directory(previous)
        _activate(s, previous, by)
        return to_dict(previous)


def shadow(db: Database, version: str, by: str) -> dict[str, Any]:
    """Score every request with ``version`` too, off the request path (it replaces the shadow
    bundle, if any)."""
    with _switching(db) as s:
        b = _get(s, version)
        if b.state == "active":
            raise BundleStateError(f"bundle {version} is active; shadow a candidate")
        if b.state != "shadow":
            check_directory(b)
            current = _in_state(s, "shadow")
            if current is not None:
                _set(s, current, "retired", by)
            _set(s, b, "shadow", by)
        return to_dict(b)


def retire(db: Database, version: str, by: str) -> dict[str, Any]:
    """Retire a bundle that is not active (a shadow bundle stops being scored)."""
    with _switching(db) as s:
        b = _get(s, version)
        if b.state == "active":
            raise BundleStateError(f"bundle {version} is active; promote another bundle or "
                                   "roll back first")
        _set(s, b, "retired", by)
        return to_dict(b)


def list_bundles(db: Database) -> list[dict[str, Any]]:
    """Every registered bundle, the newest first."""
    with db.read() as s:
        rows = s.scalars(select(Bundle).order_by(Bundle.registered_at.desc(),
                                                 Bundle.version)).all()
        return [to_dict(b) for b in rows]


def get(db: Database, version: str) -> dict[str, Any]:
    """One bundle with its full backtest report."""
    with db.read() as s:
        return to_dict(_get(s, version), full=True)


def _serving(s: Session) -> Serving:
    refs = {b.state: Ref(b.version, Path(b.directory)) for b in s.scalars(
        select(Bundle).where(Bundle.state.in_(("active", "shadow"))))}
    return Serving(refs.get("active"), refs.get("shadow"))


def serving(db: Database) -> Serving:
    """The registry's active and shadow bundles (what every worker polls)."""
    with db.read() as s:
        return _serving(s)


def start_serving(db: Database, directory: Path) -> Serving:
    """At a worker's start: a settings' bundle the registry does not know yet (the first
    start, or a new bundle deployed) is registered and made active; a known one is left as the
    registry says (a restart keeps what was promoted or rolled back). Then :func:`serving`."""
    directory = Path(directory).resolve()
    manifest = load_manifest(directory, verify_hashes=False)
    version = manifest.bundle_version
    for attempt in range(3):  # workers starting together: one registers, the others see it
        try:
            with db.write() as s:
                if s.get(Bundle, version) is None:
                    b = Bundle(version=version, directory=str(directory),
                               model_name=manifest.model_name,
                               registered_by=SERVE, registered_at=utcnow(), state="registered")
                    s.add(b)
                    s.flush()
                    _activate(s, b, SERVE)
                return _serving(s)
        except IntegrityError:
            if attempt == 2:
                raise
    raise AssertionError("unreachable")
