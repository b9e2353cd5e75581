"""The photo check's retake advice in the UI's language (serve/ui/advice.py): in English word
for word :func:`vision.photocheck.retake_advice` (so the two cannot drift apart), in French a
translation with the settings' thresholds; a French evaluation form refused ``too_dark`` shows
the French advice beside the front photo, while the API's ``detail`` stays English."""

from __future__ import annotations

import html
import io
import json
import re
from collections.abc import Iterator
from typing import get_args

import pytest
from fastapi.testclient import TestClient
from PIL import Image

from serve.problems import PhotoRejected
from serve.ui import i18n
from serve.ui.advice import retake_advice
from serve.ui.form import field_problem
from tests.support import INFO, role_keys, small_photos, ui_session, workflow_app
from vision import photocheck
from vision.photocheck import PhotoCheckConfig, RejectReason, Slot

CFG = PhotoCheckConfig(min_side_px=321, min_jpeg_quality=42)  # not the defaults
CASES = [(r, s) for r in RejectReason for s in get_args(Slot)]


@pytest.fixture
def lang() -> Iterator:
    """``lang(code)``: make ``code`` the current language (restored at the end)."""
    tokens = []
    yield lambda code: tokens.append(i18n._current.set(code))
    for token in reversed(tokens):
        i18n._current.reset(token)


@pytest.mark.parametrize(("reason", "slot"), CASES)
def test_the_advice_is_visions_in_english_and_translated_in_french(reason, slot, lang):
    lang("en")
    english = retake_advice(reason, slot, CFG)
    assert english and english == photocheck.retake_advice(reason, slot, CFG)
    lang("fr")
    french = retake_advice(reason, slot, CFG)
    assert french and french != english
    numbers = {RejectReason.TOO_SMALL: "321", RejectReason.COMPRESSED: "42"}
    assert numbers.get(reason, "") in french
    assert "%(" not in french


def test_the_form_shows_the_advice_in_the_pages_language(lang):
    p = PhotoRejected("back: " + photocheck.retake_advice(RejectReason.WRONG_SIDE, "back", CFG),
                      "back", reason="wrong_side")
    lang("fr")
    shown = field_problem(p, CFG)
    assert shown and shown.detail == retake_advice(RejectReason.WRONG_SIDE, "back", CFG)
    assert shown.detail.startswith("cette photo semble montrer la face avant")
    assert shown.reason == "wrong_side"
    unknown = field_problem(PhotoRejected("front: something else", "front", reason="odd"))
    assert unknown and unknown.detail == "something else"  # its own detail


def black_photo(size: tuple[int, int] = (400, 300)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", size).save(buf, "JPEG")
    return buf.getvalue()


def shown_beside(page: str, slot: str) -> str:
    """The text of the problem shown beside ``slot``'s photo input."""
    m = re.search(rf'<p class="field-error" id="{slot}-problem"[^>]*>(.*?)</p>', page, re.S)
    assert m, page[:2000]
    return html.unescape(m.group(1))


def test_a_french_form_refused_too_dark_shows_the_french_advice(grader, synth_dir, tmp_path,
                                                               lang):
    """Through the real app: ``?lang=fr`` and a black front (too_dark needs no model); then,
    with the settings' ``min_side_px`` raised, the same photo is too small for that many
    pixels; the API answers the same photo in English whatever the language."""
    app = workflow_app(f"sqlite:///{tmp_path / 'db.sqlite'}", tmp_path, grader,
                       photo_check=True)
    back = small_photos(synth_dir, 1)[0][1]
    files = {"front": ("f.jpg", black_photo()), "back": ("b.jpg", back)}
    lang("fr")
    advice = retake_advice(RejectReason.TOO_DARK, "front", PhotoCheckConfig())
    assert advice.startswith("la photo est trop sombre")
    data = {"brand": INFO["brand"], "model": INFO["model"], "storage_gb": "128",
            "unlocked": "on", "refurbisher_grade": grader.policy.grades[0]}
    with TestClient(app) as c:
        keys = role_keys(app.state.workflow.db)
        c.headers.update(ui_session(c, keys["refurbisher"]))
        r = c.post("/ui/evaluations?lang=fr", data=data, files=files)
        assert r.status_code == 422, r.text[:500]
        assert shown_beside(r.text, "front") == advice[0].upper() + advice[1:]
        assert 'data-reason="too_dark"' in r.text and 'id="back-problem"' not in r.text
        assert f"Photo de face: {advice}" in html.unescape(r.text)  # at the top too
        settings = app.state.service.settings
        settings.photo_check_thresholds = PhotoCheckConfig(min_side_px=640)
        r = c.post("/ui/evaluations?lang=fr", data=data, files=files)
        assert "moins de 640 pixels" in shown_beside(r.text, "front")
        api = c.post("/v1/evaluations", headers={"X-API-Key": keys["refurbisher"],
                                                 "Accept-Language": "fr"},
                     data={"device": json.dumps(INFO),
                           "refurbisher_grade": grader.policy.grades[0]},
                     files={"front": ("f.jpg", black_photo((800, 700))), "back": files["back"]})
        assert api.json()["detail"] == "front: " + photocheck.retake_advice(
            RejectReason.TOO_DARK, "front", PhotoCheckConfig(min_side_px=640))
