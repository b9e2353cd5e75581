"""The web UI end to end in a real headless Chromium (Debian's, driven by Playwright) against a
real uvicorn server on loopback: login, the evaluation form, the three outcomes, accepting a
suggestion, a justification and its review, an inconclusive case in the review queue, both
dashboards (with the photo check's), the demo banner, a bad upload, a photo the photo check
refuses (too dark) explained beside it at phone width, a form from a sibling subdomain refused,
the Content-Security-Policy refusing an injected script, /docs under its own policy. (The wrong
side, which needs the shipped model's photo check, is in test_ui_photo_check.py.)

The server keeps the default session cookie (``__Host-``, Secure) on http://127.0.0.1:
Chromium keeps a Secure cookie from a loopback address as from https.

With ``PHOTOGRADE_SCREENSHOTS=DIR`` set, full-page screenshots of the form, a suggestion and
both dashboards are written to ``DIR``."""

from __future__ import annotations

import dataclasses
import json
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
from serve.photostore import LocalPhotoStore
from serve.runtime import Grader
from serve.settings import Settings
from serve.ui.pages import LABELS
from tests.serve.ui_support import (
    BROWSER_TESTS,
    black_jpeg,
    chromium,
    fill_form,
    image_loaded,
    refused,
    shot,
    sign_in,
    wait_image,
    wait_until,
)
from tests.support import INFO, ThreadServer, grade_at_gap, small_photos
from vision.conditions import CONDITIONS
from vision.photocheck import RejectReason

pytestmark = BROWSER_TESTS


@dataclass
class Site:
    url: str
    keys: dict[str, str]
    grades: list[str]
    photos: list[tuple[Path, Path]]
    grader: Grader
    settings: Settings
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
    seed_history(db, LocalPhotoStore(tmp / "photos"), history, grader=grader)
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
                        rate_limit_per_minute=100_000, photo_check=False)  # soft, small photos
    with ThreadServer(create_app(settings, grader)) as server:
        yield Site(server.url, keys, list(grader.policy.grades), photos, grader, settings)


@pytest.fixture(scope="module")
def browser():
    yield from chromium()


@pytest.fixture
def as_role(site, browser):
    """``as_role(role, width=1200)``: a fresh browser page logged in with that role's key; at
    the end, no page had anything refused by the Content-Security-Policy."""
    contexts, refused = [], []

    def login(role: str, width: int = 1200):
        ctx, page = sign_in(browser, site.url, site.keys[role], width)
        contexts.append(ctx)
        refused.append(csp_violations(page))
        return page

    yield login
    for ctx in contexts:
        ctx.close()
    assert not any(refused), refused


def submit(page, site: Site, gap: int, screenshot: str | None = None) -> str:
    """Fill and send the form with a grade ``gap`` steps from the model's; the outcome page's
    decision."""
    pair = site.pair()
    fill_form(page, site.url, pair, site.grade_for(pair, gap))
    if screenshot:
        wait_image(page, "#back-preview")
        shot(page, screenshot)
    page.click("#submit")
    page.wait_for_url("**/ui/evaluations/*")
    return page.get_attribute("#outcome", "data-decision")


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
        wait_image(page, f"#heatmap-{part}")
        assert image_loaded(page, f"#heatmap-{part}")
    assert "All 10 functional checks pass" in why
    assert page.get_attribute("#outcome", "data-status") == "listed"


def test_suggestion_accepted(site, as_role):
    page = as_role("refurbisher")
    assert submit(page, site, 1) == "suggestion"
    text = page.inner_text("#suggestion")
    assert text.startswith("Your grade") and "suggested" in text
    wait_image(page, "#heatmap-screen")
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
    wait_image(page, ".justification img")  # the page is there before its photo has loaded
    assert image_loaded(page, ".justification img")

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
    fill_form(page, site.url, pair, site.grades[0])
    page.fill("#model", "Pixel 7 Pro")
    corrupt = tmp_path / "broken.jpg"
    corrupt.write_bytes(b"\xff\xd8\xff\xe0 this is not really a JPEG" * 10)
    page.set_input_files("#front", str(corrupt))
    page.click("#submit")
    page.wait_for_selector("#form-error")
    assert page.inner_text("#form-error").startswith("Front photo:")
    assert page.get_attribute("#front", "aria-describedby") == "front-problem"
    assert page.eval_on_selector("#back", "i => i.files.length") == 1  # kept
    assert page.input_value("#model") == "Pixel 7 Pro"
    assert page.input_value("#battery_health_pct") == str(INFO["battery_health_pct"])
    assert page.eval_on_selector("#refurbisher_grade", "s => s.value") == site.grades[0]
    assert page.is_checked("#unlocked")


def test_a_dark_photo_is_explained_beside_it_at_phone_width(site, as_role, tmp_path):
    """A black front on a 390 px wide page: too_dark's retake advice right above the front
    input, on screen; every typed value and the back photo kept; with a new front (the check
    off again: the synthetic photos are soft) the same form goes through."""
    page = as_role("refurbisher", width=390)
    pair = site.pair()
    grade = site.grade_for(pair, 0)
    fill_form(page, site.url, pair, grade)
    page.fill("#model", "Pixel 7 Pro")
    page.uncheck("#check_wifi")
    black = tmp_path / "black.jpg"
    black.write_bytes(black_jpeg())
    page.set_input_files("#front", str(black))
    site.settings.photo_check = True  # the front is checked first: the back's softness is moot
    try:
        page.click("#submit")
        box = refused(page, "front", RejectReason.TOO_DARK).bounding_box()
    finally:
        site.settings.photo_check = False
    field = page.locator("#front").bounding_box()
    assert box and field and 0 <= field["y"] - (box["y"] + box["height"]) <= 24
    assert box["x"] >= 0 and box["x"] + box["width"] <= 390
    assert page.evaluate("document.documentElement.scrollWidth") <= 390  # no sideways scroll
    shot(page, "form-photo-refused.png")
    assert page.input_value("#brand") == INFO["brand"]
    assert page.input_value("#model") == "Pixel 7 Pro"
    assert page.input_value("#storage_gb") == str(INFO["storage_gb"])
    assert page.input_value("#battery_health_pct") == str(INFO["battery_health_pct"])
    assert page.input_value("#screen_condition") == "light_scratches"
    assert page.input_value("#shell_condition") == "light_wear"
    assert page.input_value("#refurbisher_grade") == grade
    assert page.is_checked("#unlocked") and page.is_checked("#check_biometrics")
    assert not page.is_checked("#check_wifi")
    assert page.is_visible("#back-preview")
    page.set_input_files("#front", str(pair[0]))
    page.click("#submit")
    assert page.get_attribute("#outcome", "data-decision") in LABELS


def refuse_a_dark_photo(site: Site) -> None:
    """One photo refused too_dark by ``POST /v1/grade`` (recorded for the platform)."""
    site.settings.photo_check = True
    try:
        r = httpx.post(f"{site.url}/v1/grade", headers={"X-API-Key": site.keys["platform"]},
                       files={"front": black_jpeg(), "back": site.photos[0][1].read_bytes()},
                       data={"device": json.dumps(INFO)}, timeout=60)
    finally:
        site.settings.photo_check = False
    assert (r.status_code, r.json()["reason"]) == (422, "too_dark")


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

    refuse_a_dark_photo(site)
    platform = as_role("platform")
    platform.goto(site.url + "/ui/platform?days=30")
    assert platform.inner_text("#kpi-acceptance").endswith("%")
    assert platform.locator("#trust-quartiles").count() == 1
    assert platform.locator("svg.chart").count() == 6
    assert platform.locator("svg.chart rect").count() > 3
    assert int(platform.inner_text("#kpi-refused")) >= 1
    assert int(platform.inner_text("#kpi-inconclusive-count")) >= 0
    assert "too dark" in platform.inner_text("#photo-rejections")  # by reason, ...
    assert platform.locator("#photo-rejections-weekly svg rect title",  # ... and per week
                            has_text="too dark").count() >= 1
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
    site.settings.session_cookie_secure = False  # plain http on a host that is not loopback
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
        site.settings.session_cookie_secure = True
        ctx.close()


def csp_violations(page) -> list[str]:
    """The page's console messages about its Content-Security-Policy, from now on."""
    seen: list[str] = []
    page.on("console", lambda m: seen.append(m.text) if CSP_MESSAGE in m.text else None)
    return seen


CSP_MESSAGE = "Content Security Policy"


def test_the_csp_blocks_an_injected_inline_script(site, browser):
    """Markup that got into a page (as an injection would) runs no script: neither a script
    element nor an event handler attribute, each refused with a CSP violation on the console;
    the page's own script (app.js) does run."""
    ctx, page = sign_in(browser, site.url, site.keys["platform"])  # not as_role: refusals here
    response = page.goto(site.url + "/ui/platform")
    assert "script-src 'self'" in response.headers["content-security-policy"]
    with page.expect_console_message(lambda m: CSP_MESSAGE in m.text) as message:
        page.evaluate("""() => { const s = document.createElement('script');
            s.textContent = 'window.injected = "script"'; document.body.appendChild(s); }""")
    assert "script-src 'self'" in message.value.text
    with page.expect_console_message(lambda m: CSP_MESSAGE in m.text) as message:
        page.evaluate("""() => document.body.insertAdjacentHTML('beforeend',
            '<img src="data:," onerror="window.injected = 1">')""")
    assert "inline event handler" in message.value.text
    assert page.evaluate("() => window.injected === undefined")
    page.select_option("#days", "7")  # app.js sends the window's form when it changes
    page.wait_for_url("**/ui/platform?days=7")
    ctx.close()


def test_the_docs_start_under_the_csp(site, browser):
    """/docs, under the same strict policy: Swagger UI's scripts (local files, its start-up
    included) run and nothing is refused."""
    page = browser.new_page()
    try:
        seen = csp_violations(page)
        response = page.goto(site.url + "/docs")
        assert "script-src 'self'" in response.headers["content-security-policy"]
        page.wait_for_selector("#swagger-ui .swagger-ui")
        wait_until(page, "() => typeof window.ui === 'object'")
        page.wait_for_selector(".opblock")  # the API itself, read from /openapi.json
        assert "Unable to render" not in page.content()
        assert seen == []
    finally:
        page.close()


def test_docs_and_redoc_render_with_the_network_off(site, browser):
    """Every request that does not go to the server is refused: both pages still render the
    API's operations."""
    page = browser.new_page()
    outside: list[str] = []

    def local_only(route):
        if route.request.url.startswith(site.url):
            return route.continue_()
        outside.append(route.request.url)
        return route.abort()

    try:
        page.route("**/*", local_only)
        page.goto(site.url + "/docs")
        page.wait_for_selector(".opblock")
        assert page.locator(".opblock").count() >= 10
        page.goto(site.url + "/redoc")
        page.wait_for_selector("[data-section-id]")
        assert "/v1/grade" in page.inner_text("body")
        assert outside == []
    finally:
        page.close()
