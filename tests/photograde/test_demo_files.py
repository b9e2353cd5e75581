"""``photograde demo`` out of the box: signing in works over its plain http (a cookie client
that, like a browser, keeps Secure cookies away from plain http still gets a session), and what
it writes is private: the keys file (even one left world-readable by an older version), the
database, the photo store."""

from __future__ import annotations

import httpx

from photograde.demo import demo_keys, demo_settings
from serve.app import create_app
from serve.db import Database
from serve.photostore import LocalPhotoStore
from serve.settings import Settings
from tests.support import ThreadServer


def test_the_demo_signs_in_over_plain_http_and_keeps_its_files_private(tmp_path, grader,
                                                                         synth_dir):
    url = f"sqlite:///{tmp_path / 'photograde.db'}"
    settings = demo_settings(Settings(bundle=grader.dir, threads=1, database_url=url,
                                      photo_dir=tmp_path / "photos"), "127.0.0.1", 8000)
    assert not settings.session_cookie_secure and Settings().session_cookie_secure
    db = Database(url)
    db.migrate()
    keys_file = tmp_path / "demo-keys.json"
    keys_file.write_text("{}")
    keys_file.chmod(0o644)  # as an older version may have left it
    keys = demo_keys(db, keys_file)
    db.dispose()
    assert keys_file.stat().st_mode & 0o777 == 0o600
    assert (tmp_path / "photograde.db").stat().st_mode & 0o777 == 0o600
    LocalPhotoStore(settings.photo_dir).put(next(synth_dir.glob("images/*_front.jpg")).read_bytes())
    assert settings.photo_dir.stat().st_mode & 0o777 == 0o700  # the store's root too

    with (ThreadServer(create_app(settings, grader)) as server,
          httpx.Client(base_url=server.url, follow_redirects=True) as browser):
        r = browser.post("/ui/login", data={"key": keys["platform"]})
        assert (r.status_code, r.url.path) == (200, "/ui"), r.text[:300]
        assert "Log out" in r.text
        assert keys["platform"] not in str(browser.cookies.jar)
        browser.post("/ui/logout")
        assert browser.get("/ui").url.path == "/ui/login"
