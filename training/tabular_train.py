"""``photograde train tabular``: the return-risk model, P(returned within 30 days | device
facts, checks, announced grade), trained with scikit-learn and exported to ONNX. Serving it
(numpy and ONNX Runtime only) is :mod:`tabular.runtime`.

The functional state (failed checks, low battery) is *not* learned: the grading policy decides
it exactly from the checklist (:func:`tabular.features.functional_state`), and a learned model
could only get it wrong. What is learned is the return risk of listing a device at a grade.

Model: one-hot brand and model (unseen values are ignored), median-imputed and standardised
numeric columns, and a plain logistic regression (no class weights, so that its output is a
calibrated probability) with C chosen by cross-validated log-loss. Metrics are measured on a
seeded stratified held-out split, and the exported model is the one those metrics describe;
``by_gap`` groups rows by gap = rank(true grade) - rank(announced grade), > 0 when the announced
grade is better than the true one (needs the manifest's ``grade``).

Files written to the run directory: ``tabular.onnx`` (one input per column of
:data:`~tabular.features.FEATURE_NAMES`, outputs ``label`` and ``probabilities`` (N, 2)),
``tabular.json`` (inputs, output names, grade scale, metrics, data summary, versions) and
``tabular.joblib`` (the scikit-learn pipeline, for inspection and retraining only).
"""

from __future__ import annotations

import json
import logging
from collections import defaultdict
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from fusion.policy import GradingPolicy, load_policy
from tabular.evidence import Evidence
from tabular.features import (
    FACT_FEATURE_NAMES,
    FEATURE_NAMES,
    STRING_FEATURES,
    tabular_features,
    to_onnx_inputs,
)
from tabular.runtime import META_FILE, ONNX_FILE
from training.manifest import DatasetError, ManifestRow, load_manifest
from training.tabular_history import trust_at_listing

log = logging.getLogger("photograde.tabular")

JOBLIB_FILE = "tabular.joblib"
FORMAT = "photograde-tabular/1"
PROBA_OUTPUT, LABEL_OUTPUT = "probabilities", "label"
C_GRID = (0.003, 0.01, 0.03, 0.1, 0.3, 1.0)
TEST_FRACTION = 0.2
PARITY_TOL = 1e-4
MIN_ROWS = 20


def labelled_rows(manifests: list[str | Path], policy: GradingPolicy) -> list[ManifestRow]:
    """Rows of every manifest with both ``returned`` and ``refurbisher_grade`` known."""
    rows = [r for m in manifests for r in load_manifest(m, policy).rows
            if r.returned is not None and r.refurbisher_grade is not None]
    if not rows:
        names = ", ".join(map(str, manifests))
        raise DatasetError(
            f"no row with both 'returned' and 'refurbisher_grade' in {names}: the return-risk "
            "model needs the columns returned (true/false, returned within 30 days) and "
            "refurbisher_grade (the grade the device was listed at)")
    return rows


def design_matrix(features: list[dict[str, Any]], names: tuple[str, ...] = FEATURE_NAMES
                  ) -> np.ndarray:
    """Feature rows as the (N, F) object array the pipeline is fit on, columns ``names``."""
    return np.array([[f[name] for name in names] for f in features], dtype=object)


def build_pipeline(C: float = 1.0, seed: int = 0, n_columns: int = len(FEATURE_NAMES)):
    """The unfitted scikit-learn pipeline (columns by position: the string features, then
    ``n_columns`` in all)."""
    from sklearn.compose import ColumnTransformer
    from sklearn.impute import SimpleImputer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import Pipeline, make_pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    n_str = len(STRING_FEATURES)
    pre = ColumnTransformer([
        ("cat", OneHotEncoder(handle_unknown="ignore", sparse_output=False), list(range(n_str))),
        ("num", make_pipeline(SimpleImputer(strategy="median", keep_empty_features=True),
                              StandardScaler()),
         list(range(n_str, n_columns))),
    ])
    return Pipeline([("pre", pre),
                     ("clf", LogisticRegression(C=C, max_iter=2000, random_state=seed))])


def _tune_c(X: np.ndarray, y: np.ndarray, seed: int) -> tuple[float, dict[str, float]]:
    """The C of the lowest cross-validated log-loss, and every C's."""
    from sklearn.model_selection import StratifiedKFold, cross_val_score

    folds = StratifiedKFold(n_splits=min(3, int(np.bincount(y).min())), shuffle=True,
                            random_state=seed)
    scores = {str(c): float(-cross_val_score(build_pipeline(c, seed, X.shape[1]), X, y,
                                             cv=folds, scoring="neg_log_loss").mean())
              for c in C_GRID}
    best = min(C_GRID, key=lambda c: scores[str(c)])
    return best, scores


def export_onnx(pipeline, names: tuple[str, ...] = FEATURE_NAMES) -> Any:
    """The fitted pipeline as an ONNX model: one input per feature column, plain tensors out."""
    from skl2onnx import convert_sklearn
    from skl2onnx.common.data_types import FloatTensorType, StringTensorType
    from sklearn.linear_model import LogisticRegression

    types = [(n, (StringTensorType if n in STRING_FEATURES else FloatTensorType)([None, 1]))
             for n in names]
    return convert_sklearn(pipeline, initial_types=types,
                           options={LogisticRegression: {"zipmap": False}})


def _onnx_proba(model_bytes: bytes, features: list[dict[str, Any]], names: tuple[str, ...]
                ) -> np.ndarray:
    import onnxruntime as ort

    sess = ort.InferenceSession(model_bytes, providers=["CPUExecutionProvider"])
    return sess.run([PROBA_OUTPUT], to_onnx_inputs(features, names))[0]


def _by_gap(gaps: list[int | None], y: np.ndarray, risk: np.ndarray | None = None) -> dict:
    """Return rate (and mean predicted risk) per gap = true rank - announced rank (> 0: the
    announced grade is better than the true one); empty when no row has a true grade."""
    groups: dict[int, list[int]] = defaultdict(list)
    for i, g in enumerate(gaps):
        if g is not None:
            groups[g].append(i)
    out = {}
    for g in sorted(groups):
        idx = groups[g]
        out[str(g)] = {"rows": len(idx), "return_rate": round(float(y[idx].mean()), 4)}
        if risk is not None:
            out[str(g)]["mean_risk"] = round(float(risk[idx].mean()), 4)
    return out


def held_out_metrics(y_test: np.ndarray, risk: np.ndarray, base: float,
                     gaps: list[int | None]) -> dict[str, Any]:
    """Scores of the predicted risk on the held-out rows (``base``: the training return rate)."""
    from sklearn.metrics import (
        average_precision_score,
        brier_score_loss,
        log_loss,
        roc_auc_score,
    )

    both = len(set(y_test.tolist())) == 2
    return {
        "held_out_rows": len(y_test),
        "roc_auc": round(float(roc_auc_score(y_test, risk)), 4) if both else None,
        "pr_auc": round(float(average_precision_score(y_test, risk)), 4) if both else None,
        "brier": round(float(brier_score_loss(y_test, risk)), 4),
        "brier_base_rate": round(float(brier_score_loss(y_test, np.full(len(y_test), base))), 4),
        "log_loss": round(float(log_loss(y_test, risk, labels=[0, 1])), 4),
        "base_rate": round(float(y_test.mean()), 4),
        "mean_risk": round(float(risk.mean()), 4),
        "by_gap": _by_gap(gaps, y_test, risk),
        "calibration": calibration(y_test, risk),
    }


def calibration(y: np.ndarray, risk: np.ndarray, bins: int = 10) -> dict[str, Any]:
    """Expected calibration error over equal-count bins of the predicted risk, and each bin's
    mean risk against its return rate (a reliability table)."""
    order = np.argsort(risk, kind="stable")
    table, ece = [], 0.0
    for idx in np.array_split(order, min(bins, len(order))):
        if not len(idx):
            continue
        pred, rate = float(risk[idx].mean()), float(y[idx].mean())
        ece += len(idx) / len(y) * abs(pred - rate)
        table.append({"rows": len(idx), "mean_risk": round(pred, 4),
                      "return_rate": round(rate, 4)})
    return {"ece": round(ece, 4), "bins": table}


def check_parity(model_bytes: bytes, features: list[dict[str, Any]], proba: np.ndarray,
                 names: tuple[str, ...] = FEATURE_NAMES) -> float:
    """Max |ONNX - scikit-learn| probability on ``features``; raises past :data:`PARITY_TOL`."""
    parity = float(np.abs(_onnx_proba(model_bytes, features, names) - proba).max())
    if not parity <= PARITY_TOL:
        raise RuntimeError(f"ONNX export does not match scikit-learn: max |probability "
                           f"difference| = {parity:.2e} > {PARITY_TOL:g} on the held-out rows")
    return parity


def gaps_of(rows: list[ManifestRow], policy: GradingPolicy) -> list[int | None]:
    """Each row's rank(true grade) - rank(announced grade) (> 0: listed better than it is;
    None without a true grade)."""
    return [policy.rank(r.grade) - policy.rank(r.refurbisher_grade or "") if r.grade else None
            for r in rows]


def feature_rows(rows: list[ManifestRow], policy: GradingPolicy,
                 evidence: Mapping[str, Evidence] | None) -> list[dict[str, Any]]:
    """Each row's feature columns; with ``evidence``, the seller's trust at listing time too."""
    if evidence is None:
        return [tabular_features(r, r.refurbisher_grade or "", policy) for r in rows]
    trust = trust_at_listing(rows, evidence, policy)
    out = []
    for r, t in zip(rows, trust, strict=True):
        ev = evidence.get(r.device_id, Evidence()).model_copy(update={"trust_score": t})
        out.append(tabular_features(r, r.refurbisher_grade or "", policy, ev))
    return out


def _fit(features: list[dict[str, Any]], y: np.ndarray, names: tuple[str, ...],
         idx_train: np.ndarray, seed: int) -> tuple[Any, float, dict[str, float]]:
    """The pipeline on columns ``names``, C tuned on the training rows."""
    X = design_matrix(features, names)
    best_c, cv_log_loss = _tune_c(X[idx_train], y[idx_train], seed)
    return build_pipeline(best_c, seed, len(names)).fit(X[idx_train], y[idx_train]), best_c, \
        cv_log_loss


def train_tabular(manifests: list[str | Path], out_dir: str | Path, *,
                  grading: str | Path | None = None, seed: int = 0,
                  evidence: Mapping[str, Evidence] | None = None) -> dict[str, Any]:
    """Train the return-risk model on labelled manifest rows, export and verify it; returns the
    summary written to ``tabular.json`` (metrics, data, files). ``evidence`` (by device id):
    what the photos said (:mod:`tabular.evidence`); the model then reads every column, with the
    seller's trust at listing time computed from the manifests' history; without it, the
    device's facts and announced grade only."""
    import skl2onnx
    import sklearn
    from sklearn.model_selection import train_test_split

    if not manifests:
        raise DatasetError("no manifest given")
    policy = load_policy(grading)
    rows = labelled_rows(manifests, policy)
    y = np.array([r.returned for r in rows], dtype=np.int64)
    n_pos = int(y.sum())
    if len(rows) < MIN_ROWS or min(n_pos, len(y) - n_pos) < 2:
        raise DatasetError(f"too few labelled rows to train the return-risk model: {len(rows)} "
                           f"rows, {n_pos} returned (need {MIN_ROWS} rows and at least 2 returned "
                           "and 2 kept)")
    features = feature_rows(rows, policy, evidence)
    gaps = gaps_of(rows, policy)
    names = FEATURE_NAMES if evidence is not None else FACT_FEATURE_NAMES
    idx_train, idx_test = train_test_split(np.arange(len(rows)), test_size=TEST_FRACTION,
                                           stratify=y, random_state=seed)
    pipeline, best_c, cv_log_loss = _fit(features, y, names, idx_train, seed)
    test_x = design_matrix([features[i] for i in idx_test], names)
    proba = pipeline.predict_proba(test_x)
    metrics = held_out_metrics(y[idx_test], proba[:, 1], float(y[idx_train].mean()),
                               [gaps[i] for i in idx_test])
    if evidence is not None:  # what the evidence adds: the facts-only model on the same split
        facts, _, _ = _fit(features, y, FACT_FEATURE_NAMES, idx_train, seed)
        facts_risk = facts.predict_proba(design_matrix([features[i] for i in idx_test],
                                                       FACT_FEATURE_NAMES))[:, 1]
        metrics["facts_only"] = {k: v for k, v in held_out_metrics(
            y[idx_test], facts_risk, float(y[idx_train].mean()), []).items()
            if k in ("roc_auc", "pr_auc", "brier")}
    model = export_onnx(pipeline, names)
    model_bytes = model.SerializeToString()
    metrics["onnx_max_abs_diff"] = check_parity(model_bytes, [features[i] for i in idx_test],
                                                proba, names)
    summary = _summary(manifests, rows, y, gaps, policy, names, model, best_c, cv_log_loss,
                       metrics, len(idx_train), seed, evidence is not None)
    summary["versions"]["sklearn"] = sklearn.__version__
    summary["versions"]["skl2onnx"] = skl2onnx.__version__
    _write(Path(out_dir), model_bytes, pipeline, summary)
    log.info("tabular model: ROC-AUC %s, Brier %.4f on %d held-out rows -> %s",
             metrics["roc_auc"], metrics["brier"], len(idx_test), Path(out_dir) / ONNX_FILE)
    return summary


def _summary(manifests: list[str | Path], rows: list[ManifestRow], y: np.ndarray,
             gaps: list[int | None], policy: GradingPolicy, names: tuple[str, ...], model: Any,
             best_c: float, cv_log_loss: dict[str, float], metrics: dict[str, Any],
             n_train: int, seed: int, with_evidence: bool) -> dict[str, Any]:
    import onnx

    elem = {onnx.TensorProto.STRING: "string", onnx.TensorProto.FLOAT: "float32"}
    n_pos = int(y.sum())
    return {
        "format": FORMAT,
        "task": "return_risk",
        "target": "returned within 30 days",
        "feature_names": list(names),
        "evidence": with_evidence,
        "inputs": [{"name": i.name, "type": elem[i.type.tensor_type.elem_type], "shape": [None, 1]}
                   for i in model.graph.input],
        "outputs": {"probabilities": PROBA_OUTPUT, "label": LABEL_OUTPUT, "positive_column": 1},
        "scale": policy.to_dict()["scale"],
        "policy": policy.to_dict()["policy"],
        "model": {"classifier": "LogisticRegression", "C": best_c, "class_weight": None,
                  "cv_log_loss": cv_log_loss},
        "metrics": metrics,
        "data": {
            "manifests": [str(m) for m in manifests],
            "rows": len(rows), "returns": n_pos, "base_rate": round(n_pos / len(rows), 4),
            "train_rows": n_train, "held_out_rows": len(rows) - n_train,
            "by_announced_grade": {g: int(sum(r.refurbisher_grade == g for r in rows))
                                   for g in policy.grades},
            "by_gap": _by_gap(gaps, y),
        },
        "seed": seed,
        "versions": {"onnx_opsets": {o.domain or "ai.onnx": o.version
                                     for o in model.opset_import}},
        "files": {"onnx": ONNX_FILE, "sklearn": JOBLIB_FILE},
    }


def _write(out: Path, model_bytes: bytes, pipeline: Any, summary: dict[str, Any]) -> None:
    import joblib

    out.mkdir(parents=True, exist_ok=True)
    (out / ONNX_FILE).write_bytes(model_bytes)
    joblib.dump(pipeline, out / JOBLIB_FILE)
    (out / META_FILE).write_text(json.dumps(summary, indent=2) + "\n")
