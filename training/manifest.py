"""The dataset manifest: one CSV row per device, photos relative to the manifest.

Only ``device_id`` and at least one photo column are required; every other column may be
absent or empty (unknown). Condition cells may hold a coarse label ``a|b|c``. The loader checks
every row and reports every problem with its line number, not only the first.

A manifest may have a geometry sidecar, ``<stem>.annotations.json`` next to it: the device
outline and glass region of some or all of its photos in COCO keypoints JSON
(:mod:`training.annotations`); the loader attaches them to the rows and checks that every
annotated image is one of the manifest's photos.

A manifest does not depend on a grade scale: ``grade`` and ``refurbisher_grade`` are kept as
written, and checked against a grading config only where one is given, by the code that uses
the grades (tabular and fusion training, seeding, ``photograde manifest check --grading``).
"""

from __future__ import annotations

import csv
import datetime as dt
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fusion.policy import GradingPolicy
from tabular.schema import CHECKS, DeviceInfo
from training.annotations import AnnotationError, read_coco, sidecar_path
from vision.conditions import format_condition_set, parse_condition_set
from vision.errors import PhotogradeError
from vision.geometry import DeviceGeometry

PHOTO_COLUMNS = ("front_path", "back_path")
FACT_COLUMNS = ("brand", "model", "storage_gb", "unlocked", "battery_health_pct")
LABEL_COLUMNS = ("screen_condition", "shell_condition", "grade")
WORKFLOW_COLUMNS = ("refurbisher_id", "refurbisher_grade", "returned", "return_reason", "listed_at")
SOURCE_COLUMN = "source"  # where a photo comes from (a web source, a refurbisher): free text
#: Appended to a device id for the row of its photos' crops (``mixed.csv`` of
#: ``training.crop_data``): the validation split keeps such a row with its device's.
CROP_SUFFIX = "-crop"
COLUMNS: tuple[str, ...] = (
    "device_id", *PHOTO_COLUMNS, *FACT_COLUMNS, *CHECKS, *LABEL_COLUMNS, *WORKFLOW_COLUMNS,
    SOURCE_COLUMN,
)


def name_source(path: str | Path) -> str:
    """The source a photo's file name implies when no ``source`` column says it: the name up
    to its first '-' (``cv vision --by-source`` and the crops' manifests read it so)."""
    return Path(path).name.split("-", 1)[0]


_TRUE = {"true", "1", "yes", "y", "t"}
_FALSE = {"false", "0", "no", "n", "f"}


class ManifestError(PhotogradeError):
    """A manifest has problems; ``errors`` lists every one as ``line N: column: message``."""

    def __init__(self, path: Path, errors: list[str]):
        self.path, self.errors = path, errors
        shown = "\n  ".join(errors[:50]) + ("\n  ..." if len(errors) > 50 else "")
        super().__init__(f"{path}: {len(errors)} problem(s):\n  {shown}")


class DatasetError(PhotogradeError):
    """Valid manifests, but not enough usable rows (labels, views, columns) for the task."""


@dataclass
class ManifestRow:
    """One device. Paths are absolute; None means unknown or absent."""

    line: int
    device_id: str
    front_path: Path | None = None
    back_path: Path | None = None
    brand: str | None = None
    model: str | None = None
    storage_gb: int | None = None
    unlocked: bool | None = None
    battery_health_pct: int | None = None
    checks: dict[str, bool | None] = field(default_factory=dict)
    screen: frozenset[str] | None = None
    shell: frozenset[str] | None = None
    grade: str | None = None
    refurbisher_id: str | None = None
    refurbisher_grade: str | None = None
    returned: bool | None = None
    return_reason: str | None = None
    listed_at: dt.date | None = None
    source: str | None = None
    front_geometry: DeviceGeometry | None = None  # from the sidecar, when it has the photo
    back_geometry: DeviceGeometry | None = None

    def condition(self, part: str) -> frozenset[str] | None:
        """Allowed conditions for ``screen`` or ``shell`` (None: unknown)."""
        return self.screen if part == "screen" else self.shell

    def exact_condition(self, part: str) -> str | None:
        """The condition when the label is exact (one allowed value), else None."""
        allowed = self.condition(part)
        return next(iter(allowed)) if allowed is not None and len(allowed) == 1 else None

    def photo(self, view: str) -> Path | None:
        return self.front_path if view == "front" else self.back_path

    def geometry(self, view: str) -> DeviceGeometry | None:
        """The device outline in the ``view`` photo, when the sidecar has it."""
        return self.front_geometry if view == "front" else self.back_geometry

    @property
    def failed_checks(self) -> list[str]:
        return [c for c in CHECKS if self.checks.get(c) is False]

    def device_info(self) -> DeviceInfo | None:
        """The form's device info, when the row has every required fact and check."""
        needed = [self.brand, self.model, self.storage_gb, self.unlocked,
                  *(self.checks.get(c) for c in CHECKS)]
        if any(v is None for v in needed):
            return None
        return DeviceInfo.model_validate({
            "brand": self.brand, "model": self.model, "storage_gb": self.storage_gb,
            "unlocked": self.unlocked, "battery_health_pct": self.battery_health_pct,
            "checks": {c: self.checks[c] for c in CHECKS},
        })


@dataclass
class Manifest:
    path: Path
    rows: list[ManifestRow]
    columns: tuple[str, ...]

    def __len__(self) -> int:
        return len(self.rows)

    def summary(self) -> dict[str, Any]:
        """Row count, photo counts, label counts per column (coarse labels as written) and,
        when any row has one, row counts per source."""
        counts: dict[str, Counter] = {c: Counter() for c in
                                      ("screen_condition", "shell_condition", "grade",
                                       "refurbisher_grade", "returned")}
        for r in self.rows:
            counts["screen_condition"][format_condition_set(r.screen, "screen") or "(unknown)"] += 1
            counts["shell_condition"][format_condition_set(r.shell, "shell") or "(unknown)"] += 1
            counts["grade"][r.grade or "(unknown)"] += 1
            counts["refurbisher_grade"][r.refurbisher_grade or "(unknown)"] += 1
            counts["returned"]["(unknown)" if r.returned is None else str(r.returned).lower()] += 1
        summary: dict[str, Any] = {
            "rows": len(self.rows),
            "front_photos": sum(r.front_path is not None for r in self.rows),
            "back_photos": sum(r.back_path is not None for r in self.rows),
            "labels": {k: dict(sorted(v.items())) for k, v in counts.items()
                       if set(v) != {"(unknown)"}},
        }
        outlined = sum(r.geometry(v) is not None for r in self.rows for v in ("front", "back"))
        if outlined:
            summary["photos_with_geometry"] = outlined
        sources = Counter(r.source or "(unknown)" for r in self.rows)
        if set(sources) - {"(unknown)"}:
            summary["sources"] = dict(sorted(sources.items()))
        return summary


def _parse_bool(text: str) -> bool:
    low = text.strip().lower()
    if low in _TRUE:
        return True
    if low in _FALSE:
        return False
    raise ValueError(f"expected true/false, got {text!r}")


def _parse_int(text: str, lo: int, hi: int) -> int:
    try:
        value = int(text.strip())
    except ValueError:
        raise ValueError(f"expected an integer, got {text!r}") from None
    if not lo <= value <= hi:
        raise ValueError(f"{value} is out of range {lo}..{hi}")
    return value


def _parse_date(text: str) -> dt.date:
    try:
        return dt.datetime.fromisoformat(text.strip()).date()
    except ValueError:
        raise ValueError(f"expected an ISO date (YYYY-MM-DD), got {text!r}") from None


def _parse_grade(text: str, policy: GradingPolicy | None) -> str:
    """A grade as written; with a policy, raises ValueError unless the scale has it."""
    grade = text.strip()
    if policy is not None:
        policy.rank(grade)
    return grade


def _parse_row(cells: Mapping[str, str], line: int, base: Path, policy: GradingPolicy | None,
               check_files: bool, errors: list[str]) -> ManifestRow | None:
    def bad(column: str, message: str) -> None:
        errors.append(f"line {line}: {column}: {message}")

    n_errors = len(errors)
    device_id = cells.get("device_id", "").strip()
    if not device_id:
        bad("device_id", "empty")
    row = ManifestRow(line=line, device_id=device_id)

    for col in PHOTO_COLUMNS:
        rel = cells.get(col, "").strip()
        if not rel:
            continue
        path = (base / rel).resolve()
        if check_files and not path.is_file():
            bad(col, f"file not found: {rel}")
        setattr(row, col, path)
    if row.front_path is None and row.back_path is None and not any(
            e.startswith(f"line {line}: {c}") for e in errors for c in PHOTO_COLUMNS):
        bad("front_path/back_path", "no photo (at least one is required)")

    parsers: dict[str, Callable[[str], Any]] = {
        "storage_gb": lambda t: _parse_int(t, 1, 4096),
        "battery_health_pct": lambda t: _parse_int(t, 0, 100),
        "unlocked": _parse_bool,
        "returned": _parse_bool,
        "listed_at": _parse_date,
        "screen_condition": lambda t: parse_condition_set(t, "screen"),
        "shell_condition": lambda t: parse_condition_set(t, "shell"),
        "grade": lambda t: _parse_grade(t, policy),
        "refurbisher_grade": lambda t: _parse_grade(t, policy),
        **{c: _parse_bool for c in CHECKS},
    }
    attr = {"screen_condition": "screen", "shell_condition": "shell"}
    for col, text in cells.items():
        if col in ("device_id", *PHOTO_COLUMNS) or not text or not text.strip():
            continue
        parse = parsers.get(col, str.strip)
        try:
            value = parse(text)
        except ValueError as e:
            bad(col, str(e))
            continue
        if col in CHECKS:
            row.checks[col] = value
        else:
            setattr(row, attr.get(col, col), value)
    return row if len(errors) == n_errors else None


def read_manifest(path: str | Path, policy: GradingPolicy | None = None,
                  check_files: bool = True) -> tuple[Manifest | None, list[str]]:
    """Read and validate a manifest; returns (manifest or None, every problem found).

    ``policy``: check the grades against its scale (None: grades are kept unchecked)."""
    path = Path(path)
    if not path.is_file():
        return None, [f"{path}: file not found"]
    errors: list[str] = []
    rows: list[ManifestRow] = []
    try:
        handle = path.open(newline="", encoding="utf-8-sig")
        reader = csv.reader(handle)
        header = [h.strip() for h in next(reader, [])]
    except UnicodeDecodeError:
        return None, [f"{path}: not UTF-8 text (is it a CSV file?)"]
    with handle:
        if not header:
            return None, [f"{path}: empty file (expected a CSV header with device_id)"]
        unknown = [h for h in header if h not in COLUMNS]
        if unknown:
            errors.append(f"line 1: header: unknown column(s) {', '.join(map(repr, unknown))}")
        dupes = sorted({h for h in header if header.count(h) > 1})
        if dupes:
            errors.append(f"line 1: header: duplicate column(s) {', '.join(dupes)}")
        if "device_id" not in header:
            errors.append("line 1: header: missing required column device_id")
        if not set(PHOTO_COLUMNS) & set(header):
            errors.append("line 1: header: needs front_path or back_path (or both)")
        if errors:
            return None, errors
        seen: dict[str, int] = {}
        base = path.parent
        try:
            for cells in reader:
                line = reader.line_num
                if not any(c.strip() for c in cells):
                    continue
                if len(cells) != len(header):
                    errors.append(f"line {line}: row: {len(cells)} fields, the header has "
                                  f"{len(header)}")
                    continue
                row = _parse_row(dict(zip(header, cells, strict=True)), line, base, policy,
                                 check_files, errors)
                if row is None:
                    continue
                if row.device_id in seen:
                    errors.append(f"line {line}: device_id: duplicate {row.device_id!r} "
                                  f"(first on line {seen[row.device_id]})")
                    continue
                seen[row.device_id] = line
                rows.append(row)
        except (csv.Error, UnicodeDecodeError) as e:
            errors.append(f"line {reader.line_num}: row: unreadable CSV ({e})")
    if not errors and sidecar_path(path).is_file():
        errors += _attach_geometry(sidecar_path(path), rows)
    if errors:
        return None, errors
    return Manifest(path=path, rows=rows, columns=tuple(header)), []


def _attach_geometry(sidecar: Path, rows: list[ManifestRow]) -> list[str]:
    """Set the rows' geometry from ``sidecar`` (file names relative to its folder); returns
    the problems (an unreadable file, an image that is none of the rows' photos)."""
    try:
        geometry = read_coco(sidecar)
    except AnnotationError as e:
        return [str(e)]
    photos = {(r.photo(v), v): r for r in rows for v in ("front", "back") if r.photo(v)}
    by_path = {p: (r, v) for (p, v), r in photos.items()}
    errors = []
    for name, g in geometry.items():
        found = by_path.get((sidecar.parent / name).resolve())
        if found is None:
            errors.append(f"{sidecar}: image {name!r} is not a photo of the manifest")
            continue
        setattr(found[0], f"{found[1]}_geometry", g)
    return errors


def load_manifest(path: str | Path, policy: GradingPolicy | None = None,
                  check_files: bool = True) -> Manifest:
    """Load a valid manifest or raise :class:`ManifestError` listing every problem
    (grades checked against ``policy``'s scale when one is given)."""
    manifest, errors = read_manifest(path, policy, check_files)
    if manifest is None:
        raise ManifestError(Path(path), errors)
    return manifest


def write_manifest(path: str | Path, rows: Iterable[Mapping[str, Any]],
                   columns: Iterable[str] = COLUMNS) -> Path:
    """Write rows (dicts keyed by column; missing keys empty) as a manifest CSV."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    columns = list(columns)
    with path.open("w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=columns, extrasaction="raise")
        writer.writeheader()
        for row in rows:
            writer.writerow({c: _cell(row.get(c)) for c in columns})
    return path


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)
