"""Prometheus metrics of one app (its own registry, so several apps can live in one process)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from fusion.grade import GradeResult


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.latency = Histogram(
            "photograde_request_seconds", "Request latency by route", ["route", "status"],
            buckets=(0.01, 0.025, 0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1, 2, 5, 10), registry=r)
        self.batch_size = Histogram(
            "photograde_inference_batch_photos", "Photos per inference call",
            buckets=(1, 2, 4, 6, 8, 12, 16, 24, 32, 64), registry=r)
        self.queue_depth = Gauge("photograde_queue_photos", "Photos waiting for inference",
                                 registry=r)
        self.grades = Counter("photograde_predicted_grade_total", "Predicted grades",
                              ["grade"], registry=r)
        self.decisions = Counter("photograde_decision_total", "Decisions against the "
                                 "refurbisher's grade", ["decision"], registry=r)
        self.photo_rejections = Counter(
            "photograde_photo_rejections_total", "Photos the photo check refused, by reason and "
            "slot", ["reason", "slot"], registry=r)
        self.errors = Counter("photograde_errors_total", "Errors by kind", ["kind"], registry=r)
        self.bundle_info = Gauge("photograde_bundle_info", "The bundles this worker serves "
                                 "(1), by version and role (active, shadow)",
                                 ["version", "role"], registry=r)
        self.shadow_predictions = Counter(
            "photograde_shadow_predictions_total", "Shadow scoring by outcome (stored; "
            "dropped: its queue was full; failed)", ["outcome"], registry=r)

    def set_bundles(self, active: str | None, shadow: str | None) -> None:
        """The bundle info gauge: one series per bundle this worker serves."""
        self.bundle_info.clear()
        for version, role in ((active, "active"), (shadow, "shadow")):
            if version is not None:
                self.bundle_info.labels(version, role).set(1)

    def count(self, result: GradeResult) -> None:
        """Count a grade result: its grade and, given a refurbisher grade, its decision."""
        self.grades.labels(result.grade).inc()
        if result.decision is not None:
            self.decisions.labels(result.decision.value).inc()
