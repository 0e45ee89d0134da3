"""The curated library end to end: a staff user adds a scenario in the admin and learners
find it in the library (by category and by search, without a reload) and open it on the
canvas; an anonymous visitor to /admin/ is sent to the login page."""

from __future__ import annotations

import json

import pytest
from django.contrib.auth.models import Permission, User

pytestmark = pytest.mark.slow

PASSWORD = "curated-library-2026"
# Markup in a title must be shown as text and never run.
TITLE = 'Retry through a hang <img src=x onerror="window.__pwned=1">'


def make_curator() -> User:
    """Staff, with the scenario permissions an admin would grant (not a superuser)."""
    user = User.objects.create_user("curator", password=PASSWORD, is_staff=True)
    user.user_permissions.set(Permission.objects.filter(
        content_type__app_label="playground", codename__endswith="_scenario"))
    return user


def test_a_staff_user_creates_a_scenario_and_it_appears_in_the_library(page):
    make_curator()
    page.goto("/admin/")
    page.fill("#id_username", "curator")
    page.fill("#id_password", PASSWORD)
    page.click("input[type=submit]")
    page.wait_for_selector("#site-name")

    document = page.request.get("/api/patterns/retry").json()["topology"]
    document["scenario"]["seed"] = 7
    page.goto("/admin/playground/scenario/add/")
    page.select_option("#id_pattern", "retry")
    page.fill("#id_title", TITLE)
    page.fill("#id_description", "A hang at 80% load.\nWatch the retry budget run out.")
    page.fill("#id_document", json.dumps(document))
    page.check("#id_published")
    page.click("input[name=_save]")
    page.wait_for_selector(".messagelist .success")
    assert page.url.endswith("/admin/playground/scenario/")
    page.errors.clear()  # Django's admin pages ask for a /favicon.ico we do not serve


    page.goto("/")
    card = page.locator("[data-scenario]", has_text="Retry through a hang")
    card.wait_for()
    assert card.locator("h3").text_content() == TITLE  # the markup, as text
    assert "A hang at 80% load." in card.text_content()
    assert page.evaluate("() => window.__pwned") is None

    # Filter by category, then search, without reloading the page.
    page.evaluate("() => { window.__sameDocument = true; }")
    page.click("label.chip:has-text('Communication')")
    page.wait_for_selector('[data-category="communication"]')
    page.wait_for_function("() => !document.querySelector('[data-category=\"reliability\"]')")
    assert card.count() == 0
    page.click("label.chip:has-text('Reliability')")
    card.wait_for()
    page.fill("[data-library-search]", "budget run out")
    page.wait_for_function("() => document.querySelectorAll('[data-library-results] .card')"
                           ".length === 1")
    assert card.count() == 1
    assert page.evaluate("() => window.__sameDocument") is True
    assert "q=budget" in page.url

    card.locator("a").click()
    page.wait_for_url("**/s/*")
    page.wait_for_selector("[data-node-id]")
    assert page.locator("[data-node-id]").count() == len(document["nodes"])
    assert page.evaluate("() => window.__pwned") is None
    assert not page.errors, page.errors


def test_an_anonymous_user_is_sent_to_the_login_page(page):
    page.goto("/admin/")
    assert page.url.endswith("/admin/login/?next=/admin/")
    assert page.locator("#id_username").is_visible()
    page.goto("/admin/playground/scenario/import/")
    assert "/admin/login/" in page.url
