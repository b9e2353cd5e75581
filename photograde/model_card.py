"""``MODEL_CARD.md`` of a released bundle, written from what the release measured.

Every figure in the card comes from ``release.json`` (the release's own evaluation) or from a
leave-one-source-out run (``loso.json``) when one is given; nothing is typed by hand.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from fusion.bundle import BundleManifest, Int8Info, load_manifest
from fusion.policy import policy_from_dict
from fusion.precision import choose_precision


def _f(v: Any, digits: int = 3) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "n/a"
    return f"{v:.{digits}f}"


def _head_rows(name: str, ev: dict[str, Any]) -> list[str]:
    rows = []
    for part in ("screen", "shell"):
        m = ev.get(part)
        if not m:
            continue
        rows.append(f"| {name} | {part} | {m['n']} | {_f(m.get('macro_f1'))} | "
                    f"{_f(m.get('balanced_accuracy'))} | {_f(m.get('qwk'))} | "
                    f"{_f(m.get('roc_auc_cracked'))} | {_f(m.get('ece_calibrated'))} |")
    return rows


def _metrics(evaluation: dict[str, Any]) -> list[str]:
    lines = ["| set | head | photos | macro-F1 | balanced accuracy | QWK | ROC-AUC cracked | "
             "ECE (calibrated) |", "|---|---|---:|---:|---:|---:|---:|---:|"]
    lines += _head_rows("synthetic held-out (fp32)", evaluation["synthetic"])
    lines += _head_rows("synthetic held-out (int8)", evaluation["synthetic_int8"])
    real = evaluation.get("real")
    if real:
        m = real["screen"]
        lines.append(f"| real fronts (cracked vs not) | screen | {m['n']} | "
                     f"{_f(m.get('cracked_vs_rest', {}).get('macro_f1'))} | "
                     f"{_f(m.get('cracked_vs_rest', {}).get('balanced_accuracy'))} | n/a | "
                     f"{_f(m.get('roc_auc_cracked'))} | {_f(m.get('ece_calibrated'))} |")
    return lines


def _user_grades(real: dict[str, Any] | None) -> list[str]:
    if not real or not real.get("user_grades"):
        return ["Not measured (no real photos in this release)."]
    ug = real["user_grades"]
    lines = [f"Each real front graded as a device with a flawless synthetic back (predicted "
             f"`{ug['back_condition']}`) and a checklist that passes:", "",
             "| label | photos | " + " | ".join(f"`{g}`" for g in real["grading_scale"]) + " |",
             "|---|---:|" + "---:|" * len(real["grading_scale"])]
    for label, counts in sorted(ug["counts"].items()):
        n = sum(counts.values())
        cells = " | ".join(f"{counts.get(g, 0)} ({100 * counts.get(g, 0) / n:.0f}%)"
                           for g in real["grading_scale"])
        lines.append(f"| {label} | {n} | {cells} |")
    return lines


def _loso(loso: dict[str, Any] | None) -> list[str]:
    if not loso:
        return ["Not measured for this release."]
    tc = loso["train_config"]
    extra = ", ".join(f"`{m}`" for m in loso.get("extra_manifests", [])) or "nothing else"
    # scripts/loso-served --json: the same runs served on each photo's device crop too
    has_crop = any("served_crop" in s for s in loso["splits"].values())
    keys = ("probe", "finetune", "finetune_tta", "ensemble", "served",
            *(("served_crop",) if has_crop else ()))
    crop = (" on the device crop |", "---|") if has_crop else ("", "")
    if has_crop:  # the runs' own training extras, not the probe's whole photos
        extra = ", ".join(f"`{m}`" for m in loso.get("trained_on", [])) or extra
    lines = [f"`photograde cv vision --by-source`: each source held out in turn; the model is "
             f"fine-tuned on the other source plus {extra} ({tc['img_size']} px, "
             f"{tc['epochs']} epochs, stem + {tc['freeze_stages']} stages frozen), the probe "
             "is logistic regression on frozen ImageNet features; ROC-AUC / balanced accuracy "
             "(P(cracked) >= 0.5) on the held-out source. **As served**: the fine-tuned "
             "model with the photo check's cracked-screen probe blended in (fitted on the "
             "training source's photos and the extra synthetic fronts; see Photo check)." +
             (" The runs trained on photos and their device crops (`mixed.csv`); served on the "
              "whole photo and on its device crop (the last column), the probe on the whole "
              "photo (`scripts/loso-served --json`)." if has_crop else ""), "",
             "| held-out source | trained on | probe ROC-AUC / bal. acc. | fine-tuned | "
             "fine-tuned + TTA | probe + fine-tuned | as served |" + crop[0],
             "|---|---|---|---|---|---|---|" + crop[1]]
    for held, s in loso["splits"].items():
        cells = [f"{_f(s[k]['roc_auc'])} / {_f(s[k]['balanced_accuracy'])}" if k in s
                 else "n/a" for k in keys]
        lines.append(f"| {held} ({s['finetune']['n']} photos) | "
                     f"{', '.join(s['train_sources'])} | " + " | ".join(cells) + " |")
    return lines


def _real_counts(summary: dict[str, Any] | None) -> str:
    """``795 real front photos (sources: a 717, b 78; cracked 522, not cracked 273)``."""
    if not summary:
        return "no real photos"
    labels = summary["labels"].get("screen_condition", {})
    cracked = labels.get("cracked", 0)
    sources = ", ".join(f"{k} {v}" for k, v in summary.get("sources", {}).items())
    return (f"{summary['rows']} real front photos ({f'sources: {sources}; ' if sources else ''}"
            f"cracked {cracked}, not cracked {summary['rows'] - cracked}; coarse labels: intact "
            "= not cracked)")


def _abstention(a: dict[str, Any] | None) -> str:
    if not a or a.get("threshold") is None:
        return "Abstention: not set (every grade is decided)."
    return (f"Abstention: below a grade confidence of {a['threshold']:.3f} the decision is "
            f"`inconclusive` and a reviewer decides; on the {a['measured_on']} "
            f"{100 * a['coverage']:.1f}% of the grades are decided, {100 * a['accuracy']:.1f}% of "
            f"them right (target {100 * a['target_accuracy']:.0f}%).")


def _pct(r: dict[str, Any]) -> str:
    return f"{100 * r['rate']:.1f}% of {r['n']}" if r.get("rate") is not None else "n/a"


def _photocheck(info: Any) -> list[str]:
    """The photo check's section: leave-one-source-out on real fronts, held-out sets, speed."""
    if info is None:
        return ["No photo check model in this bundle: only the measured checks run."]
    m = info.metrics
    probe = (f" and a cracked-screen probe (cracked or not, fitted on the labelled real and "
             f"synthetic fronts), whose P(cracked) weighs {info.cracked_weight:g} in the served "
             "screen's P(cracked), the model's the rest (`vision.photocheck.blend_cracked`)"
             if info.cracked_weight else "")
    lines = [f"A frozen ImageNet `{info.backbone}` at {info.input_size} px"
             f"{' (int8)' if m.get('int8') else ''} with logistic heads: phone or not, front "
             f"or back{probe}; trained on " + ", ".join(f"{v} {k.replace('_', ' ')}" for k, v in
                                                       info.training_data.items()) + ".", "",
             "| photos | expected | result |", "|---|---|---|"]
    for source, r in m.get("real_fronts_leave_one_source_out", {}).items():
        lines += [f"| real fronts of {source} (heads fitted without them; {r['too_small']} "
                  f"of {r['photos']} under {m['thresholds']['min_side_px']} px set apart), "
                  f"front slot | pass | {_pct(r['front_slot'])} |",
                  f"| the same, back slot | wrong_side | {_pct(r['back_slot'])} |"]
        if c := r.get("cracked_probe"):
            lines.append(f"| the same, the cracked-screen probe alone ({c['n']} labelled) | "
                         f"cracked or not | ROC-AUC {_f(c['roc_auc'])}, balanced accuracy "
                         f"{_f(c['balanced_accuracy'])} |")
    for name, r in m.get("held_out", {}).items():
        lines.append(f"| {name.replace('_', ' ')} | {r['expected']} | {_pct(r)} |")
    t = m.get("cpu_one_thread", {})
    lines += ["", f"Cost per photo on one CPU thread: {t.get('measured_ms')} ms measured checks "
              f"+ {t.get('model_ms')} ms model = {t.get('total_ms')} ms (decoding, shared with "
              "grading, excluded)."]
    return lines


def return_risk_lines(meta: dict[str, Any]) -> list[str]:
    """The return-risk model's section: what it reads and its held-out figures."""
    d, m = meta.get("data", {}), meta.get("metrics", {})
    if not meta.get("evidence"):
        return [f"Logistic regression on the device's facts and announced grade only, "
                f"{d.get('rows', 'n/a')} synthetic devices; held-out ROC-AUC "
                f"{_f(m.get('roc_auc'))} (facts cannot see an overgraded screen or shell)."]
    h = m.get("held_out_history") or m
    facts = m.get("facts_only", {})
    return [
        "Logistic regression on the device's facts and announced grade plus what this bundle "
        "sees in the photos (part and grade probabilities, the grade's gap to the announced "
        "one, the photo check's scores) and the seller's trust score at listing time. Trained "
        f"on {d.get('rows')} listings of a synthetic marketplace history graded through this "
        f"bundle ({_f(100 * d.get('base_rate', 0), 1)}% returned; the simulator's returns: "
        "docs/training.md).", "",
        "| set | model | listings | returned | ROC-AUC | PR-AUC | Brier (base rate) | ECE |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
        _risk_row("held-out history", "this one", h),
        _risk_row("training history, held-out split", "this one", m),
        _risk_row("training history, held-out split", "facts only",
                  {**facts, "held_out_rows": m.get("held_out_rows"),
                   "base_rate": m.get("base_rate")})]


def _risk_row(name: str, model: str, r: dict[str, Any]) -> str:
    brier = _f(r.get("brier"), 4)
    if r.get("brier_base_rate") is not None:
        brier += f" ({_f(r.get('brier_base_rate'), 4)})"
    return (f"| {name} | {model} | {r.get('held_out_rows')} | "
            f"{_f(100 * (r.get('base_rate') or 0), 1)}% | {_f(r.get('roc_auc'))} | "
            f"{_f(r.get('pr_auc'))} | {brier} | {_f(r.get('calibration', {}).get('ece'))} |")


def _int8_line(int8: Int8Info | None) -> str:
    """int8's measured changes and the precision the service serves by default."""
    if int8 is None:
        return "int8: none in this bundle; the service serves fp32."
    choice = choose_precision(int8, "auto")
    speed = f", {int8.speedup:.2f}x faster on one CPU thread" if int8.speedup else ""
    changes = ", ".join(f"{k} {v:+.2f}" for k, v in choice.int8_change_points.items())
    why = ("every measured change within 0.5 point" if choice.precision == "int8"
           else choice.reason.removeprefix("auto: "))
    return (f"int8 (`vision.int8.onnx`) against fp32, in points: {changes or 'not measured'}"
            f"{speed}. Served by default (`precision=auto`): **{choice.precision}** ({why}).")


def _pipeline(m: BundleManifest, recipe: dict[str, Any]) -> str:
    """What the condition model sees: the whole photos, or the localiser's crops."""
    if m.crop is None:
        trained = (f" It trained on the photos and on a localiser's device crops of the "
                   f"{recipe.get('crop_views', 'front')} photos alike (`--serve whole`); no "
                   "localiser runs at serving." if recipe.get("localiser") else "")
        return "It sees each photo whole, squashed to its input size." + trained
    photos = " and ".join(m.crop.views) + (" photos" if len(m.crop.views) > 1 else " photo")
    return (f"It sees the device cut out of the {photos}: a "
            "localiser (`localiser.onnx`, int8 when quantised) finds the device's corners, "
            f"and the rectified crop, {m.crop.long_side} px long, is graded (the whole photo "
            "when no device is found; the model trained on whole photos and crops alike); "
            "heatmaps are drawn back onto the photo.")


def render(bundle: Path, record: dict[str, Any], loso: dict[str, Any] | None = None) -> str:
    """The card's Markdown."""
    m = load_manifest(bundle, verify_hashes=False)
    policy = policy_from_dict(m.grading.model_dump())
    r, ev = record["recipe"], record["evaluation"]
    if ev.get("real"):
        ev["real"]["grading_scale"] = list(policy.grades)
    lines = [
        f"# Model card: {r['name']}", "",
        f"Bundle `{m.bundle_version}`, photograde {m.photograde_version}, created "
        f"{m.created_at}. Backbone `{m.vision.backbone}` at {m.vision.input_size} px, two heads "
        "(screen from the front photo, shell from the back photo), a tabular return-risk "
        f"model and the `{policy.name}` grading policy with a learned recalibration. "
        + _pipeline(m, r), "",
        "## Intended use",
        "A second opinion on the cosmetic condition of a refurbished phone from one front and "
        "one back photo, combined with the functional checklist into a grade. It flags grades "
        "that look too good; it does not replace a person's inspection, and its grade is never "
        "applied without the refurbisher's or a reviewer's decision.", "",
        "## Training data",
        f"- {r['devices']} synthetic devices (front and back, seed {r['seed']}) from "
        "`photograde synth`, exact screen and shell conditions;",
        f"- {_real_counts(record['data'].get('real_summary'))}: web-scraped research data that "
        "the project does not redistribute; only the weights are shipped;",
        f"- fusion model: {r['calib_devices']} other synthetic devices; return-risk model: a "
        f"synthetic marketplace history ({r.get('history_devices', 'n/a')} devices).",
        f"Recipe: `photograde train release` ({r['img_size']} px, {r['epochs']} epochs, "
        f"stem + {r['freeze_stages']} stage(s) frozen): the condition model trained in "
        f"{record.get('vision_training_minutes', 'n/a')} min; the last `train release` run took "
        f"{record['minutes']} min (it skips the steps already done).", "",
        "## Metrics",
        f"Synthetic held-out set: {r['test_devices']} devices of seed {r['test_seed']}, never "
        "trained on. Real fronts: the photos of `--real` that the training kept for validation "
        "(early stopping and calibration, never for gradient steps)." + (
            " Screen figures are the served ones: the model's probabilities with the photo "
            "check's cracked-screen probe blended in (see Photo check)."
            if m.photocheck is not None and m.photocheck.cracked_weight else ""), "",
        *_metrics(ev), "",
        _int8_line(m.vision.int8),
        _abstention(record.get("abstention")),
        "Temperatures (calibration): " + ", ".join(f"{k} {v:.3f}" for k, v in
                                                   m.vision.temperatures.items()) + ".", "",
        "### Grades a user sees", *_user_grades(ev.get("real")), "",
        "### Generalisation to unseen sources (leave one source out)", *_loso(loso), "",
        "## Photo check", *_photocheck(m.photocheck), "",
        "## Return risk",
        *return_risk_lines(json.loads((Path(bundle) / "tabular.json").read_text())), "",
        "## Known limits",
        "- No real back photos exist for training: the shell head learned from synthetic backs "
        "only.",
        "- Light scratches are near the resolution limit at this input size (a 1-2 px line on "
        "the glass is a fraction of a pixel); most screen errors are flawless vs light "
        "scratches.",
        "- Display faults without broken glass (lines, dead pixels, ink bleed alone) are not "
        "labelled in the training data.",
        "- The real photos are web thumbnails from two sources; phones in busy scenes and small "
        "phones in wide shots are the weakest cases.", "",
        "## Fine-tune on your own photos",
        "```bash",
        "photograde import-folder my-photos --out my.csv \\",
        "    --map 'intact=flawless|light_scratches|heavy_scratches' --map cracked=cracked",
        f"photograde train vision --init-from models/{r['name']} --manifest my.csv "
        f"--out runs/mine --img-size {m.vision.input_size}",
        "```", ""]
    return "\n".join(lines)


def write_model_card(bundle: Path, record: dict[str, Any],
                     loso: dict[str, Any] | None = None) -> Path:
    path = Path(bundle) / "MODEL_CARD.md"
    path.write_text(render(Path(bundle), record, loso))
    return path
