"""Exports of a run's events as JSONL and CSV: from its stream, or re-simulated once it has
expired; and clear JSON errors when there is nothing to export."""

from __future__ import annotations

import csv
import io

import orjson
import pytest

from playground.models import Run
from tests.web.stored import forget, stored_run
from tests.web.test_worker import events_of

pytestmark = pytest.mark.django_db


@pytest.fixture
def run():
    run = stored_run("retry", controls={4: [{"action": "inject", "fault": {
        "target": "service", "action": "crash", "until_s": 1}}]})
    yield run
    forget(run.id)


def body(response) -> bytes:
    return b"".join(response.streaming_content)


def test_jsonl_holds_every_event_a_line(client, run):
    response = client.get(f"/api/runs/{run.id}/events.jsonl")
    assert response.status_code == 200
    assert response["Content-Type"] == "application/x-ndjson"
    assert response["Content-Disposition"] == f'attachment; filename="run-{run.id}.jsonl"'
    lines = body(response).splitlines()
    assert [orjson.loads(line) for line in lines] == events_of(run.id)


def test_csv_has_time_kind_node_edge_and_the_rest_as_json(client, run):
    response = client.get(f"/api/runs/{run.id}/events.csv")
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/csv")
    assert response["Content-Disposition"].endswith(f'filename="run-{run.id}.csv"')
    rows = list(csv.reader(io.StringIO(body(response).decode())))
    assert rows[0] == ["t", "k", "node", "edge", "data"]
    events = events_of(run.id)
    assert len(rows) == len(events) + 1
    for row, event in zip(rows[1:], events, strict=True):
        t, k, node, edge, data = row
        assert float(t) == event["t"] and k == event["k"]
        assert node == str(event.get("node", "")) and edge == str(event.get("e", ""))
        rest = {key: v for key, v in event.items() if key not in ("t", "k", "node", "e")}
        assert (orjson.loads(data) if data else {}) == rest
    kinds = {row[1] for row in rows[1:]}
    assert {"msg.send", "metric", "fault"} <= kinds
    assert any(row[3] for row in rows[1:] if row[1] == "msg.send")  # the edge column


def test_an_expired_run_is_exported_from_its_re_simulation(client, run):
    before = body(client.get(f"/api/runs/{run.id}/events.jsonl"))
    forget(run.id)
    after = client.get(f"/api/runs/{run.id}/events.jsonl")
    assert after.status_code == 200 and body(after) == before


def test_a_failed_run_whose_frames_expired_has_nothing_to_export(client, run):
    forget(run.id)
    Run.objects.filter(id=run.id).update(status=Run.Status.FAILED)
    for suffix in ("jsonl", "csv"):
        response = client.get(f"/api/runs/{run.id}/events.{suffix}")
        assert response.status_code == 410
        assert response.json()["field"] == "id" and "no longer stored" in response.json()["error"]


def test_an_unknown_run_is_a_404_in_json(client):
    for suffix in ("jsonl", "csv"):
        response = client.get(f"/api/runs/nope/events.{suffix}")
        assert response.status_code == 404 and response.json()["field"] == "id"


def test_exports_are_read_only(client, run):
    assert client.post(f"/api/runs/{run.id}/events.jsonl").status_code == 405
