"""Dashboard data (JSON) for a refurbisher and for the platform, over the last ``days`` days.

Windows: evaluations count by their submission time; returns and claims by the time they
occurred. Return rate = evaluations with a return / listed evaluations, for the evaluations
submitted in the window (recent weeks are low until their returns come in). Weeks are ISO weeks
(Monday first, UTC).

**Trust score** (0-100, per refurbisher, over the window; :mod:`fusion.trust`): a
Bayesian-smoothed mix of how often the refurbisher's grade is validated and how rarely their
devices come back. ``decided`` counts the evaluations the model did not find inconclusive (an
inconclusive case is the model's uncertainty, not the refurbisher's doing); the market's shares
over the same window are the prior. A refurbisher with few evaluations therefore sits near the
market's score and moves away from it as evidence accumulates.

**Score by category** (screen, shell, functional): the share (0-100) of the refurbisher's
evaluations whose grade is no better than what the model's finding for that category allows
(the screen condition seen on the front photo, the shell condition on the back photo, the
failed checks and battery health of the checklist), against the same share for the market.
"""

from __future__ import annotations

import datetime as dt
import statistics
from collections import Counter, defaultdict
from typing import Any

from sqlalchemy import case, func, select
from sqlalchemy.orm import Session

from fusion.policy import GradingPolicy
from fusion.trust import trust_score
from serve.db import Database
from serve.models import (
    DECISIONS,
    REJECT_REASONS,
    Evaluation,
    Justification,
    PhotoRejection,
    ReturnReport,
    utcnow,
)

CATEGORIES = ("screen", "shell", "functional")
RECENT_CORRECTIONS = 20


def _rate(num: float, den: float) -> float | None:
    return round(num / den, 4) if den else None


def _week(day: Any) -> dt.date:
    d = day if isinstance(day, dt.date) else dt.date.fromisoformat(str(day)[:10])
    return d - dt.timedelta(days=d.weekday())


def _weeks(start: dt.datetime, end: dt.datetime) -> list[dt.date]:
    w, last, out = _week(start.date()), _week(end.date()), []
    while w <= last:
        out.append(w)
        w += dt.timedelta(days=7)
    return out


def _label(w: dt.date) -> str:
    y, n, _ = w.isocalendar()
    return f"{y}-W{n:02d}"


def _count_if(cond) -> Any:
    return func.sum(case((cond, 1), else_=0))


def _per_refurbisher(s: Session, start: dt.datetime) -> dict[str, dict[str, int]]:
    """Counts per refurbisher for the evaluations submitted since ``start``."""
    E = Evaluation
    rows = s.execute(select(
        E.refurbisher_id, func.count(), _count_if(E.decision == "validated"),
        _count_if(E.status == "listed"), _count_if(E.agrees_screen.is_(True)),
        _count_if(E.agrees_shell.is_(True)), _count_if(E.agrees_functional.is_(True)),
        _count_if(E.decision == "inconclusive"))
        .where(E.created_at >= start).group_by(E.refurbisher_id)).all()
    out = {r[0]: {"evaluations": r[1], "validated": int(r[2] or 0), "listed": int(r[3] or 0),
                  "screen": int(r[4] or 0), "shell": int(r[5] or 0),
                  "functional": int(r[6] or 0), "inconclusive": int(r[7] or 0), "returned": 0}
           for r in rows}
    distinct = func.count(func.distinct(ReturnReport.evaluation_id))
    returned = s.execute(select(E.refurbisher_id, distinct)
                         .join(E, E.id == ReturnReport.evaluation_id)
                         .where(E.created_at >= start, ReturnReport.kind == "return")
                         .group_by(E.refurbisher_id)).all()
    for rid, n in returned:
        out[rid]["returned"] = n
    return out


def _market(per: dict[str, dict[str, int]]) -> dict[str, int]:
    total: Counter = Counter()
    for c in per.values():
        total.update(c)
    return dict(total)


def _decided(c: dict[str, int]) -> int:
    """Evaluations the model decided: an inconclusive one says nothing of the refurbisher."""
    return c.get("evaluations", 0) - c.get("inconclusive", 0)


def _priors(market: dict[str, int]) -> tuple[float, float]:
    return (market.get("validated", 0) / _decided(market) if _decided(market) > 0 else 0.0,
            market.get("returned", 0) / market["listed"] if market.get("listed") else 0.0)


def _trust_of(c: dict[str, int], priors: tuple[float, float]) -> float:
    return trust_score(c.get("validated", 0), _decided(c), c.get("returned", 0),
                       c.get("listed", 0), *priors)


def _return_weeks(s: Session, start: dt.datetime, end: dt.datetime,
                  refurbisher_id: str | None) -> list[dict[str, Any]]:
    """Listed devices and returns per week of listing."""
    E = Evaluation
    day = func.date(E.listed_at)
    q = (select(day, func.count(func.distinct(E.id)),
                func.count(func.distinct(ReturnReport.evaluation_id)))
         .outerjoin(ReturnReport, (ReturnReport.evaluation_id == E.id)
                    & (ReturnReport.kind == "return"))
         .where(E.created_at >= start, E.listed_at.is_not(None)).group_by(day))
    if refurbisher_id is not None:
        q = q.where(E.refurbisher_id == refurbisher_id)
    listed: Counter = Counter()
    returned: Counter = Counter()
    for d, n_listed, n_returned in s.execute(q):
        listed[_week(d)] += n_listed
        returned[_week(d)] += n_returned
    return [{"week": _label(w), "week_start": w.isoformat(), "listed": listed[w],
             "returned": returned[w], "return_rate": _rate(returned[w], listed[w])}
            for w in _weeks(start, end)]


def _reasons(s: Session, start: dt.datetime, refurbisher_id: str | None) -> dict[str, Counter]:
    q = (select(ReturnReport.kind, ReturnReport.reason, func.count())
         .join(Evaluation, Evaluation.id == ReturnReport.evaluation_id)
         .where(ReturnReport.occurred_at >= start)
         .group_by(ReturnReport.kind, ReturnReport.reason))
    if refurbisher_id is not None:
        q = q.where(Evaluation.refurbisher_id == refurbisher_id)
    out: dict[str, Counter] = {"return": Counter(), "claim": Counter()}
    for kind, reason, n in s.execute(q):
        out[kind][reason] += n
    return out


def _photo_check(s: Session, start: dt.datetime, end: dt.datetime) -> dict[str, Any]:
    """Photos the check refused, by reason, and inconclusive decisions: over the window and
    per week (rejections by when they happened, evaluations by submission)."""
    E, R = Evaluation, PhotoRejection
    day = func.date(R.created_at)
    rejected = s.execute(select(day, R.reason, func.count()).where(R.created_at >= start)
                         .group_by(day, R.reason)).all()
    eval_day = func.date(E.created_at)
    decided = s.execute(select(eval_day, func.count(), _count_if(E.decision == "inconclusive"))
                        .where(E.created_at >= start).group_by(eval_day)).all()
    reasons: dict[dt.date, Counter] = defaultdict(Counter)
    for d, reason, n in rejected:
        reasons[_week(d)][reason] += n
    evals: dict[dt.date, Counter] = defaultdict(Counter)
    for d, n, inconclusive in decided:
        evals[_week(d)].update(evaluations=n, inconclusive=int(inconclusive or 0))
    total: Counter = sum(reasons.values(), Counter())
    return {
        "inconclusive": sum(c["inconclusive"] for c in evals.values()),
        "photo_rejections": {r: total[r] for r in REJECT_REASONS},
        "photo_rejections_total": sum(total.values()),
        "photo_check_weekly": [
            {"week": _label(w), "week_start": w.isoformat(),
             "evaluations": evals[w]["evaluations"], "inconclusive": evals[w]["inconclusive"],
             "rejected": sum(reasons[w].values()),
             "rejections": {r: reasons[w][r] for r in REJECT_REASONS}}
            for w in _weeks(start, end)],
    }


def _window(days: int, now: dt.datetime | None) -> tuple[dt.datetime, dt.datetime]:
    end = now or utcnow()
    return end - dt.timedelta(days=days), end


def refurbisher_dashboard(db: Database, refurbisher_id: str, days: int = 30,
                          now: dt.datetime | None = None) -> dict[str, Any]:
    """One refurbisher's dashboard: performance, categories vs the market, returns, trust and
    the recent corrections."""
    start, end = _window(days, now)
    E = Evaluation
    with db.read() as s:
        per = _per_refurbisher(s, start)
        market = _market(per)
        mine = per.get(refurbisher_id, {})
        decisions = dict(s.execute(select(E.decision, func.count())
                                   .where(E.refurbisher_id == refurbisher_id,
                                          E.created_at >= start)
                                   .group_by(E.decision)).all())
        weeks = _return_weeks(s, start, end, refurbisher_id)
        market_weeks = {w["week"]: w["return_rate"] for w in _return_weeks(s, start, end, None)}
        reasons = _reasons(s, start, refurbisher_id)
        corrections = s.scalars(select(E).where(E.refurbisher_id == refurbisher_id,
                                                E.created_at >= start, E.gap > 0)
                                .order_by(E.created_at.desc(), E.id.desc())
                                .limit(RECENT_CORRECTIONS)).all()
        recent = [{"id": e.id, "device": f"{e.brand} {e.model} {e.storage_gb} GB",
                   "device_ref": e.device_ref, "date": e.created_at.isoformat(),
                   "initial_grade": e.refurbisher_grade, "model_grade": e.predicted_grade,
                   "gap": e.gap, "decision": e.decision, "status": e.status,
                   "resolution": e.resolution, "final_grade": e.final_grade}
                  for e in corrections]
    priors = _priors(market)
    n = mine.get("evaluations", 0)
    trusts = sorted(_trust_of(c, priors) for c in per.values())
    all_reasons = reasons["return"] + reasons["claim"]
    total_reasons = sum(all_reasons.values())
    return {
        "refurbisher_id": refurbisher_id, "days": days, "from": start.isoformat(),
        "to": end.isoformat(), "evaluations": n,
        "performance": {
            "validated": mine.get("validated", 0),
            "validated_share": _rate(mine.get("validated", 0), n),
            "market_validated_share": _rate(market.get("validated", 0),
                                            market.get("evaluations", 0)),
            "decisions": {d: decisions.get(d, 0) for d in DECISIONS},
            "inconclusive": mine.get("inconclusive", 0),
            "inconclusive_share": _rate(mine.get("inconclusive", 0), n),
            "market_inconclusive_share": _rate(market.get("inconclusive", 0),
                                               market.get("evaluations", 0)),
        },
        "categories": [{"category": c, "score": _pct(mine.get(c, 0), n),
                        "market": _pct(market.get(c, 0), market.get("evaluations", 0))}
                       for c in CATEGORIES],
        "returns": {
            "listed": mine.get("listed", 0), "returned": mine.get("returned", 0),
            "return_rate": _rate(mine.get("returned", 0), mine.get("listed", 0)),
            "market_return_rate": _rate(market.get("returned", 0), market.get("listed", 0)),
            "weekly": [{**w, "market_return_rate": market_weeks.get(w["week"])}
                       for w in weeks],
        },
        "return_reasons": [{"reason": r, "returns": reasons["return"][r],
                            "claims": reasons["claim"][r],
                            "share": _rate(all_reasons[r], total_reasons)}
                           for r, _ in all_reasons.most_common()],
        "trust": {"score": _trust_of(mine, priors),
                  "market_median": round(statistics.median(trusts), 1) if trusts else None},
        "recent_corrections": recent,
    }


def _pct(num: int, den: int) -> float | None:
    return round(100 * num / den, 1) if den else None


def _quartiles(values: list[float]) -> dict[str, float] | None:
    if not values:
        return None
    if len(values) == 1:
        q1 = med = q3 = values[0]
    else:
        q1, med, q3 = statistics.quantiles(values, n=4, method="inclusive")
    return {"min": min(values), "q1": round(q1, 1), "median": round(med, 1),
            "q3": round(q3, 1), "max": max(values)}


def platform_dashboard(db: Database, policy: GradingPolicy, days: int = 30,
                       now: dt.datetime | None = None) -> dict[str, Any]:
    """The platform's KPIs over the window."""
    start, end = _window(days, now)
    E = Evaluation
    with db.read() as s:
        per = _per_refurbisher(s, start)
        market = _market(per)
        resolutions = dict(s.execute(select(E.resolution, func.count())
                                     .where(E.created_at >= start, E.decision == "suggestion",
                                            E.resolution.is_not(None))
                                     .group_by(E.resolution)).all())
        gaps = dict(s.execute(select(E.gap, func.count()).where(E.created_at >= start)
                              .group_by(E.gap)).all())
        justifications = s.scalar(select(func.count()).select_from(Justification)
                                  .where(Justification.created_at >= start))
        statuses = dict(s.execute(select(E.status, func.count()).group_by(E.status)).all())
        day = func.date(E.created_at)
        grade_days = s.execute(select(day, E.predicted_grade, func.count())
                               .where(E.created_at >= start)
                               .group_by(day, E.predicted_grade)).all()
        claim_day = func.date(ReturnReport.occurred_at)
        claim_days = s.execute(select(claim_day, ReturnReport.kind, func.count())
                               .where(ReturnReport.occurred_at >= start)
                               .group_by(claim_day, ReturnReport.kind)).all()
        reasons = _reasons(s, start, None)
        photo_check = _photo_check(s, start, end)
    weeks = _weeks(start, end)
    by_week: dict[dt.date, Counter] = defaultdict(Counter)
    for d, grade, n in grade_days:
        by_week[_week(d)][grade] += n
    reports: dict[dt.date, Counter] = defaultdict(Counter)
    for d, kind, n in claim_days:
        reports[_week(d)][kind] += n
    priors = _priors(market)
    table: list[dict[str, Any]] = sorted(({"refurbisher_id": rid, "evaluations": c["evaluations"],
                     "validated": c["validated"], "listed": c["listed"],
                     "returned": c["returned"],
                     "validated_share": _rate(c["validated"], c["evaluations"]),
                     "return_rate": _rate(c["returned"], c["listed"]),
                     "trust": _trust_of(c, priors)} for rid, c in per.items()),
                   key=lambda r: (r["trust"], r["refurbisher_id"]))
    accepted, kept = resolutions.get("accepted", 0), resolutions.get("kept", 0)
    n = market.get("evaluations", 0)
    return {
        "days": days, "from": start.isoformat(), "to": end.isoformat(), "evaluations": n,
        "validated": market.get("validated", 0),
        "validated_share": _rate(market.get("validated", 0), n),
        "inconclusive_share": _rate(market.get("inconclusive", 0), n),
        **photo_check,
        "acceptance_rate": _rate(accepted, accepted + kept),
        "suggestions": {"accepted": accepted, "kept": kept},
        "justifications": justifications or 0,
        "gaps_2_or_more": sum(v for g, v in gaps.items() if g >= 2),
        "gap_distribution": {str(g): gaps.get(g, 0)
                             for g in range(max([len(policy.grades) - 1, *gaps]) + 1)},
        "listed": market.get("listed", 0), "returned": market.get("returned", 0),
        "return_rate": _rate(market.get("returned", 0), market.get("listed", 0)),
        "returns": sum(reasons["return"].values()), "claims": sum(reasons["claim"].values()),
        "claims_weekly": [{"week": _label(w), "claims": reports[w]["claim"],
                           "returns": reports[w]["return"]} for w in weeks],
        "return_reasons": dict(reasons["return"].most_common()),
        "claim_reasons": dict(reasons["claim"].most_common()),
        "queues": {st: statuses.get(st, 0) for st in
                   ("awaiting_refurbisher", "awaiting_justification", "in_review")},
        "trust_quartiles": _quartiles([r["trust"] for r in table]),
        "refurbishers": table,
        "predicted_grades_weekly": [
            {"week": _label(w), "week_start": w.isoformat(), "total": sum(by_week[w].values()),
             "grades": {g: by_week[w][g] for g in policy.grades}} for w in weeks],
    }
