"""Grading for the routes: the served model (grader and dynamic batcher, swapped without
downtime), the shadow scorer, the photo decoding pool, metrics.

:class:`Service` is what ``/v1/grade``, ``/v1/grade/batch``, evaluations and the UI share to
turn photo bytes and a checklist into a :class:`~fusion.grade.GradeResult`; its errors are the
typed problems of :mod:`serve.problems`, naming the request field they are about.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from sqlalchemy.exc import SQLAlchemyError

from fusion.grade import GradeResult
from fusion.policy import GradingPolicy
from serve.batcher import Batcher, QueueFull
from serve.evaluations import decision_policy
from serve.metrics import Metrics
from serve.photorecords import Screen
from serve.problems import (
    FieldError,
    NotReady,
    Overloaded,
    PhotoRejected,
    PhotoTooLarge,
    UnknownGrade,
)
from serve.registry import Serving
from serve.runtime import Grader, Photo, stats_as_uploaded
from serve.seller_trust import TrustCache
from serve.settings import Settings
from serve.shadow import ShadowJob, ShadowRef, ShadowScorer
from tabular.schema import ChecklistError, DeviceInfo, parse_device_info
from vision.photocheck import PhotoVerdict, Slot, duplicate
from vision.preprocess import ImageError

log = logging.getLogger("photograde.serve")


def batching_enabled(setting: bool | str, provider: str) -> bool:
    """``auto``: batch on GPUs only. On CPU, ONNX Runtime's time per photo is flat from batch 1
    to 16 for this model (benchmarks/serve_load.py), so waiting to batch only adds latency."""
    return provider == "CUDAExecutionProvider" if setting == "auto" else bool(setting)


def parse_device(data: str | bytes | dict, field: str = "device") -> DeviceInfo:
    """The request's checklist; a FieldError (invalid-device) naming ``field``."""
    try:
        return parse_device_info(data)
    except ChecklistError as e:
        raise FieldError(field, e) from None


def check_grade(policy: GradingPolicy, grade: str, field: str) -> str:
    """``grade`` if it is on the policy's scale, else UnknownGrade naming ``field``."""
    if grade not in policy.grades:
        raise UnknownGrade(f"{field}: unknown grade {grade!r}; this scale has "
                           f"{', '.join(policy.grades)}", field)
    return grade


def unchecked(photos: list[Photo]) -> list[PhotoVerdict]:
    """Verdicts of (front, back) that skipped the check: measured only, for the hashes an
    evaluation stores (a later copy of a photo graded with ``quality_check=false`` is still a
    duplicate)."""
    slots: list[Slot] = ["front", "back"]
    return [PhotoVerdict(slot=slot, stats=p.stats or stats_as_uploaded(p.image, p.size))
            for slot, p in zip(slots, photos, strict=True)]


def grader_for(s: Settings, bundle: Path, threads: int | None = None) -> Grader:
    """``bundle`` loaded as the settings ask (threads, precision, spinning, pixel limit)."""
    return Grader(bundle, threads=threads or s.threads or None, precision=s.precision,
                  max_pixels=s.max_pixels, spinning=s.ort_spinning)


def warm_up(g: Grader, max_batch: int) -> None:
    """Run the vision model on a few batch sizes: its first ONNX Runtime calls are slow."""
    size = g.pre.img_size
    for n in (1, 2, min(max_batch, 8)):
        g.run_vision(np.zeros((n, 3, size, size), np.float32))


@dataclass(eq=False)
class Model:
    """A served bundle: its grader, the batcher that runs its vision model, and how many
    requests are using it (a replaced model's batcher stops once they are done)."""

    grader: Grader
    batcher: Batcher
    inflight: int = 0


class Service:
    """What the routes share: the served model (grader and batcher), the shadow scorer, the
    decode pool, metrics, settings. :meth:`swap` replaces the model while requests run: each
    request uses the model it started with, from decoding to fusion."""

    def __init__(self, settings: Settings, grader: Grader | None = None):
        self.settings = settings
        self._initial = grader
        self.model: Model | None = None
        self.shadow: ShadowScorer | None = None
        self.metrics = Metrics(settings.drift_window, settings.drift_min_devices)
        self.ready = False
        self.decode_pool: ThreadPoolExecutor | None = None
        self.batching = False
        self.wanted: Serving | None = None  # the registry's, as last polled (serve.versions)
        self.load_error: str | None = None  # why the registry's bundle is not served, if so
        self._retiring: list[Model] = []
        self._tasks: set[asyncio.Task] = set()
        self._trust: TrustCache | None = None

    @property
    def grader(self) -> Grader | None:
        """The served bundle's grader (before start: the one given, if any)."""
        return self.model.grader if self.model else self._initial

    @property
    def loaded(self) -> Grader:
        """The grader; NotReady while the bundle is still loading."""
        if self.grader is None:
            raise NotReady("the model bundle is still loading")
        return self.grader

    def versions(self) -> dict[str, Any]:
        """The bundles this worker serves, the registry's (as last polled), and why they
        differ (a bundle that failed to load), if they do."""
        wanted = self.wanted
        return {"active": self.loaded.manifest.bundle_version,
                "shadow": self.shadow.version if self.shadow else None,
                "registry": None if wanted is None else {
                    "active": wanted.active.version if wanted.active else None,
                    "shadow": wanted.shadow.version if wanted.shadow else None},
                "poll_seconds": self.settings.bundle_poll_seconds, "error": self.load_error}

    def prepare(self, g: Grader) -> Grader:
        """``g`` with the settings' decision thresholds, so ``/v1/grade`` and evaluations decide
        alike, whichever bundle serves."""
        s = self.settings
        g.policy = decision_policy(g.policy, s.validated_max_gap, s.suggestion_max_gap)
        return g

    def load(self, bundle: Path, threads: int | None = None) -> Grader:
        """A bundle loaded (hashes verified), prepared and warmed up: ready to swap in. Blocking:
        run it in a thread."""
        s = self.settings
        g = self.prepare(grader_for(s, bundle, threads))
        warm_up(g, s.max_batch_size)
        return g

    def _model(self, g: Grader) -> Model:
        s = self.settings
        batcher = Batcher(g.run_vision, max_batch=s.max_batch_size, max_wait_ms=s.max_wait_ms,
                          queue_size=s.queue_size, enabled=self.batching,
                          on_batch=self.metrics.batch_size.observe)
        batcher.start()
        return Model(g, batcher)

    def _watch(self, g: Grader) -> None:
        """The drift windows of ``g``'s version (kept from an earlier time it served)."""
        m = g.manifest
        if m.bundle_version not in self.metrics.windows:
            self.metrics.watch(m.bundle_version, g.policy.grades, g.policy.min_confidence,
                               m.reference)

    def _bundles_metric(self) -> None:
        self.metrics.set_bundles(self.grader.manifest.bundle_version if self.grader else None,
                                 self.shadow.version if self.shadow else None)

    async def start(self, grader: Grader | None = None) -> None:
        """Serve ``grader`` (else the one given at construction, else the settings' bundle),
        warmed up."""
        s = self.settings
        g = grader or self._initial
        if g is None:
            g = await asyncio.to_thread(grader_for, s, s.bundle)
        self.prepare(g)
        await asyncio.to_thread(warm_up, g, s.max_batch_size)
        self.decode_pool = ThreadPoolExecutor(s.decode_threads or g.threads,
                                              thread_name_prefix="decode")
        self.batching = batching_enabled(s.batching, g.provider)
        self.model, self._initial = self._model(g), None  # a swap may release it later
        self._bundles_metric()
        self._watch(g)
        self.ready = True
        self.metrics.ready.set(1)
        log.info("ready: bundle %s, %s, %s (%s), %d thread(s), batching %s",
                 g.manifest.bundle_version, g.provider, g.precision.precision,
                 g.precision.reason, g.threads, "on" if self.batching else "off")

    def swap(self, g: Grader) -> None:
        """Serve ``g`` (loaded and warmed up: :meth:`load`) from now on. Requests in flight
        finish on the model they started with; its batcher stops once they are done."""
        old, self.model = self.model, self._model(g)
        self._bundles_metric()
        self._watch(g)
        log.info("serving bundle %s (was %s)", g.manifest.bundle_version,
                 old.grader.manifest.bundle_version if old else "none")
        if old is not None:
            self._retiring.append(old)
            task = asyncio.create_task(self._retire(old))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _retire(self, m: Model) -> None:
        """Stop a replaced model's batcher once no request uses it."""
        while m.inflight:
            await asyncio.sleep(0.05)
        await m.batcher.stop()
        self._retiring.remove(m)

    def set_shadow(self, scorer: ShadowScorer | None) -> None:
        """Score every graded request with ``scorer``'s bundle too (None: no shadow)."""
        old, self.shadow = self.shadow, scorer
        if old is None and scorer is None:
            return
        if old is not None:
            old.close()
        self._bundles_metric()
        log.info("shadow bundle: %s", scorer.version if scorer else "none")

    async def stop(self) -> None:
        self.ready = False
        self.metrics.ready.set(0)
        for task in list(self._tasks):
            task.cancel()
        for m in (self.model, *self._retiring):
            if m is not None:
                await m.batcher.stop()
        self.set_shadow(None)
        if self.decode_pool:
            self.decode_pool.shutdown(wait=False, cancel_futures=True)

    async def decode(self, field: str, data: bytes, g: Grader | None = None,
                     checked: bool = False, view: str | None = None) -> Photo:
        """Decode one photo in the pool (for ``g``, default the served bundle), measured for
        the photo check and, ``checked``, scored by its model; problems name ``field``;
        ``view``: its side (the model sees the device's crop when the bundle crops it)."""
        limit = self.settings.max_upload_bytes
        if len(data) > limit:
            raise PhotoTooLarge(f"{field}: {len(data)} bytes exceeds the limit of {limit} bytes",
                                field)
        if not data:
            raise FieldError(field, ImageError("empty file"))
        loop = asyncio.get_running_loop()
        g = g or self.loaded  # NotReady while the bundle loads
        try:  # measured here: the two photos' measurements run in parallel, as their decoding
            return await loop.run_in_executor(self.decode_pool, g.decode, data, True, checked,
                                              view)
        except ImageError as e:
            raise FieldError(field, e) from None

    async def check(self, photos: list[Photo], prefix: str = "",
                    screen: Screen | None = None, g: Grader | None = None
                    ) -> list[PhotoVerdict]:
        """The photo check of (front, back): measured and, when decoded ``checked``, scored in
        the decode pool (``g``'s photo check model, default the served bundle's; otherwise
        scored here, in the pool), then the ``screen``'s duplicates;
        PhotoRejected (naming the field, with its ``reason``) for the first refused photo,
        front first, counted and recorded."""
        g = g or self.loaded
        cfg = self.settings.photo_check_thresholds
        loop = asyncio.get_running_loop()
        slots: list[Slot] = ["front", "back"]
        if all(p.scores is not None for p in photos) or g.photocheck is None:
            verdicts = g.check_photos(photos, slots, cfg)  # scored with the decoding: no model
        else:
            verdicts = await loop.run_in_executor(
                self.decode_pool, g.check_photos, photos, slots, cfg)
        rejection = next((v.rejection for v in verdicts if v.rejection is not None), None)
        if rejection is None and screen is not None:
            slot = await screen.duplicate(verdicts, cfg.duplicate_max_distance)
            rejection = duplicate(slot, cfg) if slot is not None else None
        version = g.manifest.bundle_version
        self.metrics.checked(version, rejection.reason.value if rejection else None)
        if rejection is None:
            return verdicts
        self.metrics.photo_rejections.labels(rejection.reason.value, rejection.slot).inc()
        if screen is not None:
            await screen.rejected(rejection.slot, rejection.reason)
        field = f"{prefix}{rejection.slot}"
        raise PhotoRejected(f"{field}: {rejection.detail}", field,
                            reason=rejection.reason.value)

    async def grade(self, front: bytes, back: bytes, info: DeviceInfo,
                    refurbisher_grade: str | None, heatmaps: bool,
                    prefix: str = "", *, quality_check: bool = True,
                    screen: Screen | None = None, ref: ShadowRef | None = None) -> GradeResult:
        """Grade one device (:meth:`grade_with`)."""
        result, _ = await self.grade_with(front, back, info, refurbisher_grade, heatmaps, prefix,
                                          quality_check=quality_check, screen=screen, ref=ref)
        return result

    async def grade_with(self, front: bytes, back: bytes, info: DeviceInfo,
                         refurbisher_grade: str | None, heatmaps: bool,
                         prefix: str = "", *, quality_check: bool = True,
                         screen: Screen | None = None, ref: ShadowRef | None = None
                         ) -> tuple[GradeResult, Grader]:
        """Grade one device on the served model (the one it starts with, to the end) and
        return the grader that did; ``prefix`` goes before every field a problem names. The
        photos are checked first (:meth:`check`, with ``screen``) when the settings and
        ``quality_check`` ask it. A shadow bundle, if any, grades it too, later (``ref``:
        which request it was)."""
        m = self.model
        if m is None:
            raise NotReady("the model bundle is still loading")
        m.inflight += 1
        try:
            result = await self._grade_on(m, front, back, info, refurbisher_grade, heatmaps,
                                          prefix, quality_check, screen)
        finally:
            m.inflight -= 1
        if self.shadow is not None:  # after the answer, off the request path
            self.shadow.submit(ShadowJob(front, back, info, refurbisher_grade, result,
                                         ref or ShadowRef()))
        return result, m.grader

    async def _infer(self, batcher: Batcher, photos: list[Photo]
                     ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The vision model's outputs for the photos, through the batcher (Overloaded when
        its queue is full)."""
        self.metrics.queue_depth.set(batcher.pending)
        try:
            screen_l, shell_l, features = await batcher.infer(np.stack([p.x for p in photos]))
        except QueueFull:
            raise Overloaded("the inference queue is full; retry shortly",
                             headers={"Retry-After": "1"}) from None
        finally:
            self.metrics.queue_depth.set(batcher.pending)
        return screen_l, shell_l, features

    async def seller_trust(self, g: Grader, screen: Screen | None) -> float | None:
        """The seller's trust score for the return-risk model, when it reads it and the
        request comes from a seller (:mod:`serve.seller_trust`); None otherwise."""
        if screen is None or not screen.refurbisher_id or not g.risk.uses_evidence:
            return None
        if self._trust is None:
            self._trust = TrustCache(screen.db)
        try:
            return await asyncio.to_thread(self._trust.get, screen.refurbisher_id)
        except SQLAlchemyError as e:  # the return risk imputes it; the grade goes on
            log.warning("seller trust unavailable for %s: %s", screen.refurbisher_id,
                        type(e).__name__)
            return None

    async def _grade_on(self, m: Model, front: bytes, back: bytes, info: DeviceInfo,
                        refurbisher_grade: str | None, heatmaps: bool, prefix: str,
                        quality_check: bool, screen: Screen | None) -> GradeResult:
        g, batcher = m.grader, m.batcher
        if refurbisher_grade is not None:
            check_grade(g.policy, refurbisher_grade, f"{prefix}refurbisher_grade")
        checked = quality_check and self.settings.photo_check
        # the front is scored with its decoding when the bundle blends the photo check's
        # cracked-screen probe into the screen's probabilities, checked or not
        photos = list(await asyncio.gather(
            self.decode(f"{prefix}front", front, g, checked or g.cracked_weight > 0, "front"),
            self.decode(f"{prefix}back", back, g, checked, "back")))
        infer = asyncio.ensure_future(self._infer(batcher, photos))
        verdicts: list[PhotoVerdict] = []
        if checked:
            # the check's model ran with the decoding; the duplicate lookup (a database read)
            # runs beside the inference; a refused photo's inference is dropped
            try:
                verdicts = await self.check(photos, prefix, screen, g)
            except BaseException:
                infer.cancel()
                await asyncio.gather(infer, return_exceptions=True)
                raise
        elif screen is not None:  # unchecked photos are remembered all the same
            screen.verdicts = unchecked(photos)
        trust = await self.seller_trust(g, screen)
        screen_l, shell_l, features = await infer
        fuse = functools.partial(g.fuse, photos, screen_l[0], shell_l[1], features, info,
                                 refurbisher_grade, heatmaps, verdicts, trust)
        # fusion without heatmaps is about half a millisecond of numpy: on the loop, cheaper
        # than a hand-over to a thread and back; drawing heatmaps goes to a thread
        result = await asyncio.to_thread(fuse) if heatmaps else fuse()
        self.metrics.count(result)
        return result
