"""The return-risk model's evidence: columns, the seller's trust at listing time (no leak of
later returns), and a model trained on evidence that sees what the facts cannot."""

from __future__ import annotations

import datetime as dt
import json
import math

import numpy as np
import pytest
from PIL import Image

from fusion.policy import load_policy
from tabular.evidence import EVIDENCE_FEATURES, Evidence, evidence_features
from tabular.features import FEATURE_NAMES, tabular_features
from tabular.schema import CHECKS
from training.manifest import ManifestRow

POLICY = load_policy()
DAY = dt.date(2026, 6, 1)


def test_evidence_columns_and_unknowns():
    ev = Evidence(screen=(0.1, 0.2, 0.3, 0.4), shell=(0.7, 0.1, 0.1, 0.1),
                  grades=(0.1, 0.2, 0.3, 0.4), trust_score=80, phone=0.9, side=0.8)
    row = evidence_features(ev, announced_rank=1)
    assert tuple(row) == EVIDENCE_FEATURES
    assert row["screen_p_cracked"] == pytest.approx(0.4)
    assert row["expected_rank"] == pytest.approx(2.0)  # 0.2 + 0.6 + 1.2
    assert row["model_gap"] == pytest.approx(1.0)
    assert row["p_worse_than_announced"] == pytest.approx(0.7)
    assert row["trust_score"] == 80 and row["photo_side_p"] == pytest.approx(0.8)
    assert all(math.isnan(v) for v in evidence_features(None, 0).values())
    with pytest.raises(ValueError, match="screen: 3 probabilities for 4 conditions"):
        evidence_features(Evidence(screen=(0.2, 0.3, 0.5)), 0)
    info = {"brand": "A", "model": "B", "storage_gb": 64, "unlocked": True,
            "checks": dict.fromkeys(CHECKS, True)}
    assert tuple(tabular_features(info, "good", POLICY, ev)) == FEATURE_NAMES


def _row(i: int, seller: str, day: dt.date, returned: bool, grade: str = "good") -> ManifestRow:
    return ManifestRow(line=i, device_id=f"d{i}", refurbisher_id=seller, listed_at=day,
                       refurbisher_grade=grade, returned=returned, grade=grade)


def test_trust_at_listing_counts_only_closed_windows():
    from training.tabular_history import trust_at_listing

    bad = [_row(i, "BAD", DAY + dt.timedelta(days=i), i % 2 == 0) for i in range(20)]
    good = [_row(100 + i, "GOOD", DAY + dt.timedelta(days=i % 20), False) for i in range(60)]
    late = [_row(200, "BAD", DAY + dt.timedelta(days=60), False),
            _row(201, "GOOD", DAY + dt.timedelta(days=60), False),
            _row(202, "BAD", DAY + dt.timedelta(days=10), False),
            _row(203, "NEW", DAY + dt.timedelta(days=60), False)]
    rows = bad + good + late
    trust = dict(zip((r.device_id for r in rows), trust_at_listing(rows, {}, POLICY),
                     strict=True))
    assert trust["d200"] < trust["d201"] - 20  # BAD's returns are known by day 60
    # on day 10 no return window of BAD's had closed: it still scores like everyone
    assert trust["d202"] == trust["d0"] == trust["d100"]
    assert trust["d201"] > trust["d203"] > trust["d200"]  # a newcomer sits at the market's
    no_date = ManifestRow(line=9, device_id="x", refurbisher_id="BAD", refurbisher_grade="good",
                          returned=False)
    assert trust_at_listing([no_date], {}, POLICY) == [None]


def _history(n: int, seed: int) -> tuple[list[dict], dict[str, Evidence]]:
    """Devices of the synthetic marketplace history, each with the evidence a fair condition
    model would give: the true grade's probability 0.6, the rest spread."""
    from training.synth.generate import sample_rows

    rng = np.random.default_rng(seed)
    rows = [r for r in sample_rows(n, seed, POLICY, "marketplace") if r["returned"] is not None]
    evidence = {}
    for r in rows:
        p = rng.dirichlet(np.ones(len(POLICY.grades))) * 0.4
        p[POLICY.rank(r["grade"])] += 0.6
        evidence[r["device_id"]] = Evidence(grades=tuple(p))
    return rows, evidence


@pytest.mark.torch
def test_a_model_on_evidence_sees_overgraded_devices(tmp_path):
    from tabular.runtime import ReturnRiskModel
    from training.manifest import COLUMNS, write_manifest
    from training.tabular_train import train_tabular

    rows, evidence = _history(3000, seed=3)
    Image.new("RGB", (8, 8)).save(tmp_path / "tiny.jpg")  # a manifest row needs a photo
    manifest = write_manifest(tmp_path / "h.csv", [dict(r, front_path="tiny.jpg")
                                                   for r in rows], COLUMNS)
    summary = train_tabular([manifest], tmp_path / "run", evidence=evidence)
    m = summary["metrics"]
    assert summary["evidence"] is True and summary["feature_names"] == list(FEATURE_NAMES)
    assert m["roc_auc"] > m["facts_only"]["roc_auc"] + 0.1
    assert m["roc_auc"] >= 0.7 and m["pr_auc"] > m["base_rate"] * 2
    assert m["calibration"]["ece"] < 0.05
    model = ReturnRiskModel.from_dir(tmp_path / "run")
    assert model.uses_evidence
    info = {"brand": "Apple", "model": "iPhone 12", "storage_gb": 128, "unlocked": True,
            "battery_health_pct": 90, "checks": dict.fromkeys(CHECKS, True)}
    sure_fair = Evidence(grades=(0.02, 0.03, 0.9, 0.05))
    sure_excellent = Evidence(grades=(0.9, 0.05, 0.03, 0.02))
    assert (model.predict(info, ["excellent"], POLICY, sure_fair)["excellent"]
            > 2 * model.predict(info, ["excellent"], POLICY, sure_excellent)["excellent"])
    assert json.loads((tmp_path / "run" / "tabular.json").read_text())["evidence"] is True
