"""The UI's sessions: signing in with an API key opens a session, and only the session's random
id travels in the cookie (the key never does). Only the sha256 of that id is stored
(``ui_sessions``), with the key it was opened with.

A session ends on logout, when its key is revoked (:func:`serve.auth.revoke_key` deletes its
sessions; a revoked key's session is refused anyway), after ``session_idle_minutes`` without a
request and ``session_max_hours`` after signing in. ``last_seen_at`` is written at most every
:attr:`Lifetime.touch` (a tenth of the idle timeout, at most a minute), not on every request.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import secrets
from dataclasses import dataclass

from sqlalchemy import delete, or_, update

from serve.auth import Principal
from serve.db import Database
from serve.models import ApiKey, UiSession, utcnow
from serve.problems import Unauthorized
from serve.settings import Settings

#: The cookie's name: ``__Host-`` makes browsers keep it only when it is Secure, for this host
#: alone (no Domain) and the whole site (Path=/). Without ``session_cookie_secure`` (plain-http
#: development), a plain name: a ``__Host-`` cookie without Secure is refused by browsers.
COOKIE_SECURE = "__Host-photograde_session"
COOKIE_PLAIN = "photograde_session"
#: The cookie of earlier versions, which held the API key itself: removed at sign-in.
LEGACY_COOKIE = "photograde_key"


def cookie_name(settings: Settings) -> str:
    return COOKIE_SECURE if settings.session_cookie_secure else COOKIE_PLAIN


@dataclass(frozen=True)
class Lifetime:
    """How long a session lasts: ``idle`` without a request, ``absolute`` after sign-in."""

    idle: dt.timedelta
    absolute: dt.timedelta

    @classmethod
    def of(cls, settings: Settings) -> Lifetime:
        return cls(dt.timedelta(minutes=settings.session_idle_minutes),
                   dt.timedelta(hours=settings.session_max_hours))

    @property
    def touch(self) -> dt.timedelta:
        """How stale ``last_seen_at`` may get before a request rewrites it."""
        return min(dt.timedelta(minutes=1), self.idle / 10)


def session_hash(session_id: str) -> str:
    return hashlib.sha256(session_id.encode()).hexdigest()


def open_session(db: Database, key_id: str, life: Lifetime) -> str:
    """A new session for the key ``key_id``; returns its id (the cookie's value, not stored).
    Expired sessions, anyone's, are deleted on the way."""
    session_id = secrets.token_urlsafe(32)
    now = utcnow()
    with db.write() as s:
        s.execute(delete(UiSession).where(or_(UiSession.last_seen_at < now - life.idle,
                                              UiSession.created_at < now - life.absolute)))
        s.add(UiSession(id_sha256=session_hash(session_id), key_id=key_id, created_at=now,
                        last_seen_at=now))
    return session_id


def session_principal(db: Database, session_id: str, life: Lifetime) -> Principal:
    """The principal of a live session (its key's); Unauthorized when there is no such
    session, or it has ended (idle, too old, its key revoked: then it is deleted)."""
    digest = session_hash(session_id)
    now = utcnow()
    with db.read() as s:
        row = s.get(UiSession, digest)
        key = s.get(ApiKey, row.key_id) if row is not None else None
    if row is None or key is None:
        raise Unauthorized("no such session: sign in")
    ended = (key.revoked_at is not None or now - row.last_seen_at > life.idle
             or now - row.created_at > life.absolute)
    if ended or now - row.last_seen_at >= life.touch:
        with db.write() as s:
            if ended:
                s.execute(delete(UiSession).where(UiSession.id_sha256 == digest))
            else:
                s.execute(update(UiSession).where(UiSession.id_sha256 == digest)
                          .values(last_seen_at=now))
    if ended:
        raise Unauthorized("the session has ended: sign in again")
    return Principal(key.id, key.role, key.refurbisher_id, key.name)


def close_session(db: Database, session_id: str) -> None:
    """Logout: the session is deleted (its cookie no longer opens anything)."""
    with db.write() as s:
        s.execute(delete(UiSession).where(UiSession.id_sha256 == session_hash(session_id)))
