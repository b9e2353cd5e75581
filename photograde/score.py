"""``photograde score``: grade a whole catalogue with one bundle, as the service would, into a
Parquet dataset; on Ray Data when it is installed, in this process otherwise.

The rows come from a manifest (one per device with both photos and a full checklist; its id
is the ``device_id``) or from the workflow database (every stored evaluation, its photos from
the photo store; its id is the evaluation's). Each device goes through
:meth:`serve.runtime.Grader.grade`, the service's grading (photos decoded as uploaded, both
in one vision call, fusion, return risk, the decision against the refurbisher's grade with the
settings' thresholds), so a row's grade is the one the service gives that device.

Both engines run the same :class:`Scorer` on batches of rows: in this process (one Grader,
a tqdm bar), or on Ray Data as ``map_batches`` over an actor pool, one ONNX Runtime Grader per
actor (one CPU, one ONNX Runtime thread each), with a local Ray when no address is given.
The driver writes the scored batches as Parquet parts (``part-RUN-N.parquet``, each written to
a temporary name and renamed) into the ``--out`` folder, which Parquet readers (pyarrow,
pandas, Spark, DuckDB) read as one table. A rerun skips the ids already there: an interrupted
run resumes where it stopped. A device whose photos are missing or unreadable gets a row with
``error`` set (and no grade); it is not retried.
"""

from __future__ import annotations

import functools
import itertools
import json
import time
import uuid
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tqdm import tqdm

from fusion.grade import GradeResult
from fusion.precision import Wanted
from serve.evaluations import decision_policy
from serve.photostore import PhotoStore, open_photo_store
from serve.runtime import Grader
from tabular.schema import DeviceInfo
from vision.errors import PhotogradeError

#: The input row: what a Scorer needs to grade one device (strings: Ray moves them as Arrow).
ITEM_COLUMNS = ("id", "front", "back", "device", "refurbisher_grade")
#: Rows per batch given to a Scorer (and per Ray block), and rows per Parquet part at least.
BATCH_ROWS = 16
PART_ROWS = 512
#: Rows taken from the source per Ray dataset (bounds the driver's memory on 1M devices).
CHUNK_ROWS = 20_000
ENGINES = ("auto", "ray", "single")


class ScoreError(PhotogradeError):
    """No source, Ray asked for but not installed, or an output folder that is not ours."""


def _pa() -> Any:
    try:
        import pyarrow as pa
    except ImportError:
        raise ScoreError("photograde score writes Parquet: pip install 'photograde[scale]' "
                         "(pyarrow; Ray for the distributed engine)") from None
    return pa


@functools.cache
def schema() -> Any:
    """The output table's columns (the same for both engines)."""
    pa = _pa()
    s, f = pa.string(), pa.float64()
    return pa.schema([
        ("id", s), ("grade", s), ("confidence", f),
        ("grade_probabilities", s),  # JSON: grade -> probability
        ("screen_condition", s), ("shell_condition", s),
        ("return_risk", s),  # JSON, as the API's return_risk
        ("refurbisher_grade", s), ("decision", s), ("bundle_version", s),
        ("error", s),  # photo_missing | photo_unreadable: ..., else null
    ])


@dataclass(frozen=True)
class Item:
    """One device to grade: photo paths (manifest) or sha256 keys (photo store)."""

    id: str
    front: str
    back: str
    device: str  # the checklist as JSON
    refurbisher_grade: str = ""  # "" when unknown

    def row(self) -> dict[str, str]:
        return {c: getattr(self, c) for c in ITEM_COLUMNS}


@dataclass
class Source:
    """The devices to score: ``items`` (streamed), how many there are at most (for the progress
    bar), the settings of the photo store their keys refer to (None: paths; see
    :class:`Scorer`) and rows skipped up front."""

    items: Iterable[Item]
    total: int
    store: Mapping[str, str] | None = None
    skipped: Counter[str] = field(default_factory=Counter)


class Scorer:
    """Grades a batch of items (a mapping of :data:`ITEM_COLUMNS` to sequences) into a
    :func:`schema` table. One Grader per Scorer: a Ray actor holds one."""

    def __init__(self, bundle: str, threads: int | None = 1,
                 store: Mapping[str, str] | None = None,
                 decision_gaps: tuple[int | None, int | None] = (None, None),
                 precision: Wanted = "auto"):
        """``store``: the photo store's settings (``photo_dir``, or ``photo_store``,
        ``s3_endpoint_url``, ``s3_region``) when the items' photos are sha256 keys; the S3
        credentials come from this process's environment (``PHOTOGRADE_S3_*`` or ``AWS_*``),
        on every Ray node."""
        from serve.settings import load_settings  # the environment's, under ``store``

        self.grader = Grader(bundle, threads=threads, precision=precision)
        self.grader.policy = decision_policy(self.grader.policy, *decision_gaps)
        self.store: PhotoStore | None = (open_photo_store(load_settings(**store)) if store
                                         else None)

    def _photo(self, ref: str) -> bytes | Path:
        if self.store is None:
            if not Path(ref).is_file():
                raise FileNotFoundError(ref)
            return Path(ref)
        if not self.store.exists(ref):
            raise FileNotFoundError(ref)
        return self.store.get(ref)

    def grade(self, item: Mapping[str, str]) -> dict[str, Any]:
        """One row of the output: the grade, or why there is none."""
        ref = str(item["refurbisher_grade"]) or None
        row: dict[str, Any] = dict.fromkeys(schema().names)
        row |= {"id": str(item["id"]), "refurbisher_grade": ref,
                "bundle_version": self.grader.manifest.bundle_version}
        try:
            front, back = self._photo(str(item["front"])), self._photo(str(item["back"]))
        except (FileNotFoundError, ValueError):
            return row | {"error": "photo_missing"}
        info = DeviceInfo.model_validate_json(str(item["device"]))
        on_scale = ref if ref in self.grader.policy.grades else None  # else: no decision
        try:
            r: GradeResult = self.grader.grade(front, back, info, on_scale)
        except (PhotogradeError, OSError) as e:
            return row | {"error": f"photo_unreadable: {e}"}
        return row | {
            "grade": r.grade, "confidence": r.confidence,
            "grade_probabilities": json.dumps(r.grade_probabilities),
            "screen_condition": r.parts["screen"].condition,
            "shell_condition": r.parts["shell"].condition,
            "return_risk": json.dumps(r.return_risk),
            "decision": str(r.decision) if r.decision is not None else None}

    def __call__(self, batch: Any) -> Any:
        """``batch``: a pyarrow table (Ray) or a mapping of columns to lists."""
        if hasattr(batch, "to_pydict"):
            batch = batch.to_pydict()
        n = len(batch["id"])
        rows = [self.grade({c: batch[c][i] for c in ITEM_COLUMNS}) for i in range(n)]
        return _pa().Table.from_pylist(rows, schema=schema())


class PartWriter:
    """Parquet parts in the output folder, each written whole (temporary name, rename)."""

    def __init__(self, out: Path):
        self.out, self.run = out, uuid.uuid4().hex[:8]
        self.count = self.rows = self.errors = 0
        out.mkdir(parents=True, exist_ok=True)

    def write(self, table: Any) -> None:
        import pyarrow.parquet as pq

        final = self.out / f"part-{self.run}-{self.count:05d}.parquet"
        tmp = final.with_name(f".{final.name}.tmp")
        pq.write_table(table, tmp)
        tmp.rename(final)
        self.count += 1
        self.rows += table.num_rows
        self.errors += table.num_rows - table.column("error").null_count


def done_ids(out: Path) -> set[str]:
    """The ids already scored in ``out`` (its parts), for a rerun to skip."""
    if out.exists() and not out.is_dir():
        raise ScoreError(f"--out {out}: a file; give a folder (a Parquet dataset)")
    parts = sorted(out.glob("part-*.parquet")) if out.is_dir() else []
    if not parts:
        return set()
    import pyarrow.parquet as pq

    return {i for p in parts for i in pq.read_table(p, columns=["id"]).column("id").to_pylist()}


def read_scores(out: str | Path) -> Any:
    """The scores in ``out`` as one pyarrow table, ordered by id."""
    import pyarrow.parquet as pq

    parts = sorted(Path(out).glob("part-*.parquet"))
    table = _pa().concat_tables([pq.read_table(p) for p in parts]) if parts else \
        schema().empty_table()
    return table.sort_by("id")


def _batches(items: Iterable[Item], n: int) -> Iterator[list[Item]]:
    it = iter(items)
    while chunk := list(itertools.islice(it, n)):
        yield chunk


def _columns(items: list[Item]) -> dict[str, list[str]]:
    return {c: [getattr(i, c) for i in items] for c in ITEM_COLUMNS}


@dataclass(frozen=True)
class Engine:
    """How to score: the bundle and options every Scorer gets, and Ray's place and size."""

    bundle: Path
    store: Mapping[str, str] | None = None  # the source's photo store (Scorer)
    decision_gaps: tuple[int | None, int | None] = (None, None)
    precision: Wanted = "auto"  # as the service serves it (fusion.precision)
    threads: int | None = None  # single-process ONNX Runtime threads (default: CPU quota)
    ray_address: str | None = None
    num_cpus: int | None = None  # Ray: actors (one CPU each); local Ray: its CPUs too

    def scorer_kwargs(self, threads: int | None) -> dict[str, Any]:
        return {"bundle": str(self.bundle), "threads": threads, "precision": self.precision,
                "store": dict(self.store) if self.store else None,
                "decision_gaps": self.decision_gaps}


def _score_single(engine: Engine, items: Iterable[Item], writer: PartWriter, bar: tqdm) -> None:
    scorer = Scorer(**engine.scorer_kwargs(engine.threads))
    pending: list[Any] = []
    for batch in _batches(items, BATCH_ROWS):
        pending.append(scorer(_columns(batch)))
        bar.update(len(batch))
        if sum(t.num_rows for t in pending) >= PART_ROWS:
            writer.write(_pa().concat_tables(pending))
            pending = []
    if pending:
        writer.write(_pa().concat_tables(pending))


def _ray_actors(engine: Engine) -> int:
    import ray

    if engine.num_cpus:
        return engine.num_cpus
    return max(1, int(ray.cluster_resources().get("CPU", 1)))


def _score_ray(engine: Engine, items: Iterable[Item], writer: PartWriter, bar: tqdm) -> None:
    import ray
    import ray.data

    actors = _ray_actors(engine)
    for chunk in _batches(items, CHUNK_ROWS):
        ds = ray.data.from_items([i.row() for i in chunk],
                                 override_num_blocks=max(1, len(chunk) // BATCH_ROWS))
        scored = ds.map_batches(Scorer, fn_constructor_kwargs=engine.scorer_kwargs(1),
                                batch_size=BATCH_ROWS, batch_format="pyarrow",
                                compute=ray.data.ActorPoolStrategy(size=actors), num_cpus=1)
        table: Any
        for table in scored.iter_batches(batch_size=PART_ROWS, batch_format="pyarrow"):
            writer.write(table)
            bar.update(table.num_rows)


def _ray_available() -> bool:
    try:
        import ray.data  # noqa: F401
    except ImportError:
        return False
    return True


def _init_ray(engine: Engine, progress: bool) -> bool:
    """Connect to ``ray_address`` or start a local Ray (unless one is up); True if we did."""
    import ray
    import ray.data

    ray.data.DataContext.get_current().enable_progress_bars = progress
    if ray.is_initialized():
        return False
    if engine.ray_address:
        ray.init(address=engine.ray_address, log_to_driver=False)
    else:
        ray.init(num_cpus=engine.num_cpus, include_dashboard=False, log_to_driver=False)
    return True


def pick_engine(engine: str, ray_address: str | None) -> str:
    """``ray`` or ``single``: ``auto`` is Ray when it is installed."""
    if engine not in ENGINES:
        raise ScoreError(f"--engine {engine!r}: one of {', '.join(ENGINES)}")
    has_ray = _ray_available()
    if (engine == "ray" or ray_address) and not has_ray:
        raise ScoreError("Ray is not installed: pip install 'photograde[scale]', or --engine "
                         "single (without --ray-address)")
    if ray_address and engine == "single":
        raise ScoreError("--ray-address needs the Ray engine")
    return "ray" if engine == "ray" or (engine == "auto" and has_ray) else "single"


def score(source: Source, out: str | Path, engine: Engine, *, use: str = "auto",
          progress: bool = True) -> dict[str, Any]:
    """Score the source's devices not yet in ``out``; a summary (counts, seconds, rate)."""
    _pa()
    kind = pick_engine(use, engine.ray_address)
    out = Path(out)
    done = done_ids(out)
    already: Counter[str] = Counter()

    def todo() -> Iterator[Item]:
        for item in source.items:
            if item.id in done:
                already["done"] += 1
            else:
                yield item

    writer = PartWriter(out)
    started = time.perf_counter()
    with tqdm(total=max(0, source.total - len(done)), desc="score", unit="device",
              disable=not progress or kind == "ray") as bar:
        if kind == "single":
            _score_single(engine, todo(), writer, bar)
        else:
            ours = _init_ray(engine, progress)
            try:
                _score_ray(engine, todo(), writer, bar)
            finally:
                if ours:
                    import ray

                    ray.shutdown()
    seconds = time.perf_counter() - started
    n = writer.rows
    skipped = source.skipped + already
    return {"engine": kind, "scored": n, "errors": writer.errors,
            "skipped": dict(sorted(skipped.items())), "parts": writer.count,
            "seconds": round(seconds, 2),
            "devices_per_s": round(n / seconds, 2) if seconds > 0 and n else None,
            "out": str(out)}


def manifest_source(paths: Sequence[str | Path]) -> Source:
    """Every manifest row with both photos and a full checklist (id: ``device_id``)."""
    from training.manifest import load_manifest

    items: list[Item] = []
    skipped: Counter[str] = Counter()
    for m in (load_manifest(p) for p in paths):
        for r in m.rows:
            info = r.device_info()
            if not (r.front_path and r.back_path):
                skipped["photo_missing"] += 1
            elif info is None:
                skipped["checklist_incomplete"] += 1
            else:
                items.append(Item(r.device_id, str(r.front_path), str(r.back_path),
                                  info.model_dump_json(), r.refurbisher_grade or ""))
    if len({i.id for i in items}) != len(items):
        raise ScoreError("the manifests repeat a device_id: ids must be unique to resume")
    return Source(items, len(items), None, skipped)


def database_source(db: Any, store: Mapping[str, str]) -> Source:
    """Every stored evaluation (id: the evaluation's), streamed oldest first; its photos from
    the photo store of settings ``store``. Evaluations whose checklist lacks a check of
    today's are skipped."""
    from photograde import history

    skipped: Counter[str] = Counter()

    def items() -> Iterator[Item]:
        for ev in history.iter_evaluations(db):
            info = history.device_info(ev)
            if info is None:
                skipped["checklist_incomplete"] += 1
                continue
            yield Item(ev.id, ev.front_sha256, ev.back_sha256, info.model_dump_json(),
                       ev.refurbisher_grade or "")

    return Source(items(), history.count_evaluations(db), store, skipped)
