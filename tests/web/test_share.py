"""Sharing by link: unguessable slugs, links that never change, forks that say where they
came from, the dry-run validation an import uses, and user text shown as text."""

from __future__ import annotations

import base64
import json
import re
from itertools import pairwise

import pytest
from django.test import Client

from patterns.run import prepare
from playground.models import Run, Topology

pytestmark = pytest.mark.django_db

MARKUP_TITLE = '<img src=x onerror="window.__xss=1">'
MARKUP_LABEL = "<script>window.__xss=1</script>"


def post(client: Client, url: str, body) -> tuple[int, dict]:
    response = client.post(url, data=body if isinstance(body, str) else json.dumps(body),
                           content_type="application/json")
    return response.status_code, response.json()


@pytest.fixture
def document() -> dict:
    return prepare("request-response")


def save(client: Client, doc: dict, **extra) -> dict:
    status, data = post(client, "/api/topologies", {**doc, **extra})
    assert status == 201, data
    return data


# ---- slugs ----------------------------------------------------------------------------------

def test_slugs_carry_128_random_bits_and_cannot_be_enumerated(client, document):
    slugs = [save(client, document)["slug"] for _ in range(64)]
    assert len(set(slugs)) == len(slugs)
    raw = []
    for slug in slugs:
        assert len(slug) >= 22 and re.fullmatch(r"[A-Za-z0-9_-]+", slug)
        decoded = base64.urlsafe_b64decode(slug + "=" * (-len(slug) % 4))
        assert len(decoded) >= 16  # ≥ 128 bits
        raw.append(int.from_bytes(decoded, "big"))
    # Not sequential: consecutive slugs share no long prefix and are far apart as numbers,
    # and the bits are balanced as random bits are (64 × 128 bits: ~50 % ones).
    assert all(a[:6] != b[:6] for a, b in pairwise(slugs))
    assert all(abs(a - b) > 2**64 for a, b in pairwise(raw))
    ones = sum(bin(n).count("1") for n in raw) / (len(raw) * 128)
    assert 0.45 < ones < 0.55


def test_an_unknown_slug_is_a_404_in_json_and_a_404_page(client, document):
    saved = save(client, document)
    neighbour = saved["slug"][:-1] + ("A" if saved["slug"][-1] != "A" else "B")
    for slug in (neighbour, "1", "x" * 22):
        response = client.get(f"/api/topologies/{slug}")
        assert response.status_code == 404
        assert response.json() == {"error": "no such topology", "field": "slug"}
        assert client.get(f"/t/{slug}").status_code == 404


# ---- saving again, forks --------------------------------------------------------------------

def test_saving_again_makes_a_new_link_and_the_old_one_keeps_its_document(client, document):
    first = save(client, document)
    changed = {**document, "scenario": {**document["scenario"], "seed": 99}}
    second = save(client, changed, forked_from=first["slug"])
    assert second["slug"] != first["slug"] and second["url"] == f"/t/{second['slug']}"
    assert client.get(f"/api/topologies/{first['slug']}").json()["scenario"]["seed"] == 42
    assert client.get(f"/api/topologies/{second['slug']}").json()["scenario"]["seed"] == 99


def test_a_fork_records_and_shows_where_it_came_from(client, document):
    parent = save(client, {**document, "title": "Original"})
    child = save(client, document, forked_from=parent["slug"])
    assert child["forked_from"] == parent["slug"]
    stored = Topology.objects.get(slug=child["slug"])
    assert stored.forked_from.slug == parent["slug"]
    assert "forked_from" not in stored.document  # the document stays a document
    page = client.get(child["url"]).content.decode()
    assert re.search(rf'forked from <a href="/t/{re.escape(parent["slug"])}">Original</a>',
                     page)
    assert ">Fork</button>" in page
    # The parent's own page names no parent.
    assert "data-forked-from" not in client.get(parent["url"]).content.decode()


@pytest.mark.parametrize("value", ["nope", "x" * 200, 7, ["a"], {"slug": "a"}])
def test_a_fork_of_something_unknown_is_refused_naming_the_field(client, document, value):
    before = Topology.objects.count()
    status, data = post(client, "/api/topologies", {**document, "forked_from": value})
    assert status == 400 and data["field"] == "forked_from" and data["error"]
    assert Topology.objects.count() == before


def test_a_null_fork_is_a_plain_save(client, document):
    data = save(client, document, forked_from=None)
    assert data["forked_from"] is None
    assert Topology.objects.get(slug=data["slug"]).forked_from is None


def test_a_run_page_of_a_saved_topology_links_back_and_forks_from_it(client, document,
                                                                    monkeypatch):
    monkeypatch.setattr("playground.tasks.simulate_run.delay", lambda run_id: None)
    saved = save(client, {**document, "title": "Shared"})
    status, created = post(client, "/api/runs", {"slug": saved["slug"]})
    assert status == 201
    page = client.get(created["url"]).content.decode()
    assert f'from the saved topology <a href="/t/{saved["slug"]}">Shared</a>' in page
    boot = json.loads(re.search(r'<script id="boot" type="application/json">(.*?)</script>',
                                page).group(1))
    assert boot["source"] == saved["slug"] and boot["run"] == created["id"]


# ---- the dry run an import uses -------------------------------------------------------------

def test_validate_returns_the_normalised_document_and_stores_nothing(client):
    before = Topology.objects.count()
    status, data = post(client, "/api/topologies/validate", {
        "nodes": [{"id": "a", "kind": "client"}, {"id": "b", "kind": "service"}],
        "edges": [{"id": "e", "from": "a", "to": "b"}]})
    assert status == 200
    doc = data["document"]
    assert doc["version"] == 1 and doc["scenario"]["seed"] == 42
    assert doc["nodes"][1]["params"]["workers"] == 4  # defaults filled in
    assert Topology.objects.count() == before


@pytest.mark.parametrize(("body", "field"), [
    ("{not json", ""),
    ("[1, 2]", ""),
    ({"nodes": []}, "nodes"),
    ({"nodes": [{"id": "a", "kind": "warp-drive"}]}, "nodes[0].kind"),
    ({"nodes": [{"id": "a", "kind": "service", "params": {"workers": 0}}]},
     "nodes[0].params.workers"),
    ({"nodes": [{"id": "a", "kind": "service"}], "edges": [{"id": "e", "from": "a",
                                                          "to": "zz"}]}, "edges[0].to"),
    ({"nodes": [{"id": "a", "kind": "service"}], "colour": "red"}, "colour"),
])
def test_validate_names_what_is_wrong(client, body, field):
    before = Topology.objects.count()
    status, data = post(client, "/api/topologies/validate", body)
    assert status == 400 and data["field"] == field and data["error"]
    assert Topology.objects.count() == before


def test_validate_takes_only_posted_json(client):
    assert client.get("/api/topologies/validate").status_code == 405
    response = client.post("/api/topologies/validate", data="a=1",
                           content_type="application/x-www-form-urlencoded")
    assert response.status_code == 415


# ---- user text is text ------------------------------------------------------------------------

def test_a_title_and_labels_holding_markup_are_escaped_on_the_pages(client, document,
                                                                    monkeypatch):
    monkeypatch.setattr("playground.tasks.simulate_run.delay", lambda run_id: None)
    doc = {**document, "title": MARKUP_TITLE}
    doc["nodes"] = [{**doc["nodes"][0], "label": MARKUP_LABEL}, *doc["nodes"][1:]]
    saved = save(client, doc)
    child = save(client, doc, forked_from=saved["slug"])
    status, created = post(client, "/api/runs", {"slug": child["slug"]})
    assert status == 201
    for url in (saved["url"], child["url"], created["url"]):
        page = client.get(url).content.decode()
        assert "<img src=x" not in page and "<script>window" not in page
        assert "&lt;img src=x onerror=&quot;window.__xss=1&quot;&gt;" in page
        # The boot JSON carries the label with <, > escaped for a script element.
        if url == created["url"]:
            assert "\\u003Cscript\\u003Ewindow.__xss=1\\u003C/script\\u003E" in page
    assert Run.objects.get(id=created["id"]).document["nodes"][0]["label"] == MARKUP_LABEL
