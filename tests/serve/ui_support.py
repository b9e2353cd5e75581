"""What the browser tests share: Chromium (Debian's, driven by Playwright), signing in,
filling the evaluation form, screenshots, and what a refused photo looks like on the form."""

from __future__ import annotations

import io
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from PIL import Image

from tests.support import INFO
from vision.photocheck import PhotoCheckConfig, RejectReason, Slot, retake_advice

CHROMIUM = Path("/usr/bin/chromium")
ARGS = ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run",
        "--host-resolver-rules=MAP *.photograde.test 127.0.0.1"]  # sibling hosts, one server
SHOTS = os.environ.get("PHOTOGRADE_SCREENSHOTS")
#: The marks of a browser test module (a trained bundle, Chromium).
BROWSER_TESTS = [pytest.mark.torch,
                 pytest.mark.skipif(not CHROMIUM.exists(),
                                    reason=f"{CHROMIUM} is absent (apt-get install chromium)")]


def chromium() -> Iterator:
    """A headless Chromium for a module-scoped ``browser`` fixture."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=str(CHROMIUM), args=ARGS)
        yield b
        b.close()


def sign_in(browser, url: str, key: str, width: int = 1200, **options):
    """A fresh browser context ``width`` px wide (Playwright's context ``options`` too), signed
    in with ``key``: (context, page)."""
    ctx = browser.new_context(viewport={"width": width, "height": 900}, **options)
    page = ctx.new_page()
    page.set_default_timeout(30_000)
    page.goto(url + "/ui/login")
    page.fill("#key", key)
    page.click("button[type=submit]")
    page.wait_for_load_state()
    return ctx, page


@contextmanager
def signed_in(browser, url: str, key: str, **options) -> Iterator:
    """:func:`sign_in`'s page, its context closed at the end."""
    ctx, page = sign_in(browser, url, key, **options)
    try:
        yield page
    finally:
        ctx.close()


def shot(page, name: str) -> None:
    """With ``PHOTOGRADE_SCREENSHOTS=DIR``: a full-page screenshot as ``DIR/name``."""
    if SHOTS:
        Path(SHOTS).mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(Path(SHOTS) / name), full_page=True)


def wait_until(page, function: str, arg=None, timeout_s: float = 30) -> None:
    """Wait until the page function ``function`` (JavaScript source) returns true for ``arg``.
    Not ``page.wait_for_function``: when its first check fails, its polling calls ``eval``
    inside the page, which the UI's Content-Security-Policy (no 'unsafe-eval') refuses;
    evaluating through the browser's protocol, as here, is not affected."""
    deadline = time.monotonic() + timeout_s
    while not page.evaluate(function, arg):
        assert time.monotonic() < deadline, f"{function} ({arg}): false after {timeout_s} s"
        page.wait_for_timeout(50)


#: Whether an <img> element has loaded pixels (JavaScript, one element as argument).
IMAGE_LOADED = "img => !!img && img.complete && img.naturalWidth > 0"


def image_loaded(page, selector: str) -> bool:
    """Whether the image ``selector`` has loaded pixels."""
    return page.eval_on_selector(selector, IMAGE_LOADED)


def wait_image(page, selector: str) -> None:
    """Wait until the image ``selector`` has loaded pixels (:func:`wait_until`)."""
    wait_until(page, f"s => ({IMAGE_LOADED})(document.querySelector(s))", selector)


def fill_form(page, url: str, pair: tuple[Path, Path], grade: str) -> None:
    """The evaluation form filled with :data:`INFO`, these photos and ``grade``."""
    page.goto(url + "/ui/evaluations/new")
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


def black_jpeg() -> bytes:
    """A 400x300 black JPEG: refused ``too_dark``."""
    buf = io.BytesIO()
    Image.new("RGB", (400, 300)).save(buf, "JPEG")
    return buf.getvalue()


def refused(page, slot: Slot, reason: RejectReason):
    """The refusal of the photo in ``slot``: the retake advice beside its input, announced
    and describing it; nothing beside the other photo, whose chosen file is kept."""
    problem = page.wait_for_selector(f"#{slot}-problem")
    advice = retake_advice(reason, slot, PhotoCheckConfig())  # the settings' defaults
    assert problem.inner_text() == advice[0].upper() + advice[1:]
    assert (problem.get_attribute("role"), problem.get_attribute("data-reason")) == (
        "alert", reason.value)
    assert page.get_attribute(f"#{slot}", "aria-describedby") == f"{slot}-problem"
    assert page.get_attribute(f"#{slot}", "aria-invalid") == "true"
    other = "back" if slot == "front" else "front"
    assert page.locator(f"#{other}-problem").count() == 0
    assert page.eval_on_selector(f"#{slot}", "i => i.files.length") == 0  # choose it again
    assert page.eval_on_selector(f"#{other}", "i => i.files.length") == 1  # kept
    assert advice in page.inner_text("#form-error")
    return problem
