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
from pathlib import Path
from typing import Any

import numpy as np

from fusion.policy import GradingPolicy, load_policy
from tabular.features import (
    FEATURE_NAMES,
    NUMERIC_FEATURES,
    STRING_FEATURES,
    tabular_features,
    to_onnx_inputs,
)
from tabular.runtime import META_FILE, ONNX_FILE
from training.manifest import DatasetError, ManifestRow, load_manifest

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


def design_matrix(features: list[dict[str, Any]]) -> np.ndarray:
    """Feature rows as the (N, F) object array the pipeline is fit on, columns in ONNX order."""
    return np.array([[f[name] for name in FEATURE_NAMES] for f in features], dtype=object)


def build_pipeline(C: float = 1.0, seed: int = 0):
    """The unfitted scikit-learn pipeline (columns by position, as in :data:`FEATURE_NAMES`)."""
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
         list(range(n_str, n_str + len(NUMERIC_FEATURES)))),
    ])
    return Pipeline([("pre", pre),
                     ("clf", LogisticRegression(C=C, max_iter=2000, random_state=seed))])


def _tune_c(X: np.ndarray, y: np.ndarray, seed: int) -> tuple[float, dict[str, float]]:
    from sklearn.model_selection import StratifiedKFold, cross_val_score

    folds = StratifiedKFold(n_splits=min(3, int(np.bincount(y).min())), shuffle=True,
                            random_state=seed)
    scores = {str(c): float(-cross_val_score(build_pipeline(c, seed), X, y, cv=folds,
                                             scoring="neg_log_loss").mean())
              for c in C_GRID}
    best = min(C_GRID, key=lambda c: scores[str(c)])
    return best, scores


def export_onnx(pipeline) -> Any:
    """The fitted pipeline as an ONNX model: one input per feature column, plain tensors out."""
    from skl2onnx import convert_sklearn
    from skl2onnx.common.data_types import FloatTensorType, StringTensorType
    from sklearn.linear_model import LogisticRegression

    types = [(n, (StringTensorType if n in STRING_FEATURES else FloatTensorType)([None, 1]))
             for n in FEATURE_NAMES]
    return convert_sklearn(pipeline, initial_types=types,
                           options={LogisticRegression: {"zipmap": False}})


def _onnx_proba(model_bytes: bytes, features: list[dict[str, Any]]) -> np.ndarray:
    import onnxruntime as ort

    sess = ort.InferenceSession(model_bytes, providers=["CPUExecutionProvider"])
    return sess.run([PROBA_OUTPUT], to_onnx_inputs(features))[0]


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
    from sklearn.metrics import brier_score_loss, log_loss, roc_auc_score

    return {
        "held_out_rows": len(y_test),
        "roc_auc": (round(float(roc_auc_score(y_test, risk)), 4)
                    if len(set(y_test.tolist())) == 2 else None),
        "brier": round(float(brier_score_loss(y_test, risk)), 4),
        "brier_base_rate": round(float(brier_score_loss(y_test, np.full(len(y_test), base))), 4),
        "log_loss": round(float(log_loss(y_test, risk, labels=[0, 1])), 4),
        "base_rate": round(float(y_test.mean()), 4),
        "mean_risk": round(float(risk.mean()), 4),
        "by_gap": _by_gap(gaps, y_test, risk),
    }


def check_parity(model_bytes: bytes, features: list[dict[str, Any]], proba: np.ndarray) -> float:
    """Max |ONNX - scikit-learn| probability on ``features``; raises past :data:`PARITY_TOL`."""
    parity = float(np.abs(_onnx_proba(model_bytes, features) - proba).max())
    if not parity <= PARITY_TOL:
        raise RuntimeError(f"ONNX export does not match scikit-learn: max |probability "
                           f"difference| = {parity:.2e} > {PARITY_TOL:g} on the held-out rows")
    return parity


def train_tabular(manifests: list[str | Path], out_dir: str | Path, *,
                  grading: str | Path | None = None, seed: int = 0) -> dict[str, Any]:
    """Train the return-risk model on labelled manifest rows, export and verify it; returns the
    summary written to ``tabular.json`` (metrics, data, files)."""
    import joblib
    import onnx
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
    features, gaps = [], []
    for r in rows:
        assert r.refurbisher_grade is not None  # labelled_rows keeps only these rows
        features.append(tabular_features(r, r.refurbisher_grade, policy))
        gaps.append(policy.rank(r.grade) - policy.rank(r.refurbisher_grade) if r.grade else None)
    idx_train, idx_test = train_test_split(np.arange(len(rows)), test_size=TEST_FRACTION,
                                           stratify=y, random_state=seed)
    X = design_matrix(features)
    best_c, cv_log_loss = _tune_c(X[idx_train], y[idx_train], seed)
    pipeline = build_pipeline(best_c, seed).fit(X[idx_train], y[idx_train])

    proba = pipeline.predict_proba(X[idx_test])
    metrics = held_out_metrics(y[idx_test], proba[:, 1], float(y[idx_train].mean()),
                               [gaps[i] for i in idx_test])
    model = export_onnx(pipeline)
    model_bytes = model.SerializeToString()
    metrics["onnx_max_abs_diff"] = check_parity(model_bytes, [features[i] for i in idx_test],
                                                proba)

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / ONNX_FILE).write_bytes(model_bytes)
    joblib.dump(pipeline, out / JOBLIB_FILE)
    elem = {onnx.TensorProto.STRING: "string", onnx.TensorProto.FLOAT: "float32"}
    summary = {
        "format": FORMAT,
        "task": "return_risk",
        "target": "returned within 30 days",
        "feature_names": list(FEATURE_NAMES),
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
            "train_rows": len(idx_train), "held_out_rows": len(idx_test),
            "by_announced_grade": {g: int(sum(r.refurbisher_grade == g for r in rows))
                                   for g in policy.grades},
            "by_gap": _by_gap(gaps, y),
        },
        "seed": seed,
        "versions": {"sklearn": sklearn.__version__, "skl2onnx": skl2onnx.__version__,
                     "onnx_opsets": {o.domain or "ai.onnx": o.version for o in model.opset_import}},
        "files": {"onnx": ONNX_FILE, "sklearn": JOBLIB_FILE},
    }
    (out / META_FILE).write_text(json.dumps(summary, indent=2) + "\n")
    log.info("tabular model: ROC-AUC %s, Brier %.4f on %d held-out rows -> %s",
             metrics["roc_auc"], metrics["brier"], len(idx_test), out / ONNX_FILE)
    return summary
