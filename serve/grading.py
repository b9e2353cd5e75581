"""Grading for the routes: the grader, the dynamic batcher, the photo decoding pool, metrics.

:class:`Service` is what ``/v1/grade``, ``/v1/grade/batch``, evaluations and the UI share to
turn photo bytes and a checklist into a :class:`~fusion.grade.GradeResult`; its errors are the
typed problems of :mod:`serve.problems`, naming the request field they are about.
"""

from __future__ import annotations

import asyncio
import logging
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from fusion.grade import GradeResult
from fusion.policy import GradingPolicy
from serve.batcher import Batcher, QueueFull
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
from serve.runtime import Grader, Photo
from serve.settings import Settings
from tabular.schema import ChecklistError, DeviceInfo, parse_device_info
from vision.photocheck import PhotoVerdict, Slot, duplicate, measure
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
    return [PhotoVerdict(slot=slot, stats=measure(p.image))
            for slot, p in zip(slots, photos, strict=True)]


class Service:
    """What the routes share: the grader, the batcher, the decode pool, metrics, settings."""

    def __init__(self, settings: Settings, grader: Grader | None = None):
        self.settings = settings
        self.grader = grader
        self.metrics = Metrics(settings.drift_window, settings.drift_min_devices)
        self.batcher: Batcher | None = None
        self.ready = False
        self.decode_pool: ThreadPoolExecutor | None = None
        self.batching = False

    @property
    def loaded(self) -> Grader:
        """The grader; NotReady while the bundle is still loading."""
        if self.grader is None:
            raise NotReady("the model bundle is still loading")
        return self.grader

    async def start(self) -> None:
        s = self.settings
        if self.grader is None:
            self.grader = await asyncio.to_thread(
                Grader, s.bundle, threads=s.threads or None, int8=s.int8,
                max_pixels=s.max_pixels)
        g = self.grader
        self.decode_pool = ThreadPoolExecutor(s.decode_threads or g.threads,
                                              thread_name_prefix="decode")
        self.batching = batching_enabled(s.batching, g.provider)
        self.batcher = Batcher(g.run_vision, max_batch=s.max_batch_size,
                               max_wait_ms=s.max_wait_ms, queue_size=s.queue_size,
                               enabled=self.batching, on_batch=self.metrics.batch_size.observe)
        self.batcher.start()
        size = g.pre.img_size  # warm-up: the first ONNX Runtime calls are slow
        for n in (1, 2, min(s.max_batch_size, 8)):
            await asyncio.to_thread(g.run_vision, np.zeros((n, 3, size, size), np.float32))
        m = g.manifest
        self.metrics.watch(m.bundle_version, g.policy.grades, g.policy.min_confidence,
                           m.reference)
        self.ready = True
        self.metrics.ready.set(1)
        log.info("ready: bundle %s, %s, %d thread(s), batching %s", g.manifest.bundle_version,
                 g.provider, g.threads, "on" if self.batching else "off")

    async def stop(self) -> None:
        self.ready = False
        self.metrics.ready.set(0)
        if self.batcher:
            await self.batcher.stop()
        if self.decode_pool:
            self.decode_pool.shutdown(wait=False, cancel_futures=True)

    async def decode(self, field: str, data: bytes) -> Photo:
        """Decode one photo in the pool; problems name ``field``."""
        limit = self.settings.max_upload_bytes
        if len(data) > limit:
            raise PhotoTooLarge(f"{field}: {len(data)} bytes exceeds the limit of {limit} bytes",
                                field)
        if not data:
            raise FieldError(field, ImageError("empty file"))
        loop = asyncio.get_running_loop()
        grader = self.loaded  # NotReady while the bundle loads
        try:
            return await loop.run_in_executor(self.decode_pool, grader.decode, data)
        except ImageError as e:
            raise FieldError(field, e) from None

    async def check(self, photos: list[Photo], prefix: str = "",
                    screen: Screen | None = None) -> list[PhotoVerdict]:
        """The photo check of (front, back), measured in the decode pool, then the
        ``screen``'s duplicates; PhotoRejected (naming the field, with its ``reason``) for
        the first refused photo, front first, counted and recorded."""
        assert self.grader is not None
        cfg = self.settings.photo_check_thresholds
        loop = asyncio.get_running_loop()
        slots: list[Slot] = ["front", "back"]
        verdicts = await loop.run_in_executor(
            self.decode_pool, self.grader.check_photos, photos, slots, cfg)
        rejection = next((v.rejection for v in verdicts if v.rejection is not None), None)
        if rejection is None and screen is not None:
            slot = await screen.duplicate(verdicts, cfg.duplicate_max_distance)
            rejection = duplicate(slot, cfg) if slot is not None else None
        version = self.grader.manifest.bundle_version
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
                    screen: Screen | None = None) -> GradeResult:
        """Grade one device; ``prefix`` goes before every field a problem names. The photos
        are checked first (:meth:`check`, with ``screen``) when the settings and
        ``quality_check`` ask it."""
        g = self.grader
        assert g is not None and self.batcher is not None
        if refurbisher_grade is not None:
            check_grade(g.policy, refurbisher_grade, f"{prefix}refurbisher_grade")
        photos = await asyncio.gather(self.decode(f"{prefix}front", front),
                                      self.decode(f"{prefix}back", back))
        if quality_check and self.settings.photo_check:
            await self.check(list(photos), prefix, screen)
        elif screen is not None:  # unchecked photos are remembered all the same
            screen.verdicts = await asyncio.get_running_loop().run_in_executor(
                self.decode_pool, unchecked, list(photos))
        self.metrics.queue_depth.set(self.batcher.pending)
        try:
            screen_l, shell_l, features = await self.batcher.infer(np.stack([p.x for p in photos]))
        except QueueFull:
            raise Overloaded("the inference queue is full; retry shortly",
                             headers={"Retry-After": "1"}) from None
        finally:
            self.metrics.queue_depth.set(self.batcher.pending)
        result = await asyncio.to_thread(g.fuse, list(photos), screen_l[0], shell_l[1], features,
                                         info, refurbisher_grade, heatmaps)
        self.metrics.count(result)
        return result
