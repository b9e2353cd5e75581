"""The evaluation list's filters and paging, the empty states, the staff home page and the
reviewer's case page, against a real server on loopback (plain HTTP; the same pages in
Chromium, at 390 px and under axe-core, are in test_ui_a11y.py and test_ui_french.py).

A bad filter value (an unknown status, a date out of range, a limit or an offset out of bounds)
is a 422 page that names the field and marks it invalid, never a 500."""

from __future__ import annotations

import datetime as dt
import re
from contextlib import closing

import httpx
import pytest

from tests.serve.test_ui_limits import Site, site  # noqa: F401 (the fixture)

BAD = [("status", "bogus", "Status"), ("decision", "maybe", "Decision"),
       ("from", "0413-05-14", "From"), ("from", "2026-13-01", "From"),
       ("to", "yesterday", "To"), ("limit", "0", "Per page"), ("limit", "1000", "Per page"),
       ("limit", "ten", "Per page"), ("offset", "-1", "Offset"),
       ("offset", "563016315260643180544", "Offset")]


def text(html: str) -> str:
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", html))


@pytest.fixture(scope="module")
def made(site: Site) -> dict[str, dict]:  # noqa: F811
    """Three evaluations (validated, a suggestion, a justification asked), the last one
    justified: in the review queue."""
    out = {ev["decision"]: ev for ev in (site.evaluation(g) for g in (0, 1, 2))}
    front, _ = site.pairs.pop()
    r = httpx.post(f"{site.url}/v1/evaluations/{out['justification_required']['id']}"
                   "/justification", headers=site.api("refurbisher"), timeout=60,
                   data={"text": "Only a light scratch on the back, see the close-up photo."},
                   files=[("photos", ("p.jpg", front))])
    assert r.status_code == 201, r.text
    return out


def test_empty_states_before_any_evaluation(site):  # noqa: F811
    with closing(site.ui("reviewer")) as ui:
        assert "No evaluations yet" in text(ui.get("/ui/evaluations").text)
        assert "Nothing to review" in text(ui.get("/ui/reviews").text)
        home = ui.get("/ui").text
        assert re.search(r'id="pending-reviews">0<', home) and "Nothing to review" in home


@pytest.mark.parametrize(("field", "value", "label"), BAD)
def test_a_bad_filter_is_a_clear_422_never_a_500(site, field, value, label):  # noqa: F811
    with closing(site.ui("platform")) as ui:
        r = ui.get("/ui/evaluations", params={field: value})
    assert r.status_code == 422
    error = re.search(r'id="filter-error" role="alert">([^<]*)<', r.text)
    assert error and error.group(1).startswith(f"{label}:"), r.text[-2000:]
    assert re.search(rf'id="{field}" name="{field}"[^>]* aria-invalid="true"', r.text) or (
        field == "offset")  # no input of its own: the links write it


def test_an_end_before_the_start_is_refused(site):  # noqa: F811
    with closing(site.ui("platform")) as ui:
        r = ui.get("/ui/evaluations", params={"from": "2026-03-02", "to": "2026-03-01"})
    assert r.status_code == 422 and "end date is before the start date" in r.text


def test_filters_and_paging(site, made):  # noqa: F811
    with closing(site.ui("platform")) as ui:
        first = ui.get("/ui/evaluations", params={"limit": 1})
        assert first.status_code == 200 and "1–1 of 3" in text(first.text)
        assert 'id="prev-page"' not in first.text
        nxt = re.search(r'href="([^"]+)" rel="next"', first.text).group(1).replace("&amp;", "&")
        assert nxt == "/ui/evaluations?limit=1&offset=1"
        second = ui.get(nxt)
        assert "2–2 of 3" in text(second.text) and 'rel="prev"' in second.text
        assert len(re.findall(r'<tr><td><a href="/ui/evaluations/', second.text)) == 1

        only = ui.get("/ui/evaluations", params={"decision": "suggestion"})
        assert "1–1 of 1" in text(only.text) and made["suggestion"]["id"] in only.text
        assert made["validated"]["id"] not in only.text
        queued = ui.get("/ui/evaluations", params={"status": "in_review"})
        assert made["justification_required"]["id"] in queued.text
        assert "1–1 of 1" in text(queued.text)
        today = dt.datetime.now(dt.UTC).date()
        within = ui.get("/ui/evaluations", params={"from": today.isoformat(),
                                                    "to": today.isoformat()})
        assert "1–3 of 3" in text(within.text)
        later = ui.get("/ui/evaluations", params={"from": (today + dt.timedelta(1)).isoformat()})
        assert later.status_code == 200 and "No evaluation matches these filters" in later.text
        past = ui.get("/ui/evaluations", params={"offset": 40})
        assert "No evaluation on this page" in past.text


def test_the_staff_home_and_the_reviewers_case_page(site, made):  # noqa: F811
    case = made["justification_required"]
    with closing(site.ui("reviewer")) as ui:
        home = ui.get("/ui").text
        assert re.search(r'id="pending-reviews">1<', home) and case["id"] in home
        page = ui.get(f"/ui/evaluations/{case['id']}").text
    words = text(page)
    assert "Your grade" not in words and "Keep my grade" not in words
    assert "The refurbisher's grade" in words.replace("&#39;", "'")
    assert "Waiting for your decision" in words
    labels = dict(re.findall(r'<label for="((?:approve|override)-[a-z]+)">([^<]+)</label>', page))
    assert set(labels) == {"approve-comment", "override-grade", "override-comment"}
    assert labels["approve-comment"] != labels["override-comment"]
    assert 'id="approve-comment"' in page and 'id="override-comment"' in page
