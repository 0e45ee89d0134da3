"""The library page, its htmx results partial, and a scenario opened on the canvas."""

from __future__ import annotations

from typing import Any

import pytest

from patterns import catalog
from patterns.topology import validate
from playground.models import Scenario

pytestmark = pytest.mark.django_db


def make(slug: str, title: str, **fields: Any) -> Scenario:
    return Scenario.objects.create(pattern=slug, title=title,
                                   document=validate(catalog.get(slug).canonical()), **fields)


@pytest.fixture(autouse=True)
def empty_library() -> None:
    Scenario.objects.all().delete()


def results(client, **params: str):
    return client.get("/library/results", params, headers={"HX-Request": "true"})


def test_published_scenarios_are_shown_with_the_patterns(client):
    shown = make("retry", "Retry through an outage", published=True,
                 description="Backoff and a budget.\nMore detail on the next line.")
    html = client.get("/").content.decode()
    assert f'data-scenario="{shown.pk}"' in html
    assert "Retry through an outage" in html
    assert "Backoff and a budget." in html
    assert "More detail on the next line." not in html  # the card shows the first line
    assert f'href="/s/{shown.pk}"' in html
    for slug in catalog.PATTERNS:
        assert f'data-pattern="{slug}"' in html


def test_unpublished_scenarios_are_hidden(client):
    hidden = make("retry", "Draft scenario")
    html = client.get("/").content.decode()
    assert "Draft scenario" not in html
    assert client.get(f"/s/{hidden.pk}").status_code == 404
    assert client.get(f"/api/scenarios/{hidden.pk}").status_code == 404


def test_staff_can_preview_an_unpublished_scenario(admin_client):
    draft = make("timeout", "Draft")
    response = admin_client.get(f"/s/{draft.pk}")
    assert response.status_code == 200
    assert response.context["boot"] == {"scenario": draft.pk, "pattern": "timeout"}
    assert admin_client.get(f"/api/scenarios/{draft.pk}").json() == draft.document


def test_a_published_scenario_opens_on_the_canvas(client):
    scenario = make("circuit-breaker", "Breaker", published=True)
    html = client.get(f"/s/{scenario.pk}").content.decode()
    assert f'"scenario": {scenario.pk}' in html  # the boot object the page script reads
    data = client.get(f"/api/scenarios/{scenario.pk}").json()
    assert data == scenario.document
    missing = client.get("/api/scenarios/999999")
    assert missing.status_code == 404 and missing.json()["field"] == "id"


def test_scenarios_sit_in_their_pattern_s_category(client):
    make("retry", "In reliability", published=True)
    make("load-balancing", "In communication", published=True)
    html = client.get("/").content.decode()
    sections = {chunk.split('"', 1)[0]: chunk for chunk in html.split('data-category="')[1:]}
    assert "In reliability" in sections["reliability"].split("</section>")[0]
    assert "In communication" in sections["communication"].split("</section>")[0]
    assert "In reliability" not in sections["communication"].split("</section>")[0]


def test_featured_scenarios_come_first(client):
    make("retry", "Ordinary", published=True, order=1)
    make("retry", "Starred", published=True, featured=True, order=9)
    html = results(client).content.decode()
    assert html.index("Starred") < html.index("Ordinary")


def test_the_partial_filters_by_category(client):
    make("retry", "Retry card", published=True)
    make("load-balancing", "Balancer card", published=True)
    response = results(client, category="reliability")
    html = response.content.decode()
    assert "<html" not in html  # just the results
    assert "Retry card" in html and "Balancer card" not in html
    assert 'data-pattern="retry"' in html and 'data-pattern="load-balancing"' not in html
    assert response["HX-Replace-Url"] == "/?category=reliability"


def test_the_partial_searches_text(client):
    make("retry", "Budgets", published=True, description="Mentions a thundering herd.")
    make("timeout", "Deadlines", published=True)
    response = results(client, q="THUNDERING")
    html = response.content.decode()
    assert "Budgets" in html and "Deadlines" not in html
    assert response["HX-Replace-Url"] == "/?q=THUNDERING"
    # A pattern's name finds its scenarios, and the pattern itself.
    html = results(client, q="timeout").content.decode()
    assert "Deadlines" in html and 'data-pattern="timeout"' in html
    assert "Budgets" not in html


def test_category_and_search_combine(client):
    make("retry", "Alpha retry", published=True)
    make("load-balancing", "Alpha balance", published=True)
    html = results(client, category="communication", q="alpha").content.decode()
    assert "Alpha balance" in html and "Alpha retry" not in html


def test_nothing_found_says_so(client):
    html = results(client, q="no such thing anywhere").content.decode()
    assert "data-library-empty" in html
    assert "no such thing anywhere" in html


def test_an_unknown_category_means_all(client):
    make("retry", "Still here", published=True)
    assert "Still here" in results(client, category="nonsense").content.decode()


def test_the_page_filters_without_javascript_too(client):
    make("retry", "Retry card", published=True)
    make("load-balancing", "Balancer card", published=True)
    html = client.get("/?category=communication&q=balancer").content.decode()
    assert "Balancer card" in html and "Retry card" not in html
    assert 'value="communication" checked' in html
    assert 'value="balancer"' in html


def test_the_search_box_asks_htmx_for_results_as_you_type(client):
    html = client.get("/").content.decode()
    assert 'hx-get="/library/results"' in html
    assert 'hx-trigger="input changed delay:250ms, search"' in html
    assert 'hx-target="#library-results"' in html


def test_markup_in_titles_and_descriptions_is_text(client):
    make("retry", "<script>alert('title')</script>", published=True,
         description="<img src=x onerror=alert(1)> summary")
    for html in (client.get("/").content.decode(), results(client).content.decode(),
                 results(client, q="<b>bold</b>").content.decode()):
        assert "<script>alert(" not in html
        assert "<img src=x" not in html
        assert "<b>bold</b>" not in html
    html = client.get("/").content.decode()
    assert "&lt;script&gt;alert(&#x27;title&#x27;)&lt;/script&gt;" in html
    assert "&lt;img src=x onerror=alert(1)&gt; summary" in html


def test_a_scenario_of_a_pattern_no_longer_registered_is_left_out(client, monkeypatch):
    make("retry", "Orphan", published=True)
    # A copy without it: deleting from the registry itself would reorder it when restored.
    monkeypatch.setattr(catalog, "PATTERNS",
                        {slug: p for slug, p in catalog.PATTERNS.items() if slug != "retry"})
    assert "Orphan" not in client.get("/").content.decode()


def test_a_scenario_says_what_goes_wrong_in_it_not_in_the_canonical_one(client):
    canonical = make("saga", "Canonical", published=True)
    html = client.get(f"/s/{canonical.pk}").content.decode()
    assert catalog.get("saga").TEACHING_FAULT in html
    assert "data-scenario-faults" not in html
    variant = Scenario.objects.create(
        pattern="saga", title="By events", published=True,
        document=validate(catalog.get("saga").document("choreography")))
    html = client.get(f"/s/{variant.pk}").content.decode()
    assert "data-scenario-faults" in html
    assert "inventory crashed until 25 s" in html
    assert "payment fails 20% of its work until 60 s" in html
    assert catalog.get("saga").TEACHING_FAULT not in html
