"""Evaluations: the decision, the status machine, storage and their JSON form.

Decision (the grading config's ``[decision]`` thresholds, overridable in the settings): the gap
is the number of steps between the refurbisher's grade and the model's grade (the policy applied
to the part decisions, :mod:`fusion.grade`);
``gap <= validated_max_gap`` (default 0) validates, ``gap <= suggestion_max_gap`` (default 1)
suggests the model's grade, a larger gap requires a justification; but when the model's
confidence is below the config's ``min_confidence`` the decision is ``inconclusive``, whatever
the gap: nothing is asked of the refurbisher, and a reviewer decides, seeing the stored reason.

Status machine::

    validated               -> listed                      (final grade: the refurbisher's)
    suggestion              -> awaiting_refurbisher
        accept-suggestion   -> listed, resolution accepted (final grade: the model's)
        keep-grade          -> listed, resolution kept     (final grade: the refurbisher's)
    justification_required  -> awaiting_justification
        justification       -> in_review                   (text + at least one extra photo)
        approve             -> listed, resolution approved (final grade: the refurbisher's)
        override            -> listed, resolution overridden (final grade: the reviewer's)
    inconclusive            -> in_review                   (then approve or override)

Transitions are conditional updates (``WHERE status = <expected>``), so two concurrent actions
on one evaluation cannot both succeed.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import json
from collections.abc import Iterable
from typing import Any, cast

from sqlalchemy import CursorResult, func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from fusion.grade import GradeResult, Prediction, Reason, inconclusive_reason
from fusion.policy import GradingPolicy
from serve.auth import Principal
from serve.db import Database
from serve.models import (
    Base,
    Evaluation,
    Justification,
    JustificationPhoto,
    Photo,
    Refurbisher,
    ReturnReport,
    Review,
    new_id,
    utcnow,
)
from serve.photostore import PhotoStore, media_type, put_all, sha256
from serve.problems import (
    AlreadyReturned,
    IdempotencyKeyReused,
    InvalidTransition,
    NotFound,
    NotListed,
)

INITIAL = {"validated": ("listed", "validated"),
           "suggestion": ("awaiting_refurbisher", None),
           "justification_required": ("awaiting_justification", None),
           "inconclusive": ("in_review", None)}
#: action -> (status it needs, status it leads to, resolution)
TRANSITIONS = {"accept-suggestion": ("awaiting_refurbisher", "listed", "accepted"),
               "keep-grade": ("awaiting_refurbisher", "listed", "kept"),
               "justification": ("awaiting_justification", "in_review", None),
               "approve": ("in_review", "listed", "approved"),
               "override": ("in_review", "listed", "overridden")}
CATEGORY_RULES = {"screen": ("screen",), "shell": ("shell",),
                  "functional": ("failed_checks", "battery")}


def decision_policy(policy: GradingPolicy, validated_max_gap: int | None,
                    suggestion_max_gap: int | None) -> GradingPolicy:
    """The grading policy with the settings' decision thresholds, if any."""
    vmax = policy.validated_max_gap if validated_max_gap is None else validated_max_gap
    smax = policy.suggestion_max_gap if suggestion_max_gap is None else suggestion_max_gap
    if not 0 <= vmax <= smax:
        raise ValueError(f"decision thresholds: need 0 <= validated_max_gap ({vmax}) <= "
                         f"suggestion_max_gap ({smax})")
    return dataclasses.replace(policy, validated_max_gap=vmax, suggestion_max_gap=smax)


def category_agreement(policy: GradingPolicy, refurbisher_grade: str,
                       reasons: Iterable[Reason]) -> dict[str, bool]:
    """Per category (screen, shell, functional): whether the refurbisher's grade is no better
    than what the model's finding for that category allows (no finding: agrees)."""
    rank = policy.rank(refurbisher_grade)
    out = dict.fromkeys(CATEGORY_RULES, True)
    for r in reasons:
        for category, rules in CATEGORY_RULES.items():
            if r.rule in rules and rank < policy.rank(r.caps_at):
                out[category] = False
    return out


def request_fingerprint(**fields: Any) -> str:
    """sha256 of a request's meaningful content (idempotent retries must match it)."""
    return hashlib.sha256(json.dumps(fields, sort_keys=True, default=str).encode()).hexdigest()


def _insert_ignore(s: Session, model: type[Base], rows: list[dict[str, Any]]) -> None:
    """INSERT ... ON CONFLICT DO NOTHING (SQLite, PostgreSQL); get-then-add elsewhere."""
    if not rows:
        return
    name = s.get_bind().dialect.name
    if name == "sqlite":
        from sqlalchemy.dialects.sqlite import insert as sqlite_insert
        s.execute(sqlite_insert(model).values(rows).on_conflict_do_nothing())
        return
    if name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert as postgresql_insert
        s.execute(postgresql_insert(model).values(rows).on_conflict_do_nothing())
        return
    pk = model.__mapper__.primary_key[0].name
    for row in rows:
        if s.get(model, row[pk]) is None:
            s.add(model(**row))
    s.flush()


def store_photos(s: Session, store: PhotoStore, photos: Iterable[bytes],
                 written: bool = False) -> list[str]:
    """Write photos to disk durably (unless ``written``: already put in ``store``) and add
    their rows in ``s``; returns their digests."""
    digests, rows = [], []
    for data in photos:
        digest = sha256(data) if written else put_all(store, [data])[0]
        digests.append(digest)
        rows.append({"sha256": digest, "size_bytes": len(data), "media_type": media_type(data),
                     "created_at": utcnow()})
    _insert_ignore(s, Photo, rows)
    return digests


def build_evaluation(policy: GradingPolicy, result: GradeResult, *, refurbisher_id: str,
                     refurbisher_grade: str, info: dict[str, Any], front_sha256: str,
                     back_sha256: str, request_sha256: str, idempotency_key: str | None = None,
                     device_ref: str | None = None, declared_screen: str | None = None,
                     declared_shell: str | None = None, created_by_key_id: str | None = None,
                     now: dt.datetime | None = None) -> Evaluation:
    """A new evaluation from a grading result, decided and in its initial status."""
    now = now or utcnow()
    predicted = result.grade
    decision = str(policy.decide(refurbisher_grade, predicted, result.confidence))
    why = inconclusive_reason(policy, predicted, result.confidence, result.parts)
    status, resolution = INITIAL[decision]
    agree = category_agreement(policy, refurbisher_grade, result.reasons)
    return Evaluation(
        id=new_id(), refurbisher_id=refurbisher_id, created_by_key_id=created_by_key_id,
        idempotency_key=idempotency_key, request_sha256=request_sha256, device_ref=device_ref,
        brand=info["brand"], model=info["model"], storage_gb=info["storage_gb"],
        unlocked=info["unlocked"], battery_health_pct=info.get("battery_health_pct"),
        checks=dict(info["checks"]), declared_screen=declared_screen,
        declared_shell=declared_shell, refurbisher_grade=refurbisher_grade,
        predicted_grade=predicted, confidence=result.confidence,
        gap=policy.gap(refurbisher_grade, predicted), decision=decision,
        inconclusive_reason=why,
        agrees_screen=agree["screen"], agrees_shell=agree["shell"],
        agrees_functional=agree["functional"],
        prediction=result.prediction().model_dump(mode="json"),
        bundle_version=result.bundle_version, grading=policy.name,
        front_sha256=front_sha256, back_sha256=back_sha256, status=status,
        resolution=resolution, final_grade=refurbisher_grade if status == "listed" else None,
        created_at=now, updated_at=now, listed_at=now if status == "listed" else None,
        justification=None, review=None, returns=[])


def find_idempotent(s: Session, refurbisher_id: str, key: str) -> Evaluation | None:
    return s.scalars(select(Evaluation).where(Evaluation.refurbisher_id == refurbisher_id,
                                              Evaluation.idempotency_key == key)).first()


def save_evaluation(db: Database, store: PhotoStore, evaluation: Evaluation, front: bytes,
                    back: bytes) -> tuple[Evaluation, bool]:
    """Store the photos (fsync) then the evaluation (commit); returns (row, created).

    With an idempotency key already used by the same refurbisher, nothing is written and the
    stored evaluation is returned (created False), or a 422 when the request differs."""
    put_all(store, (front, back))  # stored (fsynced) before the commit that refers to them
    try:
        with db.write() as s:
            if evaluation.idempotency_key:
                found = find_idempotent(s, evaluation.refurbisher_id, evaluation.idempotency_key)
                if found is not None:
                    return replay_check(found, evaluation.request_sha256), False
            _insert_ignore(s, Refurbisher, [{"id": evaluation.refurbisher_id, "name": None,
                                             "created_at": utcnow()}])
            store_photos(s, store, (front, back), written=True)
            s.add(evaluation)
        return evaluation, True
    except IntegrityError:
        if not evaluation.idempotency_key:
            raise
    with db.read() as s:  # a concurrent request with the same key won the race
        found = find_idempotent(s, evaluation.refurbisher_id, evaluation.idempotency_key)
        if found is None:
            raise RuntimeError("idempotency conflict without a stored evaluation")
        return replay_check(found, evaluation.request_sha256), False


def key_reused(key: str | None) -> IdempotencyKeyReused:
    return IdempotencyKeyReused(f"Idempotency-Key {key!r} was already used for a different "
                                "request", "Idempotency-Key")


def replay_check(found: Evaluation, request_sha256: str) -> Evaluation:
    if found.request_sha256 != request_sha256:
        raise key_reused(found.idempotency_key)
    return found


def get_visible(s: Session, principal: Principal, evaluation_id: str) -> Evaluation:
    """The evaluation; NotFound when it does not exist or belongs to another refurbisher."""
    ev = s.get(Evaluation, evaluation_id) if len(evaluation_id) <= 64 else None
    if ev is None or not principal.sees_refurbisher(ev.refurbisher_id):
        raise NotFound(f"evaluation {evaluation_id!r} not found", "evaluation_id")
    return ev


def _advance(s: Session, ev: Evaluation, action: str, **values: Any) -> None:
    """Move ``ev`` along ``action``, or raise InvalidTransition with its current status."""
    needed, to, resolution = TRANSITIONS[action]
    if ev.status == needed:
        now = utcnow()
        extra = {"listed_at": now} if to == "listed" else {}
        stmt = (update(Evaluation).where(Evaluation.id == ev.id, Evaluation.status == needed)
                .values(status=to, resolution=resolution, updated_at=now, **extra, **values)
                .execution_options(synchronize_session=False))
        # An UPDATE gives a CursorResult (with rowcount); Session.execute is typed as Result.
        done = cast(CursorResult[Any], s.execute(stmt))
        if done.rowcount == 1:
            s.refresh(ev)
            return
        s.refresh(ev)
    raise invalid_transition(ev, action)


def invalid_transition(ev: Evaluation, action: str) -> InvalidTransition:
    return InvalidTransition(f"evaluation {ev.id} is {ev.status}; {action} needs "
                             f"{TRANSITIONS[action][0]}", "status", current_status=ev.status,
                             next_actions=next_actions(ev.status))


def next_actions(status: str) -> list[str]:
    return [a for a, (needed, _, _) in TRANSITIONS.items() if needed == status]


def act(db: Database, principal: Principal, evaluation_id: str, action: str,
        grade: str | None = None, comment: str | None = None) -> dict[str, Any]:
    """accept-suggestion, keep-grade, approve or override one evaluation; its new state."""
    with db.write() as s:
        ev = get_visible(s, principal, evaluation_id)
        if action == "accept-suggestion":
            _advance(s, ev, action, final_grade=ev.predicted_grade)
        elif action == "keep-grade":
            _advance(s, ev, action, final_grade=ev.refurbisher_grade)
        elif action in ("approve", "override"):
            final = ev.refurbisher_grade if action == "approve" else grade
            _advance(s, ev, action, final_grade=final)
            s.add(Review(evaluation_id=ev.id, action=action, grade=final, comment=comment,
                         reviewer_key_id=principal.key_id))
        else:
            raise ValueError(action)
    return load(db, principal, evaluation_id)


def check_transition(db: Database, principal: Principal, evaluation_id: str,
                     action: str) -> None:
    """NotFound or InvalidTransition before any upload is processed."""
    with db.read() as s:
        ev = get_visible(s, principal, evaluation_id)
        if ev.status != TRANSITIONS[action][0]:
            raise invalid_transition(ev, action)


def justify(db: Database, store: PhotoStore, principal: Principal, evaluation_id: str,
            text: str, photos: list[bytes]) -> dict[str, Any]:
    """Store the justification and its photos; the evaluation goes to review."""
    put_all(store, photos)
    with db.write() as s:
        ev = get_visible(s, principal, evaluation_id)
        _advance(s, ev, "justification")
        digests = store_photos(s, store, photos, written=True)
        j = Justification(evaluation_id=ev.id, text=text, created_by_key_id=principal.key_id)
        s.add(j)
        s.flush()
        s.add_all(JustificationPhoto(justification_id=j.id, position=i, photo_sha256=d)
                  for i, d in enumerate(digests, 1))
    return load(db, principal, evaluation_id)


def load(db: Database, principal: Principal, evaluation_id: str) -> dict[str, Any]:
    """One evaluation as the API returns it (404 when not visible to ``principal``)."""
    with db.read() as s:
        return to_dict(get_visible(s, principal, evaluation_id))


def report_return(db: Database, principal: Principal, *, evaluation_id: str, kind: str,
                  reason: str, comment: str | None, occurred_at: dt.datetime | None,
                  idempotency_key: str | None) -> tuple[ReturnReport, bool]:
    """Record a return or claim on a listed evaluation; (row, created)."""
    fields = {"evaluation_id": evaluation_id, "kind": kind, "reason": reason}

    def replay(found: ReturnReport) -> ReturnReport:
        if {k: getattr(found, k) for k in fields} != fields:
            raise key_reused(idempotency_key)
        return found

    try:
        with db.write() as s:
            if idempotency_key:
                found = s.scalars(select(ReturnReport).where(
                    ReturnReport.idempotency_key == idempotency_key)).first()
                if found is not None:
                    return replay(found), False
            ev = s.get(Evaluation, evaluation_id) if len(evaluation_id) <= 64 else None
            if ev is None or not principal.sees_refurbisher(ev.refurbisher_id):
                raise NotFound(f"evaluation_id: evaluation {evaluation_id!r} not found",
                               "evaluation_id")
            if ev.status != "listed":
                raise NotListed(f"evaluation {ev.id} is {ev.status}: only a listed device can "
                                "be returned or claimed", "evaluation_id",
                                current_status=ev.status)
            if kind == "return" and any(r.kind == "return" for r in ev.returns):
                raise AlreadyReturned(f"evaluation {ev.id} already has a return",
                                      "evaluation_id", current_status=ev.status)
            now = utcnow()
            row = ReturnReport(evaluation_id=ev.id, kind=kind, reason=reason, comment=comment,
                               occurred_at=occurred_at or now, idempotency_key=idempotency_key,
                               created_by_key_id=principal.key_id, created_at=now)
            s.add(row)
        return row, True
    except IntegrityError:
        if not idempotency_key:
            raise
    with db.read() as s:
        found = s.scalars(select(ReturnReport).where(
            ReturnReport.idempotency_key == idempotency_key)).one()
        return replay(found), False


def list_evaluations(db: Database, principal: Principal, *, status: str | None = None,
                     decision: str | None = None, refurbisher_id: str | None = None,
                     since: dt.datetime | None = None, until: dt.datetime | None = None,
                     limit: int = 50, offset: int = 0) -> dict[str, Any]:
    """A page of evaluations, newest first; a refurbisher key only ever sees its own."""
    if principal.role == "refurbisher":
        if refurbisher_id not in (None, principal.refurbisher_id):
            raise NotFound(f"refurbisher {refurbisher_id!r} not found", "refurbisher_id")
        refurbisher_id = principal.refurbisher_id
    q = select(Evaluation)
    for column, value in ((Evaluation.status, status), (Evaluation.decision, decision),
                          (Evaluation.refurbisher_id, refurbisher_id)):
        if value is not None:
            q = q.where(column == value)
    if since is not None:
        q = q.where(Evaluation.created_at >= since)
    if until is not None:
        q = q.where(Evaluation.created_at < until)
    with db.read() as s:
        total = s.scalar(select(func.count()).select_from(q.subquery()))
        rows = s.scalars(q.order_by(Evaluation.created_at.desc(), Evaluation.id.desc())
                         .limit(limit).offset(offset)).all()
        items = [to_dict(e) for e in rows]
    return {"items": items, "total": total, "limit": limit, "offset": offset,
            "next_offset": offset + limit if offset + limit < (total or 0) else None}


def _iso(t: dt.datetime | None) -> str | None:
    return t.isoformat() if t else None


def return_dict(r: ReturnReport) -> dict[str, Any]:
    return {"id": r.id, "evaluation_id": r.evaluation_id, "kind": r.kind, "reason": r.reason,
            "comment": r.comment, "occurred_at": _iso(r.occurred_at),
            "created_at": _iso(r.created_at)}


def to_dict(ev: Evaluation) -> dict[str, Any]:
    """The evaluation as the API returns it."""
    base = f"/v1/evaluations/{ev.id}/photos"
    j, rv = ev.justification, ev.review
    return {
        "id": ev.id, "refurbisher_id": ev.refurbisher_id, "device_ref": ev.device_ref,
        "device": {"brand": ev.brand, "model": ev.model, "storage_gb": ev.storage_gb,
                   "unlocked": ev.unlocked, "battery_health_pct": ev.battery_health_pct,
                   "checks": ev.checks},
        "declared": {"screen": ev.declared_screen, "shell": ev.declared_shell},
        "refurbisher_grade": ev.refurbisher_grade, "predicted_grade": ev.predicted_grade,
        "confidence": ev.confidence, "gap": ev.gap, "decision": ev.decision,
        **({"inconclusive_reason": ev.inconclusive_reason} if ev.inconclusive_reason else {}),
        "agreement": {"screen": ev.agrees_screen, "shell": ev.agrees_shell,
                      "functional": ev.agrees_functional},
        "prediction": stored_prediction(ev).model_dump(mode="json"),
        "bundle_version": ev.bundle_version,
        "grading": ev.grading, "status": ev.status, "resolution": ev.resolution,
        "final_grade": ev.final_grade, "kept_grade": ev.resolution == "kept",
        "next_actions": next_actions(ev.status),
        "photos": {"front": {"sha256": ev.front_sha256, "url": f"{base}/front"},
                   "back": {"sha256": ev.back_sha256, "url": f"{base}/back"}},
        "justification": None if j is None else {
            "text": j.text, "created_at": _iso(j.created_at),
            "photos": [{"sha256": p.photo_sha256, "url": f"{base}/justification-{p.position}"}
                       for p in j.photos]},
        "review": None if rv is None else {
            "action": rv.action, "grade": rv.grade, "comment": rv.comment,
            "created_at": _iso(rv.created_at)},
        "returns": [return_dict(r) for r in ev.returns],
        "idempotency_key": ev.idempotency_key,
        "created_at": _iso(ev.created_at), "updated_at": _iso(ev.updated_at),
        "listed_at": _iso(ev.listed_at),
    }


def stored_prediction(ev: Evaluation) -> Prediction:
    """The model's prediction as stored with the evaluation (rows of any age parse)."""
    return Prediction.model_validate(ev.prediction)


def photo_digest(ev: Evaluation, name: str) -> str | None:
    """front, back or justification-N -> the photo's sha256 (None: no such photo)."""
    if name == "front":
        return ev.front_sha256
    if name == "back":
        return ev.back_sha256
    if name.startswith("justification-") and ev.justification is not None:
        for p in ev.justification.photos:
            if name == f"justification-{p.position}":
                return p.photo_sha256
    return None
