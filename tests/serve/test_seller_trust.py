"""The seller's trust score at listing time (what the return-risk model reads), against the
same counts made independently over the stored history."""

from __future__ import annotations

import datetime as dt

import pytest
from sqlalchemy import select

from fusion.trust import trust_score
from photograde.seed import seed_history
from serve.models import Evaluation, ReturnReport
from serve.photostore import LocalPhotoStore
from serve.seller_trust import RETURN_WINDOW, TRUST_DAYS, seller_trust

TODAY = dt.date(2026, 3, 1)


def _by_hand(db, now: dt.datetime) -> dict[str, dict[str, int]]:
    """Per seller: evaluations, validated, inconclusive since the window's start; listings
    whose return window closed, and their returns."""
    start, closed = now - dt.timedelta(days=TRUST_DAYS), now - RETURN_WINDOW
    with db.read() as s:
        evs = s.scalars(select(Evaluation).where(Evaluation.created_at >= start)).all()
        returned = set(s.scalars(select(ReturnReport.evaluation_id)
                                 .where(ReturnReport.kind == "return")).all())
    out: dict[str, dict[str, int]] = {}
    for e in evs:
        c = out.setdefault(e.refurbisher_id, dict.fromkeys(
            ("evaluations", "validated", "inconclusive", "listed", "returned"), 0))
        c["evaluations"] += 1
        c["validated"] += e.decision == "validated"
        c["inconclusive"] += e.decision == "inconclusive"
        if e.listed_at is not None and e.listed_at <= closed:
            c["listed"] += 1
            c["returned"] += e.id in returned
    return out


def test_seller_trust_counts_closed_return_windows(db, tmp_path, grader, synth_dir):
    seed_history(db, LocalPhotoStore(tmp_path / "photos"), synth_dir / "manifest.csv",
                 grader=grader, today=TODAY)
    now = dt.datetime.combine(TODAY, dt.time(12), tzinfo=dt.UTC)
    per = _by_hand(db, now)
    total = {k: sum(c[k] for c in per.values()) for k in next(iter(per.values()))}
    assert total["listed"] > 0
    decided = total["evaluations"] - total["inconclusive"]
    priors = (total["validated"] / decided if decided else 0.0,
              total["returned"] / total["listed"])
    for rid, c in per.items():
        expected = trust_score(c["validated"], c["evaluations"] - c["inconclusive"],
                               c["returned"], c["listed"], *priors)
        assert seller_trust(db, rid, now) == pytest.approx(expected), rid
    # a seller without history scores like the market
    assert seller_trust(db, "NEWCOMER", now) == trust_score(0, 0, 0, 0, *priors)


def test_a_failing_trust_lookup_leaves_the_grade_to_the_imputed_trust(tmp_path, caplog):
    import asyncio

    from serve.db import Database
    from serve.grading import Service
    from serve.photorecords import Screen
    from serve.runtime import Grader
    from serve.settings import SHIPPED_BUNDLE, Settings

    g = Grader(SHIPPED_BUNDLE, threads=1)
    assert g.risk.uses_evidence
    broken = Database(f"sqlite:///{tmp_path / 'never-migrated.db'}")  # no tables: queries fail
    svc = Service(Settings(bundle=SHIPPED_BUNDLE, threads=1))
    screen = Screen(broken, "/v1/evaluations", "R001")
    assert asyncio.run(svc.seller_trust(g, screen)) is None
    assert "seller trust unavailable for R001: OperationalError" in caplog.text
    assert asyncio.run(svc.seller_trust(g, Screen(broken, "/v1/grade", None))) is None
