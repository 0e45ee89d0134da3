"""The JSON API: good requests, and bad ones that get a 4xx naming the field, storing nothing."""

import json

import pytest
from django.test import Client

from playground.models import Run, Topology

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def no_enqueue(monkeypatch):
    """These tests stop at the queue: the task is checked with a real worker elsewhere."""
    sent = []
    monkeypatch.setattr("playground.tasks.simulate_run.delay", sent.append)
    return sent


def post(client: Client, url: str, body) -> tuple[int, dict]:
    response = client.post(url, data=json.dumps(body) if not isinstance(body, str) else body,
                           content_type="application/json")
    return response.status_code, response.json()


def test_it_lists_the_patterns_with_parameter_declarations(client):
    data = client.get("/api/patterns").json()
    slugs = {p["slug"] for p in data["patterns"]}
    assert "request-response" in slugs
    service = data["kinds"]["service"]
    workers = next(p for p in service["params"] if p["name"] == "workers")
    assert workers == {"name": "workers", "type": "int", "default": 4, "min": 1,
                       "max": 10_000, "help": "Calls served at once."}
    assert any(p["name"] == "latency_ms" for p in data["edge_params"])


def test_it_shows_a_pattern_with_its_baseline(client):
    data = client.get("/api/patterns/request-response").json()
    assert data["pattern"]["slug"] == "request-response"
    assert data["topology"]["scenario"]["faults"]
    assert data["baseline"]["variant"] == "baseline"


def test_an_unknown_pattern_is_a_404_in_json(client):
    response = client.get("/api/patterns/nope")
    assert response.status_code == 404
    assert response.json()["field"] == "slug"


def test_it_creates_a_run_from_a_pattern_slug(client, no_enqueue,
                                              django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        status, data = post(client, "/api/runs", {"slug": "request-response", "seed": 7})
    assert status == 201
    run = Run.objects.get(id=data["id"])
    assert data["ws_url"] == f"/ws/runs/{run.id}/"
    assert run.seed == 7 and run.status == "queued" and run.pattern == "request-response"
    assert no_enqueue == [run.id]


def test_it_creates_a_baseline_run(client):
    status, data = post(client, "/api/runs", {"slug": "request-response", "baseline": True})
    assert status == 201
    assert Run.objects.get(id=data["id"]).document["variant"] == "baseline"


def test_it_creates_a_run_from_a_document(client):
    doc = {"nodes": [{"id": "c", "kind": "client"}, {"id": "s", "kind": "service"}],
           "edges": [{"id": "e", "from": "c", "to": "s"}]}
    status, data = post(client, "/api/runs", {"topology": doc, "mode": "fast", "speed": 10})
    assert status == 201
    run = Run.objects.get(id=data["id"])
    assert run.mode == "fast" and run.speed == 10
    assert run.document["nodes"][1]["params"]["workers"] == 4  # defaults filled


@pytest.mark.parametrize(("body", "field"), [
    ({"topology": {"nodes": [{"id": "c", "kind": "client", "params": {"rate_rps": -1}}]}},
     "topology.nodes[0].params.rate_rps"),
    ({"topology": {"nodes": [{"id": "c", "kind": "warp_drive"}]}}, "topology.nodes[0].kind"),
    ({"topology": {"nodes": [{"id": "c", "kind": "client"}],
                   "edges": [{"id": "e", "from": "c", "to": "ghost"}]}}, "topology.edges[0].to"),
    ({"topology": {"nodes": [{"id": f"n{i}", "kind": "service"} for i in range(10_000)]}},
     "topology.nodes"),
    ({"slug": "no-such-thing"}, "slug"),
    ({"slug": "request-response", "speed": 0}, "speed"),
    ({"slug": "request-response", "speed": "fast"}, "speed"),
    ({"slug": "request-response", "mode": "warp"}, "mode"),
    ({"slug": "request-response", "seed": -3}, "seed"),
    ({}, "topology"),
    ([1, 2], ""),
    ("{not json", ""),
])
def test_bad_run_requests_name_the_field_and_store_nothing(client, body, field):
    status, data = post(client, "/api/runs", body)
    assert status == 400
    assert data["field"] == field
    assert data["error"]
    assert Run.objects.count() == 0


def test_a_form_post_is_refused(client):
    response = client.post("/api/runs", {"slug": "request-response"})
    assert response.status_code == 415
    assert Run.objects.count() == 0


def test_get_on_a_post_endpoint_is_405(client):
    assert client.get("/api/runs").status_code == 405


def test_an_unknown_run_is_a_404(client):
    assert client.get("/api/runs/nope").status_code == 404


def test_it_saves_and_returns_a_topology(client):
    doc = {"title": "<script>alert(1)</script>", "nodes": [{"id": "c", "kind": "client"}]}
    status, data = post(client, "/api/topologies", doc)
    assert status == 201
    assert len(data["slug"]) >= 22  # 128 random bits, base64url
    saved = client.get(f"/api/topologies/{data['slug']}").json()
    assert saved["title"] == doc["title"]
    assert saved["nodes"][0]["params"]["rate_rps"] == 10.0


def test_a_bad_topology_is_not_saved(client):
    status, data = post(client, "/api/topologies", {"nodes": [{"id": "c", "kind": "client",
                                                               "label": "x" * 81}]})
    assert status == 400
    assert data["field"] == "nodes[0].label"
    assert Topology.objects.count() == 0
