"""``photograde evaluate vision``: score a trained run on held-out manifests, with a report.

OUT_DIR/metrics.json          per-head metrics, raw and after temperature scaling (NaN -> null)
OUT_DIR/report.md             human-readable report embedding the plots
OUT_DIR/confusion_<head>.png  confusion matrix (exact labels) and cracked vs rest
OUT_DIR/reliability_<head>.png  reliability diagram before / after temperature scaling
OUT_DIR/roc_<head>.png        ROC curve of cracked vs rest (when both are present)
OUT_DIR/worst_<head>.png      the most confidently wrong photos, with captions
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np

from fusion.policy import load_policy
from training.image_cache import load_images
from training.manifest import DatasetError, load_manifest
from training.metrics import (
    cracked_truth,
    ece,
    head_metrics,
    partial_nll,
    risk_coverage,
    softmax,
)
from training.samples import Sample, samples_from
from vision.conditions import CONDITIONS, PARTS

ECE_BINS = 15
THUMB = 200
_PIPE = r"\|"  # a literal | inside a markdown table cell


def evaluate_vision(run_dir: str | Path, manifests: list[str | Path], out_dir: str | Path, *,
                    cache_dir: str | Path | None = None, batch_size: int = 64,
                    device: str = "cpu", worst: int = 16, progress: bool = True,
                    grading: str | None = None) -> dict[str, Any]:
    """Evaluate the run on the manifests' labelled photos; write metrics, plots and report.

    Returns the metrics dict written to ``metrics.json`` (NaN kept as float NaN here).
    """
    from training.vision_run import RunError, load_run, predict_logits  # torch

    if not manifests:
        raise DatasetError("--manifest is required (one or more)")
    run_dir, out = Path(run_dir), Path(out_dir)
    if not run_dir.is_dir():
        raise RunError(f"run directory {run_dir} does not exist")
    if device == "auto":
        import torch

        device = "cuda" if torch.cuda.is_available() else "cpu"
    model, config, temps = load_run(run_dir)
    policy = load_policy(grading) if grading else None  # grades: checked only when asked
    samples = samples_from([load_manifest(m, policy) for m in manifests])
    if not samples:
        raise DatasetError("no labelled photos in the manifest(s) (every condition cell is "
                           "empty?)")
    images = load_images([s.path for s in samples], config["img_size"],
                         Path(cache_dir) if cache_dir else None, progress=progress)
    parts = [s.part for s in samples]
    logits = predict_logits(model, images, parts, batch_size, device, progress)
    del images
    allowed = np.array([s.allowed for s in samples], bool)

    out.mkdir(parents=True, exist_ok=True)
    result: dict[str, Any] = {
        "run": str(run_dir), "manifests": [str(m) for m in manifests],
        "model": {"backbone": config["backbone"], "img_size": config["img_size"],
                  "weights_source": config.get("weights_source"), "temperatures": temps},
    }
    result |= evaluate_heads(samples, logits, allowed, temps, out, worst)
    (out / "metrics.json").write_text(json.dumps(json_safe(result), indent=2))
    (out / "report.md").write_text(report(result, config))
    return result


def evaluate_heads(samples: list[Sample], logits: np.ndarray, allowed: np.ndarray,
                   temps: dict[str, float], out: Path, worst: int) -> dict[str, Any]:
    """:func:`evaluate_head` of each part that has photos among ``samples``, by part."""
    parts = np.array([s.part for s in samples])
    result = {}
    for part in PARTS:
        sel = parts == part
        if sel.any():
            head = [s for s, ok in zip(samples, sel, strict=True) if ok]
            result[part] = evaluate_head(part, head, logits[sel], allowed[sel], temps[part],
                                         out, worst)
    return result


def evaluate_head(part: str, samples: list[Sample], logits: np.ndarray, allowed: np.ndarray,
                   temperature: float, out: Path, worst: int) -> dict[str, Any]:
    classes = CONDITIONS[part]
    raw = head_metrics(logits, allowed, classes, 1.0)
    cal = head_metrics(logits, allowed, classes, temperature)
    m = dict(raw)
    m |= {"temperature": temperature, "ece_calibrated": cal.get("ece", float("nan")),
          "nll": partial_nll(logits, allowed), "nll_calibrated":
          partial_nll(logits, allowed, temperature)}
    m.setdefault("ece", float("nan"))
    m.setdefault("roc_auc_cracked", float("nan"))

    probs_raw, probs = softmax(logits, 1.0), softmax(logits, temperature)
    plots = {"confusion": _plot_confusion(part, m, out / f"confusion_{part}.png"),
             "reliability": _plot_reliability(part, probs_raw, probs, allowed, classes,
                                              temperature, out / f"reliability_{part}.png"),
             "roc": _plot_roc(part, probs_raw, allowed, classes, out / f"roc_{part}.png")}
    m["plots"] = {k: v.name for k, v in plots.items() if v is not None}

    top = probs.argmax(1)
    m["risk_coverage"] = risk_coverage(probs.max(1), allowed[np.arange(len(top)), top])
    mass = (probs * allowed).sum(1)
    order = np.argsort(mass, kind="stable")[:max(0, worst)]
    m["worst"] = [{"device_id": samples[i].device_id, "path": str(samples[i].path),
                   "true": [c for c, ok in zip(classes, allowed[i], strict=True) if ok],
                   "predicted": classes[int(probs[i].argmax())],
                   "p_predicted": float(probs[i].max()), "p_true": float(mass[i]),
                   "wrong": not bool(allowed[i, probs[i].argmax()])} for i in order]
    if m["worst"]:
        _worst_grid(m["worst"], out / f"worst_{part}.png")
        m["plots"]["worst"] = f"worst_{part}.png"
    return m


# -- plots ---------------------------------------------------------------------------------
def _figure(width: float, height: float):
    from matplotlib.figure import Figure  # no pyplot: no global backend state (Agg canvas)

    return Figure(figsize=(width, height), dpi=100, layout="constrained")


def _heatmap(ax, cm: np.ndarray, labels: list[str], title: str) -> None:
    cm = np.asarray(cm)
    rows = cm.sum(1, keepdims=True)
    frac = np.divide(cm, rows, out=np.zeros(cm.shape, float), where=rows > 0)
    ax.imshow(frac, cmap="Blues", vmin=0, vmax=1)
    for (i, j), v in np.ndenumerate(cm):
        ax.text(j, i, str(v), ha="center", va="center",
                color="white" if frac[i, j] > 0.5 else "black")
    ax.set_xticks(range(len(labels)), labels, rotation=30, ha="right")
    ax.set_yticks(range(len(labels)), labels)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title)


def _plot_confusion(part: str, m: dict[str, Any], path: Path) -> Path | None:
    panels = []
    if "confusion_matrix" in m:
        panels.append((m["confusion_matrix"], m["classes"], f"{part}: exact labels "
                       f"(n={m['n_exact']})"))
    if "cracked_vs_rest" in m:
        panels.append((m["cracked_vs_rest"]["confusion_matrix"], ["not cracked", "cracked"],
                       f"{part}: cracked vs rest (n={m['n_cracked_known']})"))
    if not panels:
        return None
    fig = _figure(5.0 * len(panels), 4.6)
    for ax, (cm, labels, title) in zip(fig.subplots(1, len(panels), squeeze=False)[0], panels,
                                       strict=True):
        _heatmap(ax, cm, labels, title)
    fig.savefig(path)
    return path


def _confidence(probs: np.ndarray, allowed: np.ndarray, classes: tuple[str, ...]
                ) -> tuple[np.ndarray, np.ndarray]:
    """(confidence, correct) as ECE is computed by head_metrics: exact rows, else cracked."""
    exact = allowed.sum(1) == 1
    if exact.any():
        p, y = probs[exact], allowed[exact].argmax(1)
        return p.max(1), (p.argmax(1) == y).astype(float)
    c = classes.index("cracked")
    truth = cracked_truth(allowed, c)
    known = truth >= 0
    score, yt = probs[known, c], truth[known]
    return np.maximum(score, 1 - score), ((score >= 0.5) == (yt == 1)).astype(float)


def _plot_reliability(part: str, probs_raw: np.ndarray, probs_cal: np.ndarray,
                      allowed: np.ndarray, classes: tuple[str, ...], temperature: float,
                      path: Path) -> Path | None:
    pairs = [_confidence(p, allowed, classes) for p in (probs_raw, probs_cal)]
    if not len(pairs[0][0]):
        return None
    edges = np.linspace(0, 1, ECE_BINS + 1)
    fig = _figure(10, 4.4)
    axes = fig.subplots(1, 2, sharey=True)
    titles = ("raw (T = 1)", f"temperature scaled (T = {temperature:.3g})")
    for ax, (conf, correct), title in zip(axes, pairs, titles, strict=True):
        idx = np.clip(np.digitize(conf, edges[1:-1]), 0, ECE_BINS - 1)
        acc = np.array([correct[idx == b].mean() if (idx == b).any() else np.nan
                        for b in range(ECE_BINS)])
        count = np.bincount(idx, minlength=ECE_BINS)
        centres = (edges[:-1] + edges[1:]) / 2
        ax.bar(centres, np.nan_to_num(acc), width=1 / ECE_BINS, edgecolor="black",
               color="tab:blue", alpha=0.8, label="accuracy")
        ax.plot([0, 1], [0, 1], "--", color="grey", label="perfect calibration")
        for x, a, n in zip(centres, acc, count, strict=True):
            if n:
                ax.text(x, min(np.nan_to_num(a) + 0.02, 0.97), str(n), ha="center", fontsize=7)
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1)
        ax.set_xlabel("confidence")
        ax.set_title(f"{part}, {title}: ECE {ece(conf, correct, ECE_BINS):.3f}")
        ax.legend(loc="upper left", fontsize=8)
    axes[0].set_ylabel("accuracy (count on bars)")
    fig.savefig(path)
    return path


def _plot_roc(part: str, probs: np.ndarray, allowed: np.ndarray, classes: tuple[str, ...],
              path: Path) -> Path | None:
    from sklearn.metrics import roc_auc_score, roc_curve

    if "cracked" not in classes:
        return None
    c = classes.index("cracked")
    truth = cracked_truth(allowed, c)
    known = truth >= 0
    yt, score = truth[known], probs[known, c]
    if len(set(yt.tolist())) < 2:
        return None
    fpr, tpr, _ = roc_curve(yt, score)
    fig = _figure(4.8, 4.6)
    ax = fig.subplots()
    ax.plot(fpr, tpr, lw=2, label=f"AUC {roc_auc_score(yt, score):.3f} "
            f"({int(yt.sum())} cracked, {int((yt == 0).sum())} not)")
    ax.plot([0, 1], [0, 1], "--", color="grey")
    ax.set_xlabel("false positive rate")
    ax.set_ylabel("true positive rate")
    ax.set_title(f"{part}: cracked vs rest")
    ax.legend(loc="lower right", fontsize=8)
    fig.savefig(path)
    return path


def _font(size: int):
    from PIL import ImageFont

    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1: fixed-size bitmap font
        return ImageFont.load_default()


def _worst_grid(rows: list[dict[str, Any]], path: Path, columns: int = 4) -> Path:
    """Thumbnails of the photos with caption lines (red: the prediction is not allowed)."""
    from PIL import Image, ImageDraw

    from vision.preprocess import open_image

    caption, pad = 64, 6
    cols = min(columns, len(rows))
    n_rows = math.ceil(len(rows) / cols)
    cell_w, cell_h = THUMB + pad, THUMB + caption + pad
    sheet = Image.new("RGB", (cols * cell_w + pad, n_rows * cell_h + pad), "white")
    draw, font = ImageDraw.Draw(sheet), _font(12)
    for k, r in enumerate(rows):
        x, y = pad + (k % cols) * cell_w, pad + (k // cols) * cell_h
        try:
            im = open_image(r["path"], draft_size=THUMB)
            im.thumbnail((THUMB, THUMB))
        except (OSError, ValueError):
            im = Image.new("RGB", (THUMB, THUMB), (200, 200, 200))
        sheet.paste(im, (x + (THUMB - im.width) // 2, y + (THUMB - im.height) // 2))
        lines = [f"{k + 1}. {r['device_id']}", "true: " + "|".join(r["true"]),
                 f"pred: {r['predicted']} {r['p_predicted']:.2f}",
                 f"p(true): {r['p_true']:.2f}" + ("  WRONG" if r["wrong"] else "")]
        colour = (180, 0, 0) if r["wrong"] else (0, 0, 0)
        for i, line in enumerate(lines):
            draw.text((x, y + THUMB + 2 + 15 * i), _clip(line, 34), fill=colour, font=font)
    sheet.save(path)
    return path


def _clip(text: str, n: int) -> str:
    return text if len(text) <= n else text[:n - 1] + "…"


# -- report --------------------------------------------------------------------------------
def _fmt(v: Any) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "n/a"
    return f"{v:.3f}" if isinstance(v, float) else str(v)


def summary_line(part: str, m: dict[str, Any]) -> str:
    """One line of headline metrics of a head (the CLI's output). When fewer than two classes
    have exact labels (e.g. real photos known only as cracked / not cracked), the 4-class
    figures mean nothing and the cracked-vs-rest ones are shown instead."""
    exact_classes = sum(c["support"] > 0 for c in m.get("per_class", {}).values())
    if exact_classes < 2 and m.get("cracked_vs_rest"):
        cvr = m["cracked_vs_rest"]
        head = (f"cracked vs rest: macro-F1 {_fmt(cvr['macro_f1'])} balanced-acc "
                f"{_fmt(cvr['balanced_accuracy'])}")
    else:
        head = (f"macro-F1 {_fmt(m.get('macro_f1'))} balanced-acc "
                f"{_fmt(m.get('balanced_accuracy'))} QWK {_fmt(m.get('qwk'))}")
    return (f"{part}: n={m['n']} {head} ECE {_fmt(m.get('ece'))} -> "
            f"{_fmt(m.get('ece_calibrated'))} (T={m['temperature']:.3g}) ROC-AUC cracked "
            f"{_fmt(m.get('roc_auc_cracked'))}")


def report(result: dict[str, Any], config: dict[str, Any]) -> str:
    info = result["model"]
    source = (f"- run: `{result['run']}`" if "run" in result else
              f"- bundle: `{result['bundle']}` ({result['bundle_version']}, "
              f"{result['vision_file']}, served through the ONNX runtime)")
    lines = ["# Vision evaluation", "", source,
             f"- manifests: {', '.join(f'`{m}`' for m in result['manifests'])}",
             f"- backbone: `{info['backbone']}`, image size {info['img_size']}, weights: "
             f"{info.get('weights_source', 'the bundle')}",
             "- temperatures: " + ", ".join(f"{p} {t:.3g}" for p, t in
                                            info["temperatures"].items()),
             f"- training data: {config.get('data', {}).get('train_photos', 'n/a')} photos", ""]
    for part in PARTS:
        m = result.get(part)
        if m is None:
            lines += [f"## {part}", "", "No labelled photos.", ""]
            continue
        lines += [f"## {part}", "", f"{m['n']} photos, {m['n_exact']} with an exact label, "
                  f"{m.get('n_cracked_known', 0)} with a known cracked / not cracked.", "",
                  "| metric | value |", "|---|---|"]
        headline = [("macro-F1", m.get("macro_f1")),
                    ("balanced accuracy", m.get("balanced_accuracy")),
                    ("QWK", m.get("qwk")), ("accuracy", m.get("accuracy")),
                    ("ECE raw -> calibrated", f"{_fmt(m['ece'])} -> "
                     f"{_fmt(m['ece_calibrated'])}"),
                    ("NLL raw -> calibrated", f"{_fmt(m['nll'])} -> "
                     f"{_fmt(m['nll_calibrated'])}"),
                    ("ROC-AUC cracked vs rest", m.get("roc_auc_cracked"))]
        cvr = m.get("cracked_vs_rest")
        if cvr:
            headline += [("cracked vs rest: balanced accuracy", cvr["balanced_accuracy"]),
                         ("cracked vs rest: macro-F1", cvr["macro_f1"])]
        lines += [f"| {k} | {_fmt(v)} |" for k, v in headline] + [""]
        if "per_class" in m:
            lines += ["| class | precision | recall | F1 | support |", "|---|---|---|---|---|"]
            lines += [f"| {c} | {v['precision']:.3f} | {v['recall']:.3f} | {v['f1']:.3f} | "
                      f"{v['support']} |" for c, v in m["per_class"].items()]
            lines.append("")
        lines += risk_coverage_lines(f"{part}: decided by its most probable condition",
                                     m.get("risk_coverage"))
        for key in ("confusion", "reliability", "roc", "worst"):
            if key in m["plots"]:
                lines += [f"![{part} {key}]({m['plots'][key]})", ""]
        if m["worst"]:
            lines += ["Lowest probability on the true label(s) (calibrated):", "",
                      "| # | device | true | predicted | p(predicted) | p(true) | photo |",
                      "|---|---|---|---|---|---|---|"]
            lines += [f"| {i} | {w['device_id']} | {_PIPE.join(w['true'])} | {w['predicted']}"
                      f"{' (wrong)' if w['wrong'] else ''} | {w['p_predicted']:.3f} | "
                      f"{w['p_true']:.3f} | `{w['path']}` |"
                      for i, w in enumerate(m["worst"], 1)]
            lines.append("")
    return "\n".join(lines + _extra_sections(result))


def _extra_sections(result: dict[str, Any]) -> list[str]:
    """Per-source metrics, grade-level metrics and user-facing grades (``evaluate bundle``)."""
    lines: list[str] = []
    if result.get("by_source"):
        lines += ["## By source", "", "| source | head | photos | macro-F1 | balanced accuracy "
                  "| ROC-AUC cracked | cracked vs rest: balanced accuracy |",
                  "|---|---|---|---|---|---|---|"]
        for name, heads in result["by_source"].items():
            for part, m in heads.items():
                cvr = m.get("cracked_vs_rest") or {}
                lines.append(f"| {name} | {part} | {m['n']} | {_fmt(m.get('macro_f1'))} | "
                             f"{_fmt(m.get('balanced_accuracy'))} | "
                             f"{_fmt(m.get('roc_auc_cracked'))} | "
                             f"{_fmt(cvr.get('balanced_accuracy'))} |")
        lines.append("")
    g = result.get("grades")
    if g:
        lines += ["## Grades", "", f"{g['n']} devices with a known grade: accuracy "
                  f"{_fmt(g['accuracy'])}, macro-F1 {_fmt(g['macro_f1'])}, QWK {_fmt(g['qwk'])}.",
                  "", "| true \\ predicted | " + " | ".join(g["grades"]) + " |",
                  "|---|" + "---|" * len(g["grades"])]
        lines += [f"| {t} | " + " | ".join(map(str, row)) + " |"
                  for t, row in zip(g["grades"], g["confusion_matrix"], strict=True)] + [""]
        lines += risk_coverage_lines("grade: decided by the fused confidence",
                                     g.get("risk_coverage"))
    ug = result.get("user_grades")
    if ug:
        lines += ["## Grades a user sees", "", f"Each front graded with the back `{ug['back']}` "
                  f"(predicted {ug['back_condition']}) and a checklist that passes:", ""]
        lines += [f"- {label}: " + ", ".join(f"{k} {v}" for k, v in sorted(c.items()))
                  for label, c in sorted(ug["counts"].items())] + [""]
    return lines


def risk_coverage_lines(title: str, rc: dict[str, Any] | None) -> list[str]:
    """A small risk-coverage table: coverage / accuracy of the decided items at a few
    confidence thresholds, the area and the thresholds for the target accuracies."""
    if not rc or not rc.get("n"):
        return []
    lines = [f"Risk-coverage ({title}; decided = confidence >= threshold; area = mean "
             f"accuracy over coverage {_fmt(rc['area'])}, AURC {_fmt(rc['aurc'])}):", "",
             "| threshold | coverage | accuracy of decided |", "|---|---|---|"]
    lines += [f"| {a['threshold']:g} | {_fmt(a['coverage'])} | {_fmt(a['accuracy'])} |"
              for a in rc["at_threshold"]]
    for target, t in rc["for_accuracy"].items():
        lines.append(f"| for {float(target):.0%} accuracy: " + (
            f"{t['threshold']:.3f} | {_fmt(t['coverage'])} | {_fmt(t['accuracy'])} |"
            if t else "not reached | | |"))
    return [*lines, ""]


def json_safe(obj: Any) -> Any:
    """JSON-ready copy: NaN / inf -> None, numpy scalars -> Python, tuples -> lists."""
    if isinstance(obj, dict):
        return {str(k): json_safe(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [json_safe(v) for v in obj]
    if isinstance(obj, np.generic):
        obj = obj.item()
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj
