"""The UI in French in a real headless Chromium against a real server (the fixtures of
test_ui_browser.py): a browser that asks for French (``Accept-Language: fr-FR``) gets the form,
an outcome and both dashboards in French, with ``<html lang="fr">`` and French words for the
grades and conditions, while the API answers the same evaluation with its English enums; the
EN/FR switch changes the language and the choice persists (a cookie) over the browser's; the
evaluation list's filters and paging, used as a person would, in French."""

from __future__ import annotations

import httpx

from serve.ui.i18n import translations
from tests.serve.test_ui_browser import as_role, browser, site, submit  # noqa: F401 (fixtures)
from tests.serve.ui_support import BROWSER_TESTS, shot, signed_in, wait_image

pytestmark = BROWSER_TESTS
FR = translations("fr").gettext


def test_the_form_and_an_outcome_in_french_the_api_in_english(site, browser):  # noqa: F811
    with signed_in(browser, site.url, site.keys["refurbisher"], locale="fr-FR") as page:
        page.goto(site.url + "/ui/evaluations/new")
        assert page.get_attribute("html", "lang") == "fr"
        form = page.inner_text("#evaluation-form")
        for label in ("Photo de face", "Photo de dos", "Grade global", "Tiroir SIM présent",
                      "État de l’écran"):
            assert label in form
        assert page.inner_text("#screen_condition option[value=light_scratches]") == (
            "rayures légères")
        assert submit(page, site, 1, screenshot="form-fr.png") == "suggestion"
        assert page.inner_text("h1") == "Autre grade suggéré"
        assert page.inner_text("#suggestion").startswith("Votre grade")
        evaluation = page.url.rsplit("/", 1)[1]
        api = httpx.get(f"{site.url}/v1/evaluations/{evaluation}", timeout=30,
                        headers={"X-API-Key": site.keys["platform"], "Accept-Language": "fr"})
        body = api.json()
        assert (body["decision"], body["status"]) == ("suggestion", "awaiting_refurbisher")
        assert body["predicted_grade"] in site.grades  # the English enum, never translated
        model_grade = page.inner_text("#suggestion b >> nth=1")
        assert model_grade == FR(body["predicted_grade"].replace("_", " "))
        wait_image(page, "#heatmap-screen")
        shot(page, "outcome-suggestion-fr.png")
        page.click("#accept")
        page.wait_for_selector("#resolution")
        assert page.inner_text("#resolution").startswith("Suggestion acceptée")


def test_both_dashboards_in_french(site, browser):  # noqa: F811
    with signed_in(browser, site.url, site.keys["refurbisher"], locale="fr-FR") as page:
        page.goto(site.url + "/ui/dashboard")
        assert page.get_attribute("html", "lang") == "fr"
        assert page.inner_text("#refurbisher-dashboard h1").startswith("Tableau de bord")
        assert page.inner_text("#kpi-validated").endswith("%")
        assert "Corrections récentes" in page.inner_text("main")
        shot(page, "dashboard-refurbisher-fr.png")
    with signed_in(browser, site.url, site.keys["platform"], locale="fr-FR") as page:
        page.goto(site.url + "/ui/platform")
        assert page.inner_text("#platform-dashboard h1") == "Indicateurs de la plateforme"
        text = page.inner_text("main")
        assert "suggestions acceptées" in text and "Répartition des écarts" in text
        assert " sur " in text  # the counts beside the rates: "(3 sur 25)"
        assert page.locator("svg.chart").count() == 6
        shot(page, "dashboard-platform-fr.png")


def test_the_switch_changes_the_language_and_it_persists(site, browser):  # noqa: F811
    with signed_in(browser, site.url, site.keys["platform"], locale="fr-FR") as page:
        page.goto(site.url + "/ui/evaluations")
        assert page.get_attribute("html", "lang") == "fr"
        page.click("#lang-switch a[lang=en]")
        page.wait_for_load_state()
        assert page.get_attribute("html", "lang") == "en"
        assert page.get_attribute("#lang-switch a[lang=en]", "aria-current") == "true"
        page.goto(site.url + "/ui/platform")  # no ?lang: the cookie, over Accept-Language
        assert (page.get_attribute("html", "lang"), page.inner_text("h1")) == (
            "en", "Platform KPIs")
        page.click("#lang-switch a[lang=fr]")
        page.wait_for_load_state()
        page.goto(site.url + "/ui/platform")
        assert page.inner_text("h1") == "Indicateurs de la plateforme"


def test_filters_and_paging_in_french(site, browser):  # noqa: F811
    with signed_in(browser, site.url, site.keys["platform"], locale="fr-FR") as page:
        page.goto(site.url + "/ui/evaluations")
        page.select_option("#limit", "10")
        page.select_option("#decision", "validated")
        page.click("#apply-filters")
        page.wait_for_url("**decision=validated**")
        pills = page.locator("#evaluations .pill").all_inner_texts()
        assert pills and set(pills) == {"validé"}
        assert " sur " in page.inner_text("#list-count")
        page.goto(site.url + "/ui/evaluations?limit=1")
        assert page.inner_text("#list-count").startswith("1–1 sur ")
        page.click("#next-page")
        page.wait_for_url("**offset=1**")
        assert page.inner_text("#list-count").startswith("2–2 sur ")
        assert page.locator("#prev-page").count() == 1
        page.goto(site.url + "/ui/evaluations?from=0413-05-14")
        assert page.inner_text("#filter-error").startswith("Du")
        assert page.get_attribute("#from", "aria-invalid") == "true"
