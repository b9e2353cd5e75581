"""Shadow scoring: a candidate bundle grades every graded request too, off the request path.

Once the active bundle's answer is computed, :meth:`ShadowScorer.submit` queues a job (the
photo bytes, the checklist, the refurbisher's grade, the active answer and which request it
was) and returns at once; one thread grades it with the shadow bundle (the photos decoded with
its own preprocessing) and stores its grade, confidence and decision in
``shadow_predictions`` next to the active answer. The caller never sees it, and nothing it
does can change or delay the answer: a full queue drops the job rather than hold photos in
memory or compete for the CPU without bound, and a failure is logged; both are counted
(``photograde_shadow_predictions_total{outcome}``: stored, dropped, failed).
"""

from __future__ import annotations

import logging
import math
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from fusion.grade import GradeResult
from serve.db import Database
from serve.metrics import Metrics
from serve.models import ShadowPrediction
from serve.runtime import Grader
from tabular.schema import DeviceInfo

log = logging.getLogger("photograde.shadow")


@dataclass(frozen=True)
class ShadowRef:
    """Which request a shadow prediction is about: its id, a batch device's id (``item``),
    the evaluation it was submitted as."""

    request_id: str | None = None
    evaluation_id: str | None = None
    item: str | None = None


@dataclass(frozen=True)
class ShadowJob:
    front: bytes
    back: bytes
    info: DeviceInfo
    refurbisher_grade: str | None
    active: GradeResult
    ref: ShadowRef


def _decision(result: GradeResult) -> str | None:
    return None if result.decision is None else result.decision.value


class ShadowScorer:
    """The shadow bundle's grader, its queue (at most ``queue_size`` jobs) and its thread."""

    def __init__(self, grader: Grader, db: Database, metrics: Metrics, queue_size: int):
        self.grader, self.db, self.metrics = grader, db, metrics
        self.version = grader.manifest.bundle_version
        self._slots = threading.BoundedSemaphore(queue_size)
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="shadow")
        self._closed = False
        self.failures = 0

    def submit(self, job: ShadowJob) -> bool:
        """Queue ``job`` (never blocks, never raises); False when it was dropped."""
        if self._closed or not self._slots.acquire(blocking=False):
            self.metrics.shadow_predictions.labels("dropped").inc()
            return False
        try:
            self._pool.submit(self._run, job)
        except RuntimeError:  # closed meanwhile
            self._slots.release()
            self.metrics.shadow_predictions.labels("dropped").inc()
            return False
        return True

    def _run(self, job: ShadowJob) -> None:
        outcome = "stored"
        # a refurbisher's grade off the shadow's scale: its grade without a decision
        theirs = job.refurbisher_grade if job.refurbisher_grade in self.grader.policy.grades \
            else None
        try:
            r = self.grader.grade(job.front, job.back, job.info, theirs)
            row = ShadowPrediction(
                request_id=job.ref.request_id, item=job.ref.item,
                evaluation_id=job.ref.evaluation_id, bundle_version=self.version,
                grade=r.grade, confidence=r.confidence, decision=_decision(r),
                active_version=job.active.bundle_version, active_grade=job.active.grade,
                active_decision=_decision(job.active))
            with self.db.write() as s:
                s.add(row)
        except Exception:  # a shadow's failure is logged and counted, never raised
            outcome, self.failures = "failed", self.failures + 1
            if math.log10(self.failures).is_integer():  # the 1st, 10th, 100th...: no flood
                log.exception("shadow bundle %s failed on request %s (%d failures)",
                              self.version, job.ref.request_id, self.failures)
        finally:
            self._slots.release()
        self.metrics.shadow_predictions.labels(outcome).inc()

    def close(self) -> None:
        """Stop: queued jobs are dropped, a running one finishes in its thread."""
        self._closed = True
        self._pool.shutdown(wait=False, cancel_futures=True)
