"""Prometheus metrics of one app (its own registry, so several apps can live in one process).

Besides the request, batch, grade and error counters, the model's health (docs/service.md,
"Monitoring"; rules in ``deploy/prometheus/alerts.yml``):

- per bundle version, over the last ``window`` graded devices of this process
  (:mod:`serve.drift`): the grade distribution's PSI against the bundle's reference, the mean
  confidence, the inconclusive rate; over its last ``window`` photo checks, the share refused
  per reason;
- per bundle version and decision, from the database (:mod:`serve.model_health`, refreshed
  every ``monitor_refresh_s``): the share of final grades that differ from the model's, and
  against reviewers' outcomes the false-positive and false-negative rates.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from fusion.bundle import ReferenceInfo
from fusion.grade import GradeResult
from fusion.policy import Decision
from serve.drift import CheckWindow, GradeWindow
from vision.photocheck import RejectReason

REASONS = tuple(r.value for r in RejectReason)


class Metrics:
    def __init__(self, window: int = 500, min_devices: int = 100) -> None:
        self.registry = CollectorRegistry()
        self.window, self.min_devices = window, min_devices
        r = self.registry
        self.latency = Histogram(
            "photograde_request_seconds", "Request latency by route", ["route", "status"],
            buckets=(0.01, 0.025, 0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1, 2, 5, 10), registry=r)
        self.batch_size = Histogram(
            "photograde_inference_batch_photos", "Photos per inference call",
            buckets=(1, 2, 4, 6, 8, 12, 16, 24, 32, 64), registry=r)
        self.queue_depth = Gauge("photograde_queue_photos", "Photos waiting for inference",
                                 registry=r)
        self.ready = Gauge("photograde_ready", "1 once the bundle is loaded and warmed up",
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
        self._window_gauges(r)
        self._outcome_gauges(r)
        self.windows: dict[str, GradeWindow] = {}
        self.checks: dict[str, CheckWindow] = {}

    def _window_gauges(self, r: CollectorRegistry) -> None:
        v = ["bundle_version"]
        self.psi = Gauge("photograde_grade_psi", "Population stability index of the last "
                         "graded devices' grades against the bundle's reference", v, registry=r)
        self.window_devices = Gauge("photograde_window_devices", "Graded devices in the "
                                    "drift window", v, registry=r)
        self.window_share = Gauge("photograde_window_grade_share", "Share of each grade in "
                                  "the drift window", [*v, "grade"], registry=r)
        self.reference_share = Gauge("photograde_reference_grade_share", "Share of each grade "
                                     "in the reference distribution (source: bundle or "
                                     "first_served)", [*v, "grade", "source"], registry=r)
        self.mean_confidence = Gauge("photograde_mean_confidence", "Mean grade confidence over "
                                     "the drift window", v, registry=r)
        self.inconclusive_rate = Gauge("photograde_inconclusive_rate", "Share of the drift "
                                       "window's grades below min_confidence", v, registry=r)
        self.window_checks = Gauge("photograde_window_photo_checks", "Photo checks in the "
                                   "rejection window", v, registry=r)
        self.rejection_rate = Gauge("photograde_photo_rejection_rate", "Share of the last photo "
                                    "checks refused, by reason", [*v, "reason"], registry=r)

    def _outcome_gauges(self, r: CollectorRegistry) -> None:
        v = ["bundle_version", "decision"]
        self.outcomes = Gauge("photograde_outcomes", "Evaluations of the outcome window with a "
                              "final grade (kind=resolved) or a reviewer's (kind=reviewed)",
                              [*v, "kind"], registry=r)
        self.disagreement = Gauge("photograde_disagreement_rate", "Share of final grades that "
                                  "differ from the model's", v, registry=r)
        self.false_positive = Gauge("photograde_false_positive_rate", "Share of reviewed "
                                    "evaluations the model graded worse than the reviewer", v,
                                    registry=r)
        self.false_negative = Gauge("photograde_false_negative_rate", "Share of reviewed "
                                    "evaluations the model graded better than the reviewer", v,
                                    registry=r)

    def watch(self, version: str, grades: Sequence[str], min_confidence: float | None,
              reference: ReferenceInfo | None) -> GradeWindow:
        """Start the windows of a bundle version, with its manifest's reference (None: the
        first grades served become the reference)."""
        w = GradeWindow(tuple(grades), self.window, self.min_devices, min_confidence)
        if reference is not None:
            w.reference = dict(reference.grade_distribution)
            w.source, w.reference_devices = "bundle", reference.devices or 0
        self.windows[version] = w
        self.checks.setdefault(version, CheckWindow(self.window, self.min_devices))
        self._publish(version)
        return w

    def set_bundles(self, active: str | None, shadow: str | None) -> None:
        """The bundle info gauge: one series per bundle this worker serves."""
        self.bundle_info.clear()
        for version, role in ((active, "active"), (shadow, "shadow")):
            if version is not None:
                self.bundle_info.labels(version, role).set(1)

    def count(self, result: GradeResult) -> None:
        """Count a grade result: its grade, its decision given a refurbisher grade, and its
        place in its bundle version's drift window."""
        self.grades.labels(result.grade).inc()
        if result.decision is not None:
            self.decisions.labels(result.decision.value).inc()
        version = result.bundle_version
        w = self.windows.get(version)
        if w is None:  # a version nobody announced: learn its reference
            w = self.watch(version, list(result.grade_probabilities), None, None)
        inconclusive = (result.confidence < w.min_confidence if w.min_confidence is not None
                        else result.decision == Decision.INCONCLUSIVE)
        w.add(result.grade, result.confidence, inconclusive)
        self._publish(version)

    def checked(self, version: str, reason: str | None) -> None:
        """One device's photo check: passed (None) or refused for ``reason``."""
        c = self.checks.setdefault(version, CheckWindow(self.window, self.min_devices))
        c.add(reason)
        if c.ready:
            self.window_checks.labels(version).set(len(c.recent))
            for r, rate in c.rates(REASONS).items():
                self.rejection_rate.labels(version, r).set(rate)

    def _publish(self, version: str) -> None:
        w = self.windows[version]
        if w.reference is not None:
            for g in w.grades:
                self.reference_share.labels(version, g, w.source).set(w.reference.get(g, 0.0))
        if not w.ready:
            return
        n = w.devices
        self.window_devices.labels(version).set(n)
        for g in w.grades:
            self.window_share.labels(version, g).set(w.counts[g] / n)
        self.mean_confidence.labels(version).set(w.confidence_sum / n)
        self.inconclusive_rate.labels(version).set(w.inconclusive / n)
        value = w.psi()
        if value is not None:
            self.psi.labels(version).set(value)

    def window_summary(self, version: str) -> dict[str, Any] | None:
        """The drift window of ``version`` as ``/v1/model`` shows it (None: nothing yet)."""
        w, c = self.windows.get(version), self.checks.get(version)
        if w is None:
            return None
        out = w.summary()
        out["photo_checks"] = len(c.recent) if c else 0
        out["photo_rejection_rate"] = ({r: round(v, 4) for r, v in c.rates(REASONS).items()}
                                       if c else {})
        return out

    def set_outcomes(self, figures: Mapping[tuple[str, str], Mapping[str, Any]]) -> None:
        """Replace the outcome gauges with ``figures`` by (bundle version, decision)."""
        for g in (self.outcomes, self.disagreement, self.false_positive, self.false_negative):
            g.clear()
        for (version, decision), f in figures.items():
            self.outcomes.labels(version, decision, "resolved").set(f["resolved"])
            self.outcomes.labels(version, decision, "reviewed").set(f["reviewed"])
            for gauge, key in ((self.disagreement, "disagreement_rate"),
                               (self.false_positive, "false_positive_rate"),
                               (self.false_negative, "false_negative_rate")):
                if f[key] is not None:
                    gauge.labels(version, decision).set(f[key])
