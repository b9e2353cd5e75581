"""English and French in the UI (Babel + Jinja2's i18n extension).

Every message of the templates and of serve/ui (extracted with Babel, as ``pybabel extract``
does with serve/locale/babel.cfg) has a French translation with the same placeholders; every
enum value the UI shows (grades of both scales, conditions, decisions, statuses, resolutions,
return and photo reasons, functional checks) has French words; the language is chosen from
``?lang=``, the cookie, then ``Accept-Language``; a page renders in French with
``<html lang="fr">``, French words for the grades and Babel's French numbers. The browser tests
in French are in test_ui_french.py."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace

import pytest
from babel.messages.extract import extract_from_dir
from babel.messages.pofile import read_po
from starlette.requests import Request

from fusion.policy import BUILTIN_CONFIGS, load_policy
from serve.dashboard import CATEGORIES
from serve.models import DECISIONS, REJECT_REASONS, RESOLUTIONS, STATUSES
from serve.ui import i18n
from serve.ui.pages import templates
from tabular.schema import CHECK_LABELS, RETURN_REASONS
from tests.serve.test_outcome_wording import POLICY, _ev
from vision.conditions import CONDITIONS

ROOT = Path(__file__).resolve().parents[2]
PO = ROOT / "serve" / "locale" / "fr" / "LC_MESSAGES" / "messages.po"
PLACEHOLDER = re.compile(r"%\([a-z_]+\)[sd]")


def extracted() -> set[str | tuple[str, ...]]:
    """The msgids of the templates and serve/ui, as ``pybabel extract`` finds them."""
    method_map = [("serve/ui/**.py", "python"), ("serve/templates/**.html", "jinja2")]
    options = {"serve/templates/**.html": {"extensions": "jinja2.ext.i18n", "trimmed": "true"}}
    keywords = {"_": None, "gettext": None, "ngettext": (1, 2), "N_": None}
    return {msg[2] for msg in extract_from_dir(str(ROOT), method_map, options, keywords)}


@pytest.fixture(scope="module")
def catalog():
    with PO.open("rb") as f:
        return read_po(f, locale="fr")


def test_every_message_has_a_french_translation(catalog):
    ids = extracted()
    assert len(ids) > 250  # the templates are really extracted
    missing, bad = [], []
    for msgid in ids:
        key = msgid[0] if isinstance(msgid, tuple) else msgid
        m = catalog.get(key)
        strings = [] if m is None or m.fuzzy else (
            list(m.string) if isinstance(m.string, tuple) else [m.string])
        if not strings or not all(strings):
            missing.append(key)
            continue
        want = sorted(set(PLACEHOLDER.findall(key)))
        if any(sorted(set(PLACEHOLDER.findall(s))) != want for s in strings):
            bad.append(key)
    assert missing == [] and bad == []


def _shown(value: str) -> str:
    return value.replace("_", " ")


def test_every_enum_the_ui_shows_has_french_words(catalog):
    scales = [load_policy(name).grades for name in BUILTIN_CONFIGS]
    values = [*(g for s in scales for g in s), *(c for cs in CONDITIONS.values() for c in cs),
              *DECISIONS, *STATUSES, *RESOLUTIONS, *RETURN_REASONS, *REJECT_REASONS,
              *CHECK_LABELS.values(), *CATEGORIES, "refurbisher", "platform", "reviewer",
              "admin"]
    missing = [v for v in values if not (m := catalog.get(_shown(v))) or not m.string]
    assert missing == []


def _request(query: str = "", cookie: str | None = None, accept: str | None = None) -> Request:
    headers = [(b"accept-language", accept.encode())] if accept else []
    if cookie:
        headers.append((b"cookie", f"{i18n.COOKIE}={cookie}".encode()))
    return Request({"type": "http", "method": "GET", "path": "/ui/evaluations",
                    "query_string": query.encode(), "headers": headers})


def test_the_language_comes_from_the_switch_then_the_cookie_then_the_browser():
    assert i18n.choose(_request()) == "en"
    assert i18n.choose(_request(accept="fr-FR,fr;q=0.9,en;q=0.8")) == "fr"
    assert i18n.choose(_request(accept="de-DE,en;q=0.5,fr;q=0.7")) == "fr"  # by q-value
    assert i18n.choose(_request(accept="de-DE, es;q=0.9")) == "en"
    assert i18n.choose(_request(cookie="en", accept="fr")) == "en"
    assert i18n.choose(_request(cookie="xx", accept="fr")) == "fr"  # a bad cookie: ignored
    assert i18n.choose(_request("lang=fr&status=listed", cookie="en")) == "fr"
    links = {s["lang"]: s["href"] for s in i18n.switch_links(_request("status=listed&lang=en"))}
    assert links == {"en": "/ui/evaluations?status=listed&lang=en",
                     "fr": "/ui/evaluations?status=listed&lang=fr"}


@pytest.fixture
def french() -> Iterator[None]:
    token = i18n._current.set("fr")
    yield
    i18n._current.reset(token)


def test_a_page_in_french(french):
    ev = _ev("suggestion", "awaiting_refurbisher", "good", None)
    ev["predicted_grade"] = "fair"
    html = templates.env.get_template("evaluation.html").render(
        ev=ev, label=i18n.gettext("Different grade suggested"), lang="fr",
        who=SimpleNamespace(role="refurbisher", refurbisher_id="R1"), grades=list(POLICY.grades),
        checks=CHECK_LABELS, min_chars=20, not_sellable=POLICY.not_sellable, switch=[])
    text = re.sub(r"\s+", " ", re.sub(r"<[^>]+>", "", html))
    assert '<html lang="fr">' in html
    assert "Autre grade suggéré" in text
    assert "Votre grade : bon ; grade suggéré : correct." in text  # no-break spaces, as \s
    assert "Accepter la suggestion (correct)" in text
    assert "1 mai 2024" in text  # Babel's French date
    assert "(35 %)" in text  # and percentages (a no-break space before %: \s matched it)
    assert "Your grade" not in text and "suggested" not in text


def test_numbers_and_dates_follow_the_locale(french):
    assert re.fullmatch("12[\u00a0\u202f]%", i18n.percent(0.123))
    assert i18n.number(12345) == "12\u202f345"
    assert i18n.day("2026-11-30") == "30 nov. 2026"
    token = i18n._current.set("en")
    try:
        assert (i18n.percent(0.123), i18n.day("2026-11-30")) == ("12%", "Nov 30, 2026")
    finally:
        i18n._current.reset(token)
