"""API keys with roles (their rate limits: serve/ratelimit.py).

A key reads ``pgk_<id>_<secret>``: ``id`` (12 hex characters) is public and names the key in
logs and in ``photograde keys list``; ``secret`` has 256 random bits. Only the sha256 of the
whole key is stored: a request's key is found by its id and compared in constant time
(``hmac.compare_digest``). Keys are sent as ``Authorization: Bearer <key>`` or
``X-API-Key: <key>``.

Roles:

- ``refurbisher`` (bound to one refurbisher): submits and reads its own evaluations, accepts a
  suggestion, keeps its grade, justifies, reads its own dashboard; grades with ``/v1/grade``.
- ``platform`` (the marketplace's back end): submits evaluations for any refurbisher, reads every
  evaluation and dashboard, reports returns and claims; grades with ``/v1/grade``.
- ``reviewer`` (quality staff): reads every evaluation and dashboard, approves or overrides
  justified grades.
- ``admin``: manages API keys (``/v1/keys``), nothing else.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass
from typing import Any

from sqlalchemy import delete, select

from serve.db import Database
from serve.models import ROLES, ApiKey, Refurbisher, UiSession, utcnow
from serve.problems import InvalidRefurbisherId, Unauthorized
from serve.ratelimit import RateLimiter as RateLimiter  # re-exported (tests, callers)
from vision.errors import PhotogradeError

KEY_RE = re.compile(r"^pgk_([0-9a-f]{12})_([A-Za-z0-9_-]{43})$")
REFURBISHER_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


class ApiKeyError(PhotogradeError):
    """An API key request that cannot be met (unknown role, refurbisher id, key id)."""


@dataclass(frozen=True)
class Principal:
    """Who is calling. ``role`` None: authentication is off and every route is open."""

    key_id: str | None
    role: str | None
    refurbisher_id: str | None = None
    name: str | None = None

    def has(self, *roles: str) -> bool:
        return self.role is None or self.role in roles

    def sees_refurbisher(self, refurbisher_id: str) -> bool:
        """A refurbisher key sees its own refurbisher only; other roles see all."""
        return self.role != "refurbisher" or self.refurbisher_id == refurbisher_id


OPEN = Principal(key_id=None, role=None)


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def check_refurbisher_id(value: str, field: str = "refurbisher_id") -> str:
    if not REFURBISHER_ID_RE.match(value):
        raise InvalidRefurbisherId(f"{field}: expected 1 to 64 letters, digits, '.', '_' or "
                                   f"'-', got {value!r}", field)
    return value


def key_record(row: ApiKey) -> dict[str, Any]:
    return {"id": row.id, "role": row.role, "refurbisher_id": row.refurbisher_id,
            "name": row.name, "created_at": row.created_at.isoformat(),
            "revoked_at": row.revoked_at.isoformat() if row.revoked_at else None}


def create_key(db: Database, role: str, refurbisher_id: str | None = None,
               name: str | None = None) -> tuple[dict[str, Any], str]:
    """Create a key; returns (its record, the key itself: shown once, never stored).

    A ``refurbisher`` key needs ``refurbisher_id`` (the refurbisher is created if new); other
    roles take none."""
    if role not in ROLES:
        raise ApiKeyError(f"role: unknown role {role!r}; expected one of {', '.join(ROLES)}")
    if role == "refurbisher" and not refurbisher_id:
        raise ApiKeyError("refurbisher: a refurbisher key needs --refurbisher ID")
    if role != "refurbisher" and refurbisher_id:
        raise ApiKeyError(f"refurbisher: a {role} key is not bound to a refurbisher")
    if refurbisher_id is not None and not REFURBISHER_ID_RE.match(refurbisher_id):
        raise ApiKeyError(f"refurbisher: invalid id {refurbisher_id!r} (1 to 64 letters, "
                          "digits, '.', '_' or '-')")
    key_id = secrets.token_hex(6)
    key = f"pgk_{key_id}_{secrets.token_urlsafe(32)}"
    with db.write() as s:
        if refurbisher_id and s.get(Refurbisher, refurbisher_id) is None:
            s.add(Refurbisher(id=refurbisher_id))
            s.flush()
        row = ApiKey(id=key_id, secret_sha256=hash_key(key), role=role,
                     refurbisher_id=refurbisher_id, name=name, created_at=utcnow())
        s.add(row)
    return key_record(row), key


def list_keys(db: Database) -> list[dict[str, Any]]:
    with db.read() as s:
        return [key_record(k) for k in s.scalars(select(ApiKey).order_by(ApiKey.created_at))]


def revoke_key(db: Database, key_id: str) -> dict[str, Any] | None:
    """Revoke a key (idempotent) and end its UI sessions; None when there is no such key."""
    with db.write() as s:
        row = s.get(ApiKey, key_id)
        if row is None:
            return None
        if row.revoked_at is None:
            row.revoked_at = utcnow()
        s.execute(delete(UiSession).where(UiSession.key_id == key_id))
        return key_record(row)


def key_from_headers(authorization: str | None, x_api_key: str | None) -> str | None:
    if x_api_key:
        return x_api_key.strip()
    if authorization:
        scheme, _, value = authorization.partition(" ")
        if scheme.lower() == "bearer" and value.strip():
            return value.strip()
    return None


def authenticate(db: Database, key: str | None) -> Principal:
    """The principal of a key; raises Unauthorized for a missing, unknown or revoked key."""
    headers = {"WWW-Authenticate": 'Bearer realm="photograde"'}
    if not key:
        raise Unauthorized("an API key is required: send 'Authorization: Bearer <key>' or "
                           "'X-API-Key: <key>'", headers=headers)
    match = KEY_RE.match(key)
    row = None
    if match:
        with db.read() as s:
            row = s.get(ApiKey, match.group(1))
    digest = hash_key(key)
    if row is None or not hmac.compare_digest(row.secret_sha256, digest):
        raise Unauthorized("unknown API key", headers=headers)
    if row.revoked_at is not None:
        raise Unauthorized(f"API key {row.id} was revoked", headers=headers)
    return Principal(row.id, row.role, row.refurbisher_id, row.name)
