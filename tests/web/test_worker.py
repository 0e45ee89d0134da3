"""Runs on a real Celery worker process, through the real Redis: finishing, controls, and
what happens when the worker dies mid-run."""

from __future__ import annotations

import itertools
import json
import time

import orjson
import pytest

from playground import streams
from playground.models import Run

pytestmark = pytest.mark.slow


def start_run(client, **body) -> str:
    response = client.post("/api/runs", data=json.dumps(body), content_type="application/json")
    assert response.status_code == 201, response.content
    return response.json()["id"]


def wait_for(predicate, timeout: float = 60.0, every: float = 0.1):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(every)
    raise AssertionError("timed out waiting")


def stream_entries(run_id: str) -> list[tuple[int, dict]]:
    out = []
    for entry_id, fields in streams.client().xrange(streams.stream_key(run_id)):
        seq = int(entry_id.split(b"-")[0])
        out.append((seq, orjson.loads(fields.get(b"f") or fields[b"end"])))
    return out


def events_of(run_id: str) -> list[dict]:
    return [e for _, frame in stream_entries(run_id) if "events" in frame
            for e in frame["events"]]


def test_a_fast_run_finishes_with_its_summary(client, worker):
    run_id = start_run(client, slug="request-response", mode="fast")
    run = wait_for(lambda: Run.objects.filter(id=run_id, status="finished").first())
    assert run.summary["requests"]["sent"] > 10_000
    assert run.attempts == 1
    entries = stream_entries(run_id)
    assert [seq for seq, _ in entries] == list(range(1, len(entries) + 1))
    assert entries[-1][1]["type"] == "end" and entries[-1][1]["status"] == "finished"
    assert client.get(f"/api/runs/{run_id}").json()["summary"] == run.summary


def test_controls_pause_speed_inject_and_stop_a_live_run(client, worker):
    run_id = start_run(client, slug="request-response", mode="live", speed=2)
    wait_for(lambda: streams.last_frame(streams.client(), run_id)[0] >= 5)
    r = streams.client()
    streams.push_control(r, run_id, {"action": "inject", "fault": {
        "target": "api", "action": "crash", "until_s": 30}})
    streams.push_control(r, run_id, {"action": "pause"})
    time.sleep(0.5)
    paused_at = streams.last_frame(r, run_id)[0]
    time.sleep(0.5)
    assert streams.last_frame(r, run_id)[0] == paused_at  # no frames while paused
    streams.push_control(r, run_id, {"action": "resume"})
    streams.push_control(r, run_id, {"action": "speed", "value": 50})
    wait_for(lambda: streams.last_frame(r, run_id)[0] > paused_at + 10)
    streams.push_control(r, run_id, {"action": "stop"})
    run = wait_for(lambda: Run.objects.filter(id=run_id, status="cancelled").first())
    actions = [i["action"] for i in run.interventions]
    assert actions == ["inject", "stop"]
    assert any(e["k"] == "node.down" and e["node"] == "api" for e in events_of(run_id))


def test_a_run_whose_worker_process_is_killed_is_redelivered_and_finishes(client, worker):
    run_id = start_run(client, slug="request-response", mode="live", speed=10)
    r = streams.client()
    wait_for(lambda: streams.last_frame(r, run_id)[0] >= 20)
    worker.kill_child()
    run = wait_for(lambda: Run.objects.filter(id=run_id, status="finished").first(),
                   timeout=90)
    assert run.attempts == 2
    entries = stream_entries(run_id)
    # No frame is lost or repeated across the two attempts, and time runs on seamlessly.
    assert [seq for seq, _ in entries] == list(range(1, len(entries) + 1))
    frames = [f for _, f in entries if "events" in f]
    assert entries[-1][1]["attempts"] == 2  # what the page tells the learner
    assert all(a["t1"] == b["t0"] for a, b in itertools.pairwise(frames))
    assert frames[-1]["t1"] == 60_000


def test_a_run_whose_whole_worker_dies_is_failed_not_left_running(client, worker_factory):
    worker = worker_factory()
    run_id = start_run(client, slug="request-response", mode="live", speed=1)
    wait_for(lambda: streams.last_frame(streams.client(), run_id)[0] >= 5)
    worker.kill_all()
    data = wait_for(lambda: (d := client.get(f"/api/runs/{run_id}").json())["status"]
                    == "failed" and d, timeout=30)
    assert "worker" in data["error"]
    entries = stream_entries(run_id)
    assert entries[-1][1]["type"] == "end" and entries[-1][1]["status"] == "failed"
