"""Issue 18, trust: the evaluation page's words follow the grade (templates rendered directly).

A device at a grade that is not sellable is never described as listed; the heatmap says "where
the damage was found" only for a part with predicted damage; the model grade reads with its
probability ("N% likely"), and each reason with its part's probability.
"""

from __future__ import annotations

import re
from types import SimpleNamespace

import numpy as np

from fusion.grade import assemble_grade, grade_distribution
from fusion.model import FusionModel
from fusion.policy import load_policy
from serve.ui.listing import Filters
from serve.ui.pages import LABELS, templates
from tabular.schema import CHECK_LABELS

POLICY = load_policy()
SCREEN = np.array([0.35, 0.20, 0.15, 0.30])  # flawless most probable
SHELL = np.array([0.25, 0.40, 0.15, 0.20])  # light wear most probable


def _prediction(failed: tuple[str, ...] = ()) -> tuple[dict, float]:
    probs = {"screen": SCREEN, "shell": SHELL}
    p = grade_distribution(POLICY, FusionModel(POLICY.grades), probs, failed, 91)
    out = assemble_grade(POLICY, p, probs, failed_checks=list(failed), battery_health_pct=91,
                         return_risk={}, bundle_version="t")
    return out.prediction().model_dump(mode="json"), out.confidence


def _ev(decision: str, status: str, refurbisher_grade: str, final_grade: str | None,
        resolution: str | None = None, failed: tuple[str, ...] = ()) -> dict:
    prediction, confidence = _prediction(failed)
    return {"id": "e1", "refurbisher_id": "R1", "created_at": "2024-05-01T10:00:00",
            "device": {"brand": "Apple", "model": "iPhone 12", "storage_gb": 128},
            "declared": {"screen": None, "shell": None}, "decision": decision,
            "status": status, "refurbisher_grade": refurbisher_grade,
            "predicted_grade": prediction["grade"], "confidence": confidence, "gap": 0,
            "resolution": resolution, "final_grade": final_grade, "prediction": prediction,
            "justification": None, "review": None}


def _page(ev: dict) -> str:
    html = templates.env.get_template("evaluation.html").render(
        ev=ev, label=LABELS[ev["decision"]], who=SimpleNamespace(role=None), error=None,
        text="", grades=list(POLICY.grades), checks=CHECK_LABELS, min_chars=20,
        not_sellable=POLICY.not_sellable, demo=False, bundle_version="t", model_label="m")
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", "", html))


def test_validated_not_sellable_is_not_listed():
    text = _page(_ev("validated", "listed", "broken", "broken", "validated", failed=("wifi",)))
    assert "validated as not sellable. The device is not listed." in text
    assert "listing goes live" not in text and "listed as" not in text
    sellable = _page(_ev("validated", "listed", "good", "good", "validated"))
    assert "Your grade good matches the model's. The listing goes live." in sellable


def test_resolutions_say_listed_only_at_a_sellable_grade():
    text = _page(_ev("suggestion", "listed", "fair", "broken", "accepted"))
    assert "Suggestion accepted: broken, not sellable: the device is not listed." in text
    text = _page(_ev("suggestion", "listed", "fair", "good", "accepted"))
    assert "Suggestion accepted: listed as good." in text
    text = _page(_ev("justification_required", "listed", "excellent", "broken", "overridden"))
    assert "A reviewer set the grade: broken, not sellable: the device is not listed." in text


def test_damage_caption_only_where_damage_is_predicted_and_grade_reads_as_likely():
    ev = _ev("validated", "listed", "good", "good", "validated")
    html = templates.env.get_template("evaluation.html").render(
        ev=ev, label="x", who=SimpleNamespace(role=None), grades=list(POLICY.grades),
        checks=CHECK_LABELS, min_chars=20, not_sellable=POLICY.not_sellable)
    screen = re.search(r'id="heatmap-caption-screen">([^<]*)<', html).group(1)
    shell = re.search(r'id="heatmap-caption-shell">([^<]*)<', html).group(1)
    assert (screen, shell[:26]) == ("No damage found", "Where the damage was found")
    assert html.count("Where the damage was found") == 1
    text = _page(ev)
    pct = round(100 * ev["confidence"])
    assert f"Model grade good ({pct}% likely):" in text and "confidence" not in text
    assert "Screen: flawless (35%) → at best excellent" in text
    assert "Shell: light wear (40%) → at best good decides" in text


def test_list_status_of_a_device_not_sellable():
    ev = {**_ev("validated", "listed", "broken", "broken", "validated", failed=("wifi",)),
          "gap": 0}
    html = templates.env.get_template("list.html").render(
        title="Recent", items=[ev], total=1, who=None, not_sellable=POLICY.not_sellable,
        f=Filters(), statuses=(), decisions=(), per_page=(), path="/ui/evaluations")
    assert "not listed (not sellable)" in html
