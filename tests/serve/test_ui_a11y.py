"""Every UI page in a real headless Chromium against a real server: no serious or critical
accessibility violation by axe-core, and nothing wider than a 390 px phone screen.

The pages: login, home, the evaluation form, the four outcomes as the refurbisher sees them
(validated, a suggestion, a justification asked, inconclusive), the list, the refurbisher
dashboard (and the platform's choice of one), the platform dashboard, the model-health page,
the review queue, a case as the reviewer decides it, the error page, the list filtered and
paged and with a refused filter, the reviewer's home; and in French (its
longer words) the form, a suggestion, the platform dashboard and the reviewer's case.

axe-core (tests/serve/vendor/axe.min.js, MPL-2.0, licence beside it) is test tooling only,
never served by the app: it is injected into the page under test, in a browser context that
bypasses the Content-Security-Policy (which refuses any script but the app's own) so the tag
can run. The width check keeps the policy, in the same ``as_role`` pages as the other tests."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from tests.serve.test_ui_browser import as_role, browser, site, submit  # noqa: F401 (fixtures)
from tests.serve.ui_support import BROWSER_TESTS, shot, sign_in

pytestmark = BROWSER_TESTS

AXE = Path(__file__).parent / "vendor" / "axe.min.js"
WIDTH = 390
#: (name, role (None: not signed in), path or the name of an evaluation made for the tests)
PAGES = [
    ("login", None, "/ui/login"),
    ("home", "platform", "/ui"),
    ("form", "refurbisher", "/ui/evaluations/new"),
    ("validated", "refurbisher", "validated"),
    ("suggestion", "refurbisher", "suggestion"),
    ("justification", "refurbisher", "justification_required"),
    ("inconclusive", "refurbisher", "inconclusive"),
    ("list", "platform", "/ui/evaluations"),
    ("refurbisher-dashboard", "refurbisher", "/ui/dashboard"),
    ("choose-refurbisher", "platform", "/ui/dashboard"),
    ("platform-dashboard", "platform", "/ui/platform"),
    ("model-health", "platform", "/ui/model-health"),
    ("review-queue", "reviewer", "/ui/reviews"),
    ("review-case", "reviewer", "review-case"),
    ("error", "refurbisher", "/ui/evaluations/no-such-evaluation"),
    ("list-filtered", "platform", "/ui/evaluations?decision=suggestion&limit=1"),
    ("list-bad-filter", "platform", "/ui/evaluations?from=0413-05-14"),
    ("home-reviewer", "reviewer", "/ui"),
    ("form-fr", "refurbisher", "/ui/evaluations/new?lang=fr"),  # French: longer words
    ("suggestion-fr", "refurbisher", "suggestion?lang=fr"),
    ("platform-dashboard-fr", "platform", "/ui/platform?lang=fr"),
    ("review-case-fr", "reviewer", "review-case?lang=fr"),
]
IDS = [name for name, _, _ in PAGES]
#: What a page must show to be the one meant (its forms, checked too).
SHOWS = {"login": "#key", "form": "#front", "suggestion": "#accept", "form-fr": "#front",
         "suggestion-fr": "#accept", "review-case-fr": "#approve",
         "list-filtered": "#next-page", "list-bad-filter": "#filter-error",
         "justification": "#send-justification", "inconclusive": "#inconclusive",
         "review-case": "#approve", "error": "main .error"}


@pytest.fixture(scope="module")
def made(site, browser) -> dict[str, str]:  # noqa: F811
    """The path of an evaluation per outcome, sent through the form by the refurbisher, and
    of a case in the review queue."""
    ctx, page = sign_in(browser, site.url, site.keys["refurbisher"])
    out = {}
    for gap in (0, 1, 2):
        decision = submit(page, site, gap)
        out[decision] = page.url.removeprefix(site.url)
    policy = site.grader.policy
    site.grader.policy = dataclasses.replace(policy, min_confidence=0.999999)  # every grade
    try:
        assert submit(page, site, 0) == "inconclusive"
        out["inconclusive"] = page.url.removeprefix(site.url)
    finally:
        site.grader.policy = policy
    ctx.close()
    ctx, page = sign_in(browser, site.url, site.keys["reviewer"])
    page.goto(site.url + "/ui/reviews")
    out["review-case"] = page.get_attribute("main table tbody a", "href")
    ctx.close()
    assert set(out) >= {"validated", "suggestion", "justification_required"}, out
    return out


def open_page(page, site, made: dict[str, str], where: str) -> None:  # noqa: F811 (site)
    name, _, query = where.partition("?")
    page.goto(site.url + made.get(name, name) + (f"?{query}" if query else ""))
    page.wait_for_load_state()
    assert page.locator("main h1").count() == 1


def axe_problems(page) -> list[str]:
    """axe-core's serious and critical violations on ``page``, one line each."""
    page.add_script_tag(path=str(AXE))
    found = page.evaluate("""async () => {
        const r = await axe.run(document, {resultTypes: ['violations']});
        return r.violations.filter(v => v.impact === 'serious' || v.impact === 'critical')
          .map(v => `${v.impact} ${v.id}: ${v.help} — ` +
               v.nodes.slice(0, 5).map(n => n.target.join(' ')).join(' | '));
    }""")
    return list(found)


@pytest.mark.parametrize(("name", "role", "where"), PAGES, ids=IDS)
def test_no_serious_accessibility_violation(site, browser, made, name, role, where):  # noqa: F811
    if role is None:
        ctx = browser.new_context(viewport={"width": 1200, "height": 900}, bypass_csp=True)
        page = ctx.new_page()
    else:
        ctx, page = sign_in(browser, site.url, site.keys[role], bypass_csp=True)
    try:
        open_page(page, site, made, where)
        if name in SHOWS:
            assert page.locator(SHOWS[name]).count() == 1
        assert axe_problems(page) == []
    finally:
        ctx.close()


def overflow(page) -> tuple[int, list[str]]:
    """The page's scroll width and what sticks out past the viewport's right edge."""
    return page.evaluate("""() => [document.documentElement.scrollWidth,
        [...document.querySelectorAll('body *')]
          .filter(e => e.getBoundingClientRect().right > window.innerWidth + 1)
          .slice(0, 8).map(e => e.tagName.toLowerCase() + (e.id ? '#' + e.id : '')
                                + (e.className && e.className.baseVal === undefined
                                   ? '.' + e.className : ''))]""")


@pytest.mark.parametrize(("name", "role", "where"), PAGES, ids=IDS)
def test_no_horizontal_overflow_on_a_phone(site, browser, as_role, made,  # noqa: F811
                                           name, role, where):
    if role is None:
        ctx = browser.new_context(viewport={"width": WIDTH, "height": 800})
        page = ctx.new_page()
    else:
        ctx, page = None, as_role(role, width=WIDTH)
    try:
        open_page(page, site, made, where)
        shot(page, f"phone-{name}.png")
        width, sticking_out = overflow(page)
        assert width <= WIDTH + 1, sticking_out
    finally:
        if ctx:
            ctx.close()
