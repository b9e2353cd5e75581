"""The UI's sessions against a real server on loopback: the cookie holds a random session id
(never the key) with the __Host- prefix's attributes; a logged-out session, a revoked key's
session, an idle one and a too old one open no page; the plain-http development setting.

The cookies are sent by hand (a ``Cookie`` header): a client's cookie jar keeps a Secure
cookie away from http://127.0.0.1, which is the point of the attribute."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterator
from dataclasses import dataclass

import httpx
import pytest
from sqlalchemy import select, update

from serve.auth import create_key, revoke_key
from serve.models import UiSession
from serve.sessions import COOKIE_PLAIN, COOKIE_SECURE, session_hash
from tests.support import INFO, ThreadServer, role_keys, small_photos, workflow_app


@dataclass
class Site:
    url: str
    app: object
    keys: dict[str, str]
    evaluation: str

    @property
    def db(self):
        return self.app.state.workflow.db  # type: ignore[attr-defined]

    @property
    def settings(self):
        return self.app.state.workflow.settings  # type: ignore[attr-defined]


@pytest.fixture(scope="module")
def site(grader, synth_dir, tmp_path_factory) -> Iterator[Site]:
    tmp = tmp_path_factory.mktemp("sessions")
    app = workflow_app(f"sqlite:///{tmp / 's.db'}", tmp, grader)
    with ThreadServer(app) as server:
        db = app.state.workflow.db
        keys = role_keys(db)
        front, back = small_photos(synth_dir, 1)[0]
        r = httpx.post(server.url + "/v1/evaluations", headers={"X-API-Key": keys["platform"]},
                       files={"front": ("f.jpg", front), "back": ("b.jpg", back)},
                       data={"device": json.dumps(INFO), "refurbisher_grade": "good",
                             "refurbisher_id": "R001"}, timeout=60)
        assert r.status_code == 201, r.text
        yield Site(server.url, app, keys, r.json()["id"])


def sign_in(site: Site, role: str) -> tuple[str, dict[str, str]]:
    """Sign in with the role's key: (the session cookie's value, its attributes)."""
    r = httpx.post(site.url + "/ui/login", data={"key": site.keys[role]})
    assert (r.status_code, r.headers["location"]) == (303, "/ui"), r.text
    name = COOKIE_SECURE if site.settings.session_cookie_secure else COOKIE_PLAIN
    for header in r.headers.get_list("set-cookie"):
        first, *attrs = (part.strip() for part in header.split(";"))
        if first.startswith(name + "="):
            return first.split("=", 1)[1], {a.partition("=")[0].lower(): a.partition("=")[2]
                                           for a in attrs}
    raise AssertionError(f"no {name} cookie in {r.headers.get_list('set-cookie')}")


def get(site: Site, path: str, session: str, name: str = COOKIE_SECURE) -> httpx.Response:
    return httpx.get(site.url + path, headers={"Cookie": f"{name}={session}"}, timeout=60)


def opens(site: Site, path: str, session: str, name: str = COOKIE_SECURE) -> bool:
    """Whether the cookie opens ``path`` (else: the login page)."""
    r = get(site, path, session, name)
    if r.status_code == 303:
        assert r.headers["location"] == "/ui/login"
        return False
    assert r.status_code == 200, (path, r.status_code, r.text[:300])
    return True


def pages(site: Site) -> list[str]:
    ev = f"/ui/evaluations/{site.evaluation}"
    return ["/ui", "/ui/evaluations", "/ui/evaluations/new", ev, f"{ev}/photos/front",
            f"{ev}/heatmaps/screen.png", "/ui/dashboard?refurbisher=R001", "/ui/platform",
            "/ui/reviews"]


def stored(site: Site, session: str) -> UiSession | None:
    with site.db.read() as s:
        return s.get(UiSession, session_hash(session))


def test_the_cookie_is_a_random_session_id_never_the_key(site):
    key = site.keys["platform"]
    session, attrs = sign_in(site, "platform")
    assert key not in session and len(session) >= 43
    assert {"secure", "httponly"} <= set(attrs) and "domain" not in attrs
    assert (attrs["path"], attrs["samesite"].lower()) == ("/", "strict")
    row = stored(site, session)
    assert row is not None and row.key_id == key.split("_")[1]
    with site.db.read() as s:  # only the hash is stored
        assert session not in json.dumps([r.id_sha256 for r in s.scalars(select(UiSession))])
    assert all(opens(site, path, session) for path in pages(site))
    assert not opens(site, "/ui", key)  # the key itself is no session
    assert not opens(site, "/ui", key, name="photograde_key")  # nor the old key cookie


def test_a_logged_out_session_opens_no_page(site):
    session, _ = sign_in(site, "platform")
    assert opens(site, "/ui/evaluations", session)
    r = httpx.post(site.url + "/ui/logout", headers={"Cookie": f"{COOKIE_SECURE}={session}"})
    assert (r.status_code, r.headers["location"]) == (303, "/ui/login")
    assert f"{COOKIE_SECURE}=" in r.headers["set-cookie"] and "Secure" in r.headers["set-cookie"]
    assert stored(site, session) is None
    assert not any(opens(site, path, session) for path in pages(site))


def test_revoking_the_key_ends_its_sessions(site):
    db = site.db
    record, key = create_key(db, "reviewer", name="leaving")
    site.keys["leaving"] = key
    first, _ = sign_in(site, "leaving")
    second, _ = sign_in(site, "leaving")  # another browser
    other, _ = sign_in(site, "reviewer")
    assert opens(site, "/ui/reviews", first) and opens(site, "/ui/reviews", second)
    admin = create_key(db, "admin")[1]
    r = httpx.delete(f"{site.url}/v1/keys/{record['id']}", headers={"X-API-Key": admin})
    assert r.status_code == 200 and r.json()["revoked_at"]
    assert stored(site, first) is None and stored(site, second) is None
    assert not opens(site, "/ui/reviews", first) and not opens(site, "/ui/reviews", second)
    assert opens(site, "/ui/reviews", other)  # another key's session goes on
    # what `photograde keys revoke` calls, for a session already open
    record, site.keys["cli"] = create_key(db, "platform")
    session, _ = sign_in(site, "cli")
    revoke_key(db, record["id"])
    assert not opens(site, "/ui", session)


def age(site: Site, session: str, **columns: dt.timedelta) -> None:
    """Move the session's timestamps into the past by the given amounts."""
    row = stored(site, session)
    assert row is not None
    with site.db.write() as s:
        s.execute(update(UiSession).where(UiSession.id_sha256 == row.id_sha256).values(
            {c: getattr(row, c) - delta for c, delta in columns.items()}))


def test_idle_and_too_old_sessions_end(site):
    settings = site.settings
    assert (settings.session_idle_minutes, settings.session_max_hours) == (30, 12)  # defaults
    settings.session_idle_minutes, settings.session_max_hours = 1, 1
    try:
        session, attrs = sign_in(site, "refurbisher")
        assert attrs["max-age"] == "3600"  # the browser drops it too
        age(site, session, last_seen_at=dt.timedelta(seconds=50))
        aged = stored(site, session)
        assert aged and opens(site, "/ui/evaluations", session)  # active again: seen now
        row = stored(site, session)
        assert row and row.last_seen_at >= aged.last_seen_at + dt.timedelta(seconds=50)
        age(site, session, last_seen_at=dt.timedelta(seconds=61))  # a minute idle
        assert not opens(site, "/ui/evaluations", session)
        assert stored(site, session) is None

        session, _ = sign_in(site, "refurbisher")  # active, but signed in over an hour ago
        age(site, session, created_at=dt.timedelta(minutes=61))
        assert not opens(site, "/ui/evaluations", session)
    finally:
        settings.session_idle_minutes, settings.session_max_hours = 30, 12


def test_plain_http_development_setting(site):
    settings = site.settings
    login = httpx.get(site.url + "/ui/login").text
    assert 'id="cookie-hint"' not in login  # Secure cookies are kept from loopback
    settings.session_cookie_secure = False
    try:
        session, attrs = sign_in(site, "platform")
        assert "secure" not in attrs and "httponly" in attrs
        assert opens(site, "/ui", session, name=COOKIE_PLAIN)
        assert not opens(site, "/ui", session, name=COOKIE_SECURE)
    finally:
        settings.session_cookie_secure = True
    # reached as another host over plain http: the page says why signing in may not hold
    other = httpx.get(site.url + "/ui/login", headers={"Host": "photograde.example"}).text
    assert 'id="cookie-hint"' in other and "PHOTOGRADE_SESSION_COOKIE_SECURE" in other
