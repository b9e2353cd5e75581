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
