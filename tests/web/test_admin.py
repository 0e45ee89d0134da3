"""The admin's scenario library: lists, filters, the validated form, export and import.

Also the read-mostly views of topologies and runs, and the login wall.
"""

from __future__ import annotations

import copy
import importlib
import json
from typing import Any

import pytest
from django.apps import apps
from django.core.files.uploadedfile import SimpleUploadedFile

from patterns import catalog
from patterns.topology import validate
from playground.models import Run, Scenario, Topology

pytestmark = pytest.mark.django_db

CHANGELIST = "/admin/playground/scenario/"
ADD = "/admin/playground/scenario/add/"
IMPORT = "/admin/playground/scenario/import/"


def canonical(slug: str = "request-response") -> dict[str, Any]:
    return validate(catalog.get(slug).canonical())


def make(slug: str = "request-response", title: str = "A scenario", **fields: Any) -> Scenario:
    return Scenario.objects.create(pattern=slug, title=title, document=canonical(slug),
                                   **fields)


def bad_workers(slug: str = "request-response") -> tuple[dict[str, Any], str]:
    """A canonical document with a service's workers at 0, and the field path that names it."""
    doc = copy.deepcopy(catalog.get(slug).canonical())
    index = next(i for i, n in enumerate(doc["nodes"]) if n["kind"] == "service")
    doc["nodes"][index]["params"]["workers"] = 0
    return doc, f"nodes[{index}].params.workers"


def form_post(**overrides: Any) -> dict[str, Any]:
    data = {"pattern": "request-response", "title": "Slow database, tuned",
            "description": "Watch the queue.", "document": json.dumps(canonical()),
            "order": "5", "published": "on", "_save": "Save"}
    data.update(overrides)
    return {k: v for k, v in data.items() if v is not None}


@pytest.fixture
def empty_library() -> None:
    """Start without the curated scenarios, so counts are the test's own."""
    Scenario.objects.all().delete()


# ---- the login wall ------------------------------------------------------------------------

def test_an_anonymous_user_is_sent_to_the_login_page(client):
    response = client.get("/admin/")
    assert response.status_code == 302
    assert response["Location"] == "/admin/login/?next=/admin/"


def test_an_anonymous_user_cannot_reach_the_import_view(client):
    response = client.get(IMPORT)
    assert response.status_code == 302
    assert response["Location"].startswith("/admin/login/")


# ---- the changelist -----------------------------------------------------------------------

def test_the_changelist_shows_pattern_category_and_a_preview_link(admin_client, empty_library):
    scenario = make("retry", "Retry storm", featured=True, published=True)
    html = admin_client.get(CHANGELIST).content.decode()
    assert "Retry storm" in html
    assert "Reliability" in html  # the category, derived from the pattern registry
    assert f'href="/s/{scenario.pk}"' in html
    assert "Import from JSON" in html


def test_it_filters_by_category(admin_client, empty_library):
    make("retry", "About retries")
    make("load-balancing", "About balancing")
    html = admin_client.get(CHANGELIST + "?category=reliability").content.decode()
    assert "About retries" in html
    assert "About balancing" not in html
    html = admin_client.get(CHANGELIST + "?category=communication").content.decode()
    assert "About retries" not in html
    assert "About balancing" in html


def test_it_filters_by_pattern_featured_and_published(admin_client, empty_library):
    make("retry", "Featured retry", featured=True)
    make("timeout", "Plain timeout", published=True)
    html = admin_client.get(CHANGELIST + "?pattern=timeout").content.decode()
    assert "Plain timeout" in html and "Featured retry" not in html
    html = admin_client.get(CHANGELIST + "?featured__exact=1").content.decode()
    assert "Featured retry" in html and "Plain timeout" not in html
    html = admin_client.get(CHANGELIST + "?published__exact=1").content.decode()
    assert "Plain timeout" in html and "Featured retry" not in html


def test_it_searches_title_and_description(admin_client, empty_library):
    make("retry", "Alpha", description="mentions zebras")
    make("retry", "Beta")
    html = admin_client.get(CHANGELIST + "?q=zebras").content.decode()
    assert "Alpha" in html and ">Beta<" not in html
    html = admin_client.get(CHANGELIST + "?q=beta").content.decode()
    assert ">Beta<" in html and ">Alpha<" not in html


def test_it_orders_by_order(admin_client, empty_library):
    make("retry", "Second", order=2)
    make("retry", "First", order=1)
    html = admin_client.get(CHANGELIST).content.decode()
    assert html.index("First") < html.index("Second")


def test_publishing_from_the_list_saves_featured_published_and_order(admin_client,
                                                                     empty_library):
    scenario = make("retry", "Draft")
    response = admin_client.post(CHANGELIST, {
        "form-TOTAL_FORMS": "1", "form-INITIAL_FORMS": "1", "form-MIN_NUM_FORMS": "0",
        "form-MAX_NUM_FORMS": "1000", "form-0-id": str(scenario.pk),
        "form-0-published": "on", "form-0-featured": "on", "form-0-order": "7",
        "_save": "Save"})
    assert response.status_code == 302
    scenario.refresh_from_db()
    assert (scenario.published, scenario.featured, scenario.order) == (True, True, 7)


# ---- the form ------------------------------------------------------------------------------

def test_a_good_scenario_is_stored_validated(admin_client, empty_library):
    doc = catalog.get("timeout").canonical()
    response = admin_client.post(ADD, form_post(pattern="timeout", document=json.dumps(doc)))
    assert response.status_code == 302
    scenario = Scenario.objects.get()
    assert scenario.document == validate(doc)  # defaults filled in, as the API stores it
    assert scenario.published and scenario.order == 5


def test_a_bad_document_names_the_field_and_stores_nothing(admin_client, empty_library):
    doc, field = bad_workers()
    response = admin_client.post(ADD, form_post(document=json.dumps(doc)))
    assert response.status_code == 200
    errors = response.context["adminform"].form.errors
    assert list(errors) == ["document"]
    assert errors["document"] == [f"{field}: must be ≥ 1"]
    assert f"{field}: must be ≥ 1" in response.content.decode()
    assert not Scenario.objects.exists()


def test_a_json_syntax_error_is_said_with_its_place(admin_client, empty_library):
    response = admin_client.post(ADD, form_post(document='{"nodes": [}'))
    errors = response.context["adminform"].form.errors
    assert list(errors) == ["document"]
    assert errors["document"][0].startswith("not valid JSON:")
    assert "line 1, column" in errors["document"][0]
    assert not Scenario.objects.exists()


def test_a_document_of_another_pattern_is_refused(admin_client, empty_library):
    response = admin_client.post(ADD, form_post(pattern="retry",
                                                document=json.dumps(canonical("timeout"))))
    errors = response.context["adminform"].form.errors
    assert "document" in errors and "retry" in errors["document"][0]
    assert not Scenario.objects.exists()


def test_an_empty_document_starts_from_the_canonical_topology(admin_client, empty_library):
    response = admin_client.post(ADD, form_post(pattern="circuit-breaker", document=""))
    assert response.status_code == 302
    assert Scenario.objects.get().document == canonical("circuit-breaker")


def test_an_empty_document_without_a_pattern_is_an_error(admin_client, empty_library):
    response = admin_client.post(ADD, form_post(pattern="", document=""))
    errors = response.context["adminform"].form.errors
    assert set(errors) == {"pattern", "document"}
    assert not Scenario.objects.exists()


def test_an_unknown_pattern_is_refused(admin_client, empty_library):
    response = admin_client.post(ADD, form_post(pattern="no-such-pattern"))
    assert "pattern" in response.context["adminform"].form.errors
    assert not Scenario.objects.exists()


def test_the_change_form_shows_the_document_and_a_preview(admin_client, empty_library):
    scenario = make("retry", "Editable")
    html = admin_client.get(f"{CHANGELIST}{scenario.pk}/change/").content.decode()
    assert f'href="/s/{scenario.pk}"' in html
    assert "&quot;nodes&quot;: [" in html  # indented JSON in the textarea


# ---- export and import -------------------------------------------------------------------

def export(admin_client, scenarios: list[Scenario]):
    return admin_client.post(CHANGELIST, {"action": "export_selected", "index": "0",
                                          "_selected_action": [s.pk for s in scenarios]})


def test_export_selected_returns_a_json_file(admin_client, empty_library):
    a = make("retry", "Exported A", description="first", featured=True, order=1)
    b = make("timeout", "Exported B", published=True, order=2)
    make("timeout", "Not selected")
    response = export(admin_client, [a, b])
    assert response.status_code == 200
    assert response["Content-Type"] == "application/json"
    assert response["Content-Disposition"].startswith('attachment; filename="scenarios-')
    data = json.loads(response.content)
    assert [item["title"] for item in data] == ["Exported A", "Exported B"]
    assert data[0] == {"pattern": "retry", "title": "Exported A", "description": "first",
                       "document": a.document, "featured": True, "order": 1,
                       "published": False}


def upload(admin_client, content: bytes):
    return admin_client.post(IMPORT, {"file": SimpleUploadedFile(
        "scenarios.json", content, content_type="application/json")})


def test_an_exported_file_imports_back(admin_client, empty_library):
    a = make("retry", "Round trip A", description="first", featured=True)
    b = make("timeout", "Round trip B", published=True, order=3)
    content = export(admin_client, [a, b]).content
    Scenario.objects.all().delete()
    response = upload(admin_client, content)
    assert response.status_code == 302
    assert response["Location"] == CHANGELIST
    stored = {s.title: s for s in Scenario.objects.all()}
    assert set(stored) == {"Round trip A", "Round trip B"}
    assert stored["Round trip A"].as_json() == a.as_json()
    assert stored["Round trip B"].as_json() == b.as_json()


def test_the_import_page_renders(admin_client):
    response = admin_client.get(IMPORT)
    assert response.status_code == 200
    assert b'type="file"' in response.content


def test_a_schema_invalid_file_stores_nothing_and_names_item_and_field(admin_client,
                                                                       empty_library):
    doc, field = bad_workers()
    items = [
        {"pattern": "request-response", "title": "Fine", "document": canonical()},
        {"pattern": "request-response", "title": "Broken", "document": doc},
    ]
    response = upload(admin_client, json.dumps(items).encode())
    assert response.status_code == 400
    html = response.content.decode()
    assert "Nothing was imported" in html
    assert f"item 2 (“Broken”): document: {field}: must be ≥ 1" in html
    assert not Scenario.objects.exists()  # not even the good first item


@pytest.mark.parametrize(("content", "problem"), [
    (b'[{"title": ', "the file is not valid JSON"),
    (b'{"title": "x"}', "the file must hold a list of scenarios"),
    (b"[]", "the file holds no scenarios"),
    (b'[42]', "item 1: must be an object"),
    (b'[{"title": "T", "document": {}}]', "item 1 (“T”): pattern: is required"),
    (b'[{"pattern": "retry", "title": "T", "document": {"nodes": []}, "colour": 1}]',
     "item 1 (“T”): colour: unknown field"),
    (b'[{"pattern": "retry", "title": "T", "document": {"nodes": []}, "featured": 1}]',
     "item 1 (“T”): featured: must be true or false"),
    (b'[{"pattern": "retry", "title": "T", "document": {"nodes": []}, "order": true}]',
     "item 1 (“T”): order: must be a whole number"),
    (b'[{"pattern": "gone", "title": "T", "document": {"nodes": []}}]',
     "item 1 (“T”): pattern: unknown pattern"),
    (b'[{"pattern": "retry", "title": "T", "document": {"nodes": []}}]',
     "item 1 (“T”): document: nodes: must hold at least one node"),
])
def test_a_malformed_file_stores_nothing_and_says_why(admin_client, empty_library, content,
                                                      problem):
    before = Scenario.objects.count()
    response = upload(admin_client, content)
    assert response.status_code == 400
    assert problem in response.content.decode()
    assert Scenario.objects.count() == before


def test_markup_in_an_import_problem_is_text(admin_client, empty_library):
    content = json.dumps([{"pattern": "<b>x</b>", "title": "<script>alert(1)</script>",
                           "document": canonical()}]).encode()
    html = upload(admin_client, content).content.decode()
    assert "<script>alert(1)</script>" not in html
    assert "&lt;script&gt;" in html


# ---- what the app stores, read-mostly ---------------------------------------------------

def test_topologies_and_runs_are_listed_but_not_added(admin_client):
    topology = Topology.objects.create(title="Shared one", pattern="retry",
                                       document=canonical("retry"))
    run = Run.objects.create(pattern="retry", document=canonical("retry"), seed=7,
                             status=Run.Status.FAILED, error="boom")
    html = admin_client.get("/admin/playground/topology/?q=Shared").content.decode()
    assert topology.slug in html and f'href="/t/{topology.slug}"' in html
    html = admin_client.get("/admin/playground/run/?status__exact=failed").content.decode()
    assert run.id in html and f'href="/r/{run.id}"' in html
    assert admin_client.get("/admin/playground/topology/add/").status_code == 403
    assert admin_client.get("/admin/playground/run/add/").status_code == 403
    detail = admin_client.get(f"/admin/playground/run/{run.id}/change/").content.decode()
    assert 'name="seed"' not in detail  # shown, not editable


# ---- the shipped library -------------------------------------------------------------------

def test_the_data_migration_ships_one_curated_scenario_per_pattern(empty_library):
    migration = importlib.import_module("playground.migrations.0003_curated_scenarios")
    migration.add_curated(apps, None)
    migration.add_curated(apps, None)  # running it again adds nothing
    scenarios = {s.pattern: s for s in Scenario.objects.all()}
    assert Scenario.objects.count() == len(migration.CURATED)
    assert set(scenarios) == set(migration.CURATED) <= set(catalog.PATTERNS)
    for slug, scenario in scenarios.items():
        pattern = catalog.get(slug)
        assert scenario.published and scenario.featured
        assert scenario.document == canonical(slug)
        assert scenario.document["scenario"]["faults"], "the teaching fault is there"
        for observation in pattern.OBSERVATIONS:
            assert observation in scenario.description
    migration.remove_curated(apps, None)
    assert not Scenario.objects.exists()


def test_the_data_migration_skips_a_pattern_that_is_gone(empty_library, monkeypatch):
    migration = importlib.import_module("playground.migrations.0003_curated_scenarios")
    # A copy without it: deleting from the registry itself would reorder it when restored.
    monkeypatch.setattr(catalog, "PATTERNS",
                        {slug: p for slug, p in catalog.PATTERNS.items() if slug != "retry"})
    migration.add_curated(apps, None)
    assert "retry" not in set(Scenario.objects.values_list("pattern", flat=True))
    assert Scenario.objects.count() == len(migration.CURATED) - 1


def test_every_registered_pattern_ships_a_curated_scenario():
    """A new pattern comes with a data migration adding its scenario (playground/curation.py)."""
    shipped = set(Scenario.objects.filter(published=True, featured=True)
                  .values_list("pattern", flat=True))
    assert set(catalog.PATTERNS) <= shipped
