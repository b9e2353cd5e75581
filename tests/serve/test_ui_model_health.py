"""The "Model health" page in a real headless Chromium against a real server: a seeded history,
a few devices graded through the service (the drift window learns its reference), the page's
figures as the JSON route gives them, its window and buckets, and who may see it.

With ``PHOTOGRADE_SCREENSHOTS=DIR`` set, a full-page screenshot is written to ``DIR``."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass

import httpx
import pytest

from photograde.demo import busiest_refurbisher
from photograde.seed import seed_history
from serve.app import create_app
from serve.db import Database
from serve.photostore import LocalPhotoStore
from serve.runtime import Grader
from serve.settings import Settings
from tests.serve.ui_support import BROWSER_TESTS, chromium, shot, sign_in
from tests.support import INFO, ThreadServer, role_keys, small_photos

pytestmark = BROWSER_TESTS


@dataclass
class Site:
    url: str
    keys: dict[str, str]
    version: str


@pytest.fixture(scope="module")
def site(bundle, synth_dir, tmp_path_factory) -> Iterator[Site]:
    from training.synth.generate import generate

    tmp = tmp_path_factory.mktemp("health")
    grader = Grader(bundle, threads=1)
    url = f"sqlite:///{tmp / 'photograde.db'}"
    db = Database(url)
    db.migrate()
    seed_history(db, LocalPhotoStore(tmp / "photos"), generate(40, tmp / "h", seed=5, size=200,
                                                          progress=False), grader=grader)
    keys = role_keys(db, busiest_refurbisher(db))
    db.dispose()
    settings = Settings(bundle=bundle, threads=1, database_url=url, photo_dir=tmp / "photos",
                        rate_limit_per_minute=100_000, photo_check=False, drift_window=4,
                        drift_min_devices=2)
    with ThreadServer(create_app(settings, grader)) as server:
        for front, back in small_photos(synth_dir, 4):  # the window's learned reference
            r = httpx.post(f"{server.url}/v1/grade", headers={"X-API-Key": keys["platform"]},
                           files={"front": front, "back": back},
                           data={"device": json.dumps(INFO)}, timeout=60)
            r.raise_for_status()
        yield Site(server.url, keys, grader.manifest.bundle_version)


@pytest.fixture(scope="module")
def browser():
    yield from chromium()


def test_the_model_health_page_shows_each_version_and_the_drift_window(site, browser):
    api = httpx.get(f"{site.url}/v1/dashboard/model-health?days=90&bucket=day",
                    headers={"X-API-Key": site.keys["platform"]}).json()
    ctx, page = sign_in(browser, site.url, site.keys["platform"])
    try:
        page.goto(site.url + "/ui")
        page.click("header nav >> text=Model health")
        page.wait_for_url("**/ui/model-health")
        assert page.inner_text("#serving-version") == site.version
        assert page.inner_text("#kpi-psi") == "0.000"  # the window is its own reference
        assert "the first 4 grades served became it" in page.inner_text("#reference-source")
        page.select_option("#days", "90")
        page.select_option("#bucket", "day")
        page.click("#model-health button[type=submit]")
        page.wait_for_url("**/ui/model-health?days=90&bucket=day")
        row = page.locator(f'#versions tr[data-version="{site.version}"] td')
        version = api["versions"][0]
        assert row.nth(2).inner_text() == str(version["evaluations"]) and version["evaluations"]
        assert row.nth(5).inner_text() == str(version["outcomes"]["resolved"])
        for chart in ("#confidence", "#inconclusive", "#disagreement", "#grade-distribution",
                      "#photo-refusals"):
            assert page.locator(f"{chart} svg.chart").count() >= 1, chart
        title = f"Predicted grades, bundle {site.version}"
        assert page.locator(f'#grade-distribution svg[aria-label="{title}"] rect').count() > 0
        # nothing the strict Content-Security-Policy refuses: no inline script or handler
        assert page.locator("script:not([src]), [onchange], [onclick]").count() == 0
        shot(page, "model-health.png")
    finally:
        ctx.close()


@pytest.mark.parametrize(("role", "status"), [("reviewer", 200), ("refurbisher", 403)])
def test_who_sees_the_model_health_page(site, browser, role, status):
    ctx, page = sign_in(browser, site.url, site.keys[role])
    try:
        assert page.goto(site.url + "/ui/model-health").status == status
        assert (page.locator("header nav >> text=Model health").count() == 1) == (status == 200)
    finally:
        ctx.close()
