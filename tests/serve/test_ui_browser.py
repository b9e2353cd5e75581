"""The web UI end to end in a real headless Chromium (Debian's, driven by Playwright) against a
real uvicorn server on loopback: login, the evaluation form, the three outcomes, accepting a
suggestion, a justification and its review, an inconclusive case in the review queue, both
dashboards, the demo banner, a bad upload.

With ``PHOTOGRADE_SCREENSHOTS=DIR`` set, full-page screenshots of the form, a suggestion and
both dashboards are written to ``DIR``."""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from photograde.demo import busiest_refurbisher
from photograde.seed import seed_history
from serve.app import create_app
from serve.auth import create_key
from serve.db import Database
from serve.photostore import PhotoStore
from serve.runtime import Grader
from serve.settings import Settings
from tests.support import INFO, ThreadServer, grade_at_gap, small_photos
from vision.conditions import CONDITIONS

CHROMIUM = Path("/usr/bin/chromium")
ARGS = ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run",
        "--host-resolver-rules=MAP *.photograde.test 127.0.0.1"]  # sibling hosts, one server
SHOTS = os.environ.get("PHOTOGRADE_SCREENSHOTS")

pytestmark = [pytest.mark.torch,  # a trained bundle
              pytest.mark.skipif(not CHROMIUM.exists(),
                                 reason=f"{CHROMIUM} is absent (apt-get install chromium)")]


@dataclass
class Site:
    url: str
    keys: dict[str, str]
    grades: list[str]
    photos: list[tuple[Path, Path]]
    grader: Grader
    used: int = 0

    def pair(self) -> tuple[Path, Path]:
        self.used += 1
        return self.photos[self.used - 1]

    def grade_for(self, pair: tuple[Path, Path], gap: int) -> str:
        """A refurbisher grade ``gap`` steps from the model's grade of these photos."""
        r = httpx.post(f"{self.url}/v1/grade", headers={"X-API-Key": self.keys["platform"]},
                       files={"front": pair[0].read_bytes(), "back": pair[1].read_bytes()},
                       data={"device": json.dumps(INFO)}, timeout=60)
        r.raise_for_status()
        return grade_at_gap(self.grades, r.json()["grade"], gap)


@pytest.fixture(scope="module")
def site(bundle, synth_dir, tmp_path_factory) -> Iterator[Site]:
    from training.synth.generate import generate

    tmp = tmp_path_factory.mktemp("ui")
    grader = Grader(bundle, threads=1)
    url = f"sqlite:///{tmp / 'photograde.db'}"
    db = Database(url)
    db.migrate()
    history = generate(60, tmp / "history", seed=5, size=200, progress=False)
    seed_history(db, PhotoStore(tmp / "photos"), history, grader=grader)
    keys = {"refurbisher": create_key(db, "refurbisher", busiest_refurbisher(db))[1],
            **{role: create_key(db, role)[1] for role in ("platform", "reviewer", "admin")}}
    db.dispose()
    photos = []
    for i, (front, back) in enumerate(small_photos(synth_dir, 8, size=320)):
        paths = (tmp / f"front-{i}.jpg", tmp / f"back-{i}.jpg")
        paths[0].write_bytes(front)
        paths[1].write_bytes(back)
        photos.append(paths)
    settings = Settings(bundle=bundle, threads=1, database_url=url, photo_dir=tmp / "photos",
                        rate_limit_per_minute=100_000, photo_check=False)
    with ThreadServer(create_app(settings, grader)) as server:
        yield Site(server.url, keys, list(grader.policy.grades), photos, grader)


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=str(CHROMIUM), args=ARGS)
        yield b
        b.close()


@pytest.fixture
def as_role(site, browser):
    """``as_role(role)``: a fresh browser page logged in with that role's key."""
    contexts = []

    def login(role: str):
        ctx = browser.new_context(viewport={"width": 1200, "height": 900})
        contexts.append(ctx)
        page = ctx.new_page()
        page.set_default_timeout(30_000)
        page.goto(site.url + "/ui/login")
        page.fill("#key", site.keys[role])
        page.click("button[type=submit]")
        page.wait_for_load_state()
        return page

    yield login
    for ctx in contexts:
        ctx.close()


def shot(page, name: str) -> None:
    if SHOTS:
        Path(SHOTS).mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(Path(SHOTS) / name), full_page=True)


def fill_form(page, site: Site, pair: tuple[Path, Path], grade: str) -> None:
    page.goto(site.url + "/ui/evaluations/new")
    page.fill("#brand", INFO["brand"])
    page.fill("#model", INFO["model"])
    page.fill("#storage_gb", str(INFO["storage_gb"]))
    page.check("#unlocked")
    page.select_option("#screen_condition", "light_scratches")
    page.select_option("#shell_condition", "light_wear")
    page.fill("#battery_health_pct", str(INFO["battery_health_pct"]))
    page.set_input_files("#front", str(pair[0]))
    page.set_input_files("#back", str(pair[1]))
    page.select_option("#refurbisher_grade", grade)


def submit(page, site: Site, gap: int, screenshot: str | None = None) -> str:
    """Fill and send the form with a grade ``gap`` steps from the model's; the outcome page's
    decision."""
    pair = site.pair()
    fill_form(page, site, pair, site.grade_for(pair, gap))
    if screenshot:
        page.wait_for_function("document.getElementById('back-preview').naturalWidth > 0")
        shot(page, screenshot)
    page.click("#submit")
    page.wait_for_url("**/ui/evaluations/*")
    return page.get_attribute("#outcome", "data-decision")


def loaded(page, selector: str) -> bool:
    return page.eval_on_selector(selector, "img => img.complete && img.naturalWidth > 0")


def test_login_required_and_bad_key(site, browser):
    page = browser.new_page()
    page.goto(site.url + "/")
    assert page.url.endswith("/ui/login")
    page.fill("#key", "pgk_000000000000_" + "x" * 43)
    page.click("button[type=submit]")
    assert "unknown API key" in page.inner_text(".error")
    page.close()


def test_validated_with_why(site, as_role):
    page = as_role("refurbisher")
    assert page.url.endswith("/ui/evaluations/new")
    assert page.locator("#demo-banner").count() == 0  # the test bundle is not a demo
    labels = page.inner_text("#evaluation-form")
    for label in ("Touch ID / Face ID", "Power on/off and charging", "Unlocked for all carriers",
                  "Front photo", "Back photo", "Overall grade", "Battery health"):
        assert label in labels
    assert submit(page, site, 0, screenshot="form.png") == "validated"
    assert "Grade validated" in page.inner_text("h1")
    why = page.inner_text("#why")
    for part in ("screen", "shell"):
        assert page.inner_text(f"#part-{part} .cond").replace(" ", "_") in CONDITIONS[part]
        page.wait_for_function(f"document.getElementById('heatmap-{part}').naturalWidth > 0")
        assert loaded(page, f"#heatmap-{part}")
    assert "All 10 functional checks pass" in why
    assert page.get_attribute("#outcome", "data-status") == "listed"


def test_suggestion_accepted(site, as_role):
    page = as_role("refurbisher")
    assert submit(page, site, 1) == "suggestion"
    text = page.inner_text("#suggestion")
    assert text.startswith("Your grade") and "suggested" in text
    page.wait_for_function("document.getElementById('heatmap-screen').naturalWidth > 0")
    shot(page, "outcome-suggestion.png")
    page.click("#accept")
    page.wait_for_selector("#resolution")
    assert "Suggestion accepted" in page.inner_text("#resolution")
    assert page.get_attribute("#outcome", "data-status") == "listed"


def test_justification_then_review(site, as_role):
    page = as_role("refurbisher")
    assert submit(page, site, 2) == "justification_required"
    assert "Justification required" in page.inner_text("h1")
    evaluation_url = page.url
    page.fill("#text", "too short")  # under the minimum: refused, text kept
    page.set_input_files("#photos", str(site.photos[0][1]))
    page.eval_on_selector("#text", "t => t.removeAttribute('minlength')")
    page.click("#send-justification")
    assert "at least" in page.inner_text("#form-error")
    assert page.input_value("#text") == "too short"
    page.fill("#text", "The back has one light scratch only, see the extra close-up photo.")
    page.set_input_files("#photos", str(site.photos[0][1]))
    page.click("#send-justification")
    page.wait_for_selector("#resolution")
    assert "Queued for review" in page.inner_text("#resolution")
    assert loaded(page, ".justification img")

    reviewer = as_role("reviewer")
    assert reviewer.url.endswith("/ui")
    reviewer.goto(site.url + "/ui/reviews")
    reviewer.click(f"a[href='{evaluation_url.removeprefix(site.url)}']")
    reviewer.click("#approve")
    reviewer.wait_for_selector("#resolution")
    assert "Approved" in reviewer.inner_text("#resolution")


def test_inconclusive_reaches_the_review_queue(site, as_role):
    policy = site.grader.policy
    site.grader.policy = dataclasses.replace(policy, min_confidence=0.999999)  # every grade
    try:
        page = as_role("refurbisher")
        assert submit(page, site, 0) == "inconclusive"
        assert "Inconclusive" in page.inner_text("h1")
        assert "threshold" in page.inner_text("#inconclusive-reason")
        assert page.locator("#send-justification").count() == 0
        assert page.locator("#accept").count() == 0
        assert "Queued for review" in page.inner_text("#resolution")
        evaluation_url = page.url

        reviewer = as_role("reviewer")
        reviewer.goto(site.url + "/ui/reviews")
        assert "threshold" in reviewer.inner_text("table")
        reviewer.click(f"a[href='{evaluation_url.removeprefix(site.url)}']")
        reviewer.click("#approve")
        reviewer.wait_for_selector("#resolution")
        assert "Approved" in reviewer.inner_text("#resolution")
    finally:
        site.grader.policy = policy


def test_bad_upload_keeps_values(site, as_role, tmp_path):
    page = as_role("refurbisher")
    pair = site.pair()
    fill_form(page, site, pair, site.grades[0])
    page.fill("#model", "Pixel 7 Pro")
    corrupt = tmp_path / "broken.jpg"
    corrupt.write_bytes(b"\xff\xd8\xff\xe0 this is not really a JPEG" * 10)
    page.set_input_files("#front", str(corrupt))
    page.click("#submit")
    page.wait_for_selector("#form-error")
    assert page.inner_text("#form-error").startswith("Front photo:")
    assert page.input_value("#model") == "Pixel 7 Pro"
    assert page.input_value("#battery_health_pct") == str(INFO["battery_health_pct"])
    assert page.eval_on_selector("#refurbisher_grade", "s => s.value") == site.grades[0]
    assert page.is_checked("#unlocked")


def test_dashboards(site, as_role):
    page = as_role("refurbisher")
    page.goto(site.url + "/ui/dashboard")
    assert page.locator("#refurbisher-dashboard").count() == 1
    assert page.inner_text("#kpi-validated").endswith("%")
    assert page.locator("svg.chart").count() >= 2
    assert page.locator("#corrections tbody tr").count() >= 1
    shot(page, "dashboard-refurbisher.png")
    page.goto(site.url + "/ui/platform")  # not a refurbisher's page
    assert "Not allowed" in page.inner_text("h1")

    platform = as_role("platform")
    platform.goto(site.url + "/ui/platform?days=30")
    assert platform.inner_text("#kpi-acceptance").endswith("%")
    assert platform.locator("#trust-quartiles").count() == 1
    assert platform.locator("svg.chart").count() == 3
    assert platform.locator("svg.chart rect").count() > 3
    shot(platform, "dashboard-platform.png")


def test_demo_banner(site, as_role):
    page = as_role("platform")
    grader = site.grader
    grader.manifest.demo = True  # as a bundle exported with demo=True
    try:
        page.goto(site.url + "/ui/platform")
        assert "DEMO MODEL" in page.inner_text("#demo-banner")
    finally:
        grader.manifest.demo = False


def test_a_form_posted_from_a_sibling_subdomain_is_refused(site, browser):
    """SameSite=Strict cookies still travel from a sibling subdomain (the same site): a page on
    evil.photograde.test posting to app.photograde.test carries the key; the origin check stops
    it, while the same form from photograde's own page goes through."""
    port = site.url.rsplit(":", 1)[1]
    app, evil = f"http://app.photograde.test:{port}", f"http://evil.photograde.test:{port}"
    ctx = browser.new_context()
    try:
        page = ctx.new_page()
        page.set_default_timeout(30_000)
        page.goto(app + "/ui/login")
        page.fill("#key", site.keys["refurbisher"])
        page.click("button[type=submit]")
        page.wait_for_url(app + "/ui/evaluations/new")  # signed in on the app's host
        form = (f'<form id="f" method="post" action="{app}/ui/evaluations">'
                '<input name="brand" value="Google"></form>'
                '<script>document.getElementById("f").submit()</script>')
        page.route(evil + "/**", lambda route: route.fulfill(content_type="text/html",
                                                             body=form))
        page.goto(evil + "/prize")
        page.wait_for_url(app + "/ui/evaluations")
        assert "Not allowed" in page.inner_text("h1")  # not the login page: the key travelled
        assert "sent from another site" in page.inner_text("[role=alert]")

        page.goto(app + "/ui/evaluations/new")  # the same post from the app's own page
        page.evaluate("""() => { const f = document.createElement('form'); f.method = 'post';
            f.action = '/ui/evaluations'; document.body.appendChild(f); f.submit(); }""")
        page.wait_for_selector("#form-error")  # reached the form's own validation
    finally:
        ctx.close()
