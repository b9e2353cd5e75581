"""Metrics for part-condition heads with exact and coarse (set) labels.

Exact-labelled rows are scored on the head's classes (confusion matrix, macro-F1, balanced
accuracy, quadratic weighted kappa, ECE). Every row whose cracked-ness is known (exact rows and
coarse rows such as "not cracked") is also scored on cracked vs the rest (ROC-AUC, balanced
accuracy, macro-F1).
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
from scipy.optimize import minimize_scalar
from sklearn.metrics import (
    balanced_accuracy_score,
    cohen_kappa_score,
    confusion_matrix,
    f1_score,
    precision_recall_fscore_support,
    roc_auc_score,
)


def softmax(logits: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    z = logits / temperature
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def partial_nll(logits: np.ndarray, allowed: np.ndarray, temperature: float = 1.0) -> float:
    """Mean -log P(label in allowed set): the training loss, for exact and coarse labels."""
    p = softmax(logits, temperature)
    return float(-np.mean(np.log(np.clip((p * allowed).sum(1), 1e-12, None))))


def fit_temperature(logits: np.ndarray, allowed: np.ndarray) -> float:
    """Temperature minimising the validation NLL (1.0 when there is nothing to fit on)."""
    if len(logits) < 2:
        return 1.0
    res = minimize_scalar(lambda t: partial_nll(logits, allowed, np.exp(t)),
                          bounds=(np.log(0.05), np.log(20.0)), method="bounded")
    return float(np.exp(res.x))


def ece(confidence: np.ndarray, correct: np.ndarray, bins: int = 15) -> float:
    """Expected calibration error with equal-width confidence bins."""
    if len(confidence) == 0:
        return float("nan")
    edges = np.linspace(0, 1, bins + 1)
    idx = np.clip(np.digitize(confidence, edges[1:-1]), 0, bins - 1)
    total = 0.0
    for b in range(bins):
        sel = idx == b
        if sel.any():
            total += sel.mean() * abs(confidence[sel].mean() - correct[sel].mean())
    return float(total)


def cracked_truth(allowed: np.ndarray, cracked: int) -> np.ndarray:
    """1 cracked, 0 not cracked, -1 unknown (the set mixes both)."""
    has = allowed[:, cracked].astype(bool)
    only = allowed.sum(1) == 1
    return np.where(has & only, 1, np.where(~has, 0, -1))


def cracked_scores(truth: np.ndarray, p_cracked: np.ndarray) -> dict[str, float]:
    """Cracked or not (``truth`` 1 / 0) ranked and decided by P(cracked): ROC-AUC, balanced
    accuracy at P(cracked) >= 0.5, and how many photos."""
    return {"roc_auc": float(roc_auc_score(truth, p_cracked)),
            "balanced_accuracy": float(balanced_accuracy_score(truth, p_cracked >= 0.5)),
            "n": len(truth)}


def head_metrics(logits: np.ndarray, allowed: np.ndarray, classes: tuple[str, ...],
                 temperature: float = 1.0) -> dict[str, Any]:
    """Every metric of one head on rows with a label (``allowed``: (N, K) bool)."""
    with warnings.catch_warnings():  # small validation sets lack some classes: that is fine
        warnings.simplefilter("ignore")
        return _head_metrics(logits, allowed.astype(bool), classes, temperature)


def _head_metrics(logits: np.ndarray, allowed: np.ndarray, classes: tuple[str, ...],
                  temperature: float) -> dict[str, Any]:
    probs = softmax(logits, temperature)
    pred = probs.argmax(1)
    k = len(classes)
    exact = allowed.sum(1) == 1
    out: dict[str, Any] = {"classes": list(classes), "n": len(logits),
                           "n_exact": int(exact.sum()), "temperature": temperature}
    if exact.any():
        y, p = allowed[exact].argmax(1), pred[exact]
        prec, rec, f1, support = precision_recall_fscore_support(
            y, p, labels=range(k), zero_division=0)
        out |= {
            "confusion_matrix": confusion_matrix(y, p, labels=range(k)).tolist(),
            "per_class": {c: {"precision": float(prec[i]), "recall": float(rec[i]),
                              "f1": float(f1[i]), "support": int(support[i])}
                          for i, c in enumerate(classes)},
            "macro_f1": float(f1_score(y, p, labels=range(k), average="macro", zero_division=0)),
            "balanced_accuracy": float(balanced_accuracy_score(y, p)),
            "qwk": float(cohen_kappa_score(y, p, labels=range(k), weights="quadratic"))
            if len(set(y) | set(p)) > 1 else float("nan"),
            "accuracy": float((y == p).mean()),
            "ece": ece(probs[exact].max(1), (y == p).astype(float)),
        }
    if "cracked" in classes:
        c = classes.index("cracked")
        truth = cracked_truth(allowed, c)
        known = truth >= 0
        yt, score = truth[known], probs[known, c]
        yp = (pred[known] == c).astype(int)
        out["n_cracked_known"] = int(known.sum())
        if known.any():
            out["cracked_vs_rest"] = {
                "balanced_accuracy": float(balanced_accuracy_score(yt, yp)),
                "macro_f1": float(f1_score(yt, yp, average="macro", zero_division=0)),
                "confusion_matrix": confusion_matrix(yt, yp, labels=[0, 1]).tolist(),
            }
            out["roc_auc_cracked"] = float(roc_auc_score(yt, score)) if len(set(yt)) == 2 \
                else float("nan")
            if not exact.any():  # coarse-only: calibration of the cracked/not decision
                out["ece"] = ece(np.maximum(score, 1 - score), (yp == yt).astype(float))
    return out


def selection_score(metrics: dict[str, Any]) -> float:
    """One number per head for early stopping: macro-F1 on exact rows and on cracked vs rest
    for coarse rows, averaged over what is available."""
    parts = []
    exact_classes = sum(c["support"] > 0 for c in metrics.get("per_class", {}).values())
    if exact_classes >= 2:  # exact labels of one class alone (e.g. "cracked") say nothing
        parts.append(metrics["macro_f1"])
    if metrics.get("n_exact", 0) < metrics.get("n_cracked_known", 0) or exact_classes < 2:
        parts.append(metrics["cracked_vs_rest"]["macro_f1"])
    return float(np.mean(parts)) if parts else float("nan")


# -- abstention: risk-coverage -------------------------------------------------------------
RC_THRESHOLDS = (0.5, 0.6, 0.7, 0.8, 0.9)
RC_TARGETS = (0.9, 0.95)


def _decided_at(confidence: np.ndarray, correct: np.ndarray
                ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """At each distinct confidence t (highest first): t, the share of items with confidence
    >= t (coverage) and the accuracy of those items."""
    order = np.argsort(-confidence, kind="stable")
    conf, ok = confidence[order], correct[order].astype(float)
    last = np.r_[np.flatnonzero(np.diff(conf) != 0), len(conf) - 1]  # end of each tie group
    decided = last + 1
    return conf[last], decided / len(conf), np.cumsum(ok)[last] / decided


def threshold_for_accuracy(confidence: np.ndarray, correct: np.ndarray, target: float
                           ) -> dict[str, float] | None:
    """The lowest confidence threshold whose decided items (confidence >= threshold) reach
    ``target`` accuracy, with the coverage and accuracy there; 0.0 when every item may be
    decided; None when no threshold reaches it."""
    confidence, correct = np.asarray(confidence, float), np.asarray(correct, bool)
    if len(confidence) == 0:
        return None
    thresholds, coverage, accuracy = _decided_at(confidence, correct)
    ok = np.flatnonzero(accuracy >= target)
    if not len(ok):
        return None
    i = int(ok[-1])  # lowest threshold = highest coverage
    return {"threshold": 0.0 if coverage[i] == 1.0 else float(thresholds[i]),
            "coverage": float(coverage[i]), "accuracy": float(accuracy[i])}


def risk_coverage(confidence: np.ndarray, correct: np.ndarray,
                  thresholds: tuple[float, ...] = RC_THRESHOLDS,
                  targets: tuple[float, ...] = RC_TARGETS, points: int = 101) -> dict[str, Any]:
    """The accuracy of the items decided (confidence >= threshold) against their share
    (coverage), items sorted by confidence.

    ``area``: the mean accuracy over coverage (the area under the accuracy-coverage curve,
    higher is better; 1 - area is the AURC, the area under the risk-coverage curve).
    ``at_threshold``: coverage and accuracy at a few thresholds; ``for_accuracy``: the
    :func:`threshold_for_accuracy` of each target; ``curve``: up to ``points`` points."""
    confidence, correct = np.asarray(confidence, float), np.asarray(correct, bool)
    n = len(confidence)
    if n == 0:
        return {"n": 0}
    order = np.argsort(-confidence, kind="stable")
    area = float(np.mean(np.cumsum(correct[order]) / np.arange(1, n + 1)))
    at = []
    for t in thresholds:
        sel = confidence >= t
        at.append({"threshold": t, "coverage": float(sel.mean()),
                   "accuracy": float(correct[sel].mean()) if sel.any() else float("nan")})
    th, cov, acc = _decided_at(confidence, correct)
    keep = np.unique(np.linspace(0, len(th) - 1, min(points, len(th))).round().astype(int))
    return {"n": n, "accuracy": float(correct.mean()), "area": area, "aurc": 1.0 - area,
            "at_threshold": at,
            "for_accuracy": {f"{t:g}": threshold_for_accuracy(confidence, correct, t)
                             for t in targets},
            "curve": {"threshold": th[keep].tolist(), "coverage": cov[keep].tolist(),
                      "accuracy": acc[keep].tolist()}}
