"""The photo check of the shipped model in the web UI: a front photo sent as the back is
refused ``wrong_side``, the retake advice beside the back photo (real Chromium, real server).
Skipped until the shipped bundle has its photo-check model; the too-dark refusal, which needs
no model, is in test_ui_browser.py."""

from __future__ import annotations

from pathlib import Path

import pytest
from PIL import Image

from serve.app import create_app
from serve.auth import create_key
from serve.db import Database
from serve.runtime import Grader
from serve.settings import SHIPPED_BUNDLE, Settings
from tests.serve.ui_support import BROWSER_TESTS, chromium, fill_form, refused, sign_in
from tests.support import INFO, ThreadServer
from vision.photocheck import PhotoCheckConfig, RejectReason, measure, measured_reason

pytestmark = [*BROWSER_TESTS, pytest.mark.skipif(
    not (SHIPPED_BUNDLE / "photocheck.onnx").exists(),
    reason="models/photograde-base has no photo-check model (photocheck.onnx) yet: "
           "wrong_side needs its learned side heads")]


@pytest.fixture(scope="module")
def browser():
    yield from chromium()


def test_a_front_in_the_back_slot_is_refused_as_the_wrong_side(browser, synth_dir, tmp_path):
    """Two synthetic fronts the measured checks pass (many synthetic photos are soft, and
    blurry comes before wrong_side), the second in the back slot, on a 390 px wide page."""
    from training.manifest import load_manifest

    url = f"sqlite:///{tmp_path / 'photograde.db'}"
    db = Database(url)
    db.migrate()
    key = create_key(db, "refurbisher", "side-check")[1]
    db.dispose()
    cfg = PhotoCheckConfig()
    fronts = [Path(r.front_path) for r in load_manifest(synth_dir / "manifest.csv").rows]
    sharp = [f for f in fronts
             if measured_reason(measure(Image.open(f).convert("RGB")), cfg) is None]
    settings = Settings(bundle=SHIPPED_BUNDLE, threads=1, database_url=url,
                        photo_dir=tmp_path / "photos", rate_limit_per_minute=100_000)
    grader = Grader(SHIPPED_BUNDLE, threads=1)
    with ThreadServer(create_app(settings, grader)) as server:
        ctx, page = sign_in(browser, server.url, key, width=390)
        try:
            fill_form(page, server.url, (sharp[0], sharp[1]), grader.policy.grades[0])
            page.click("#submit")
            refused(page, "back", RejectReason.WRONG_SIDE)
            assert page.input_value("#model") == INFO["model"]
        finally:
            ctx.close()
