"""Replay and verification: a run re-simulated from its stored document, seed and recorded
interventions gives the same event stream, byte for byte; a run whose stream expired is
played again from a re-simulation."""

from __future__ import annotations

import json
import time
from itertools import pairwise

import orjson
import pytest

from patterns.live import replay
from playground import replays, streams
from playground.models import Run
from tests.web.stored import forget, stored_run
from tests.web.test_consumer import communicate
from tests.web.test_worker import events_of, start_run, stream_entries, wait_for

CRASH = {"action": "inject", "fault": {"target": "api", "action": "crash", "until_s": 2}}


@pytest.fixture
def cleanup():
    ids: list[str] = []
    yield ids.append
    for run_id in ids:
        forget(run_id)


def verify(client, run_id: str) -> dict:
    response = client.get(f"/api/runs/{run_id}/verify")
    assert response.status_code == 200
    return response.json()


@pytest.mark.django_db
def test_a_stored_run_with_interventions_verifies(client, cleanup):
    run = stored_run(controls={5: [CRASH], 10: [{"action": "speed", "value": 4}],
                               20: [{"action": "stop"}]})
    cleanup(run.id)
    assert run.status == "cancelled"
    assert [i["action"] for i in run.interventions] == ["inject", "stop"]
    result = verify(client, run.id)
    assert result["verified"] is True and result["first_difference"] is None
    assert result["events"] == len(events_of(run.id)) > 1000
    assert len(result["sha256"]) == 64


@pytest.mark.django_db
def test_a_changed_event_is_found_and_named(client, cleanup):
    run = stored_run()
    cleanup(run.id)
    r = streams.client()
    entries = stream_entries(run.id)
    # Rewrite the stream with one event of frame 3 changed.
    r.delete(streams.stream_key(run.id))
    for seq, frame in entries:
        if "events" in frame:
            if seq == 3:
                frame["events"][2] = {**frame["events"][2], "t": frame["events"][2]["t"] + 0.001}
            streams.append_frame(r, run.id, frame)
    streams.append_end(r, run.id, entries[-2][0], run.status, run.summary)
    index = sum(len(f["events"]) for s, f in entries if s < 3) + 2
    result = verify(client, run.id)
    assert result["verified"] is False and result["events"] == index
    diff = result["first_difference"]
    assert diff["index"] == index and diff["stored"]["t"] == diff["replayed"]["t"] + 0.001


@pytest.mark.django_db
def test_interventions_matter_a_run_without_them_does_not_verify(client, cleanup):
    run = stored_run(controls={5: [CRASH]})
    cleanup(run.id)
    Run.objects.filter(id=run.id).update(interventions=[])
    result = verify(client, run.id)
    assert result["verified"] is False
    assert result["first_difference"]["stored"] != result["first_difference"]["replayed"]


@pytest.mark.django_db
def test_what_cannot_be_verified_says_why(client, cleanup):
    running = Run.objects.create(pattern="request-response", document={}, seed=1,
                                 status=Run.Status.RUNNING, started=None)
    streams.heartbeat(streams.client(), running.id)
    cleanup(running.id)
    result = verify(client, running.id)
    assert result["verified"] is None and "not ended" in result["reason"]

    run = stored_run()
    cleanup(run.id)
    forget(run.id)
    result = verify(client, run.id)
    assert result["verified"] is None and "no longer stored" in result["reason"]

    assert client.get("/api/runs/nope/verify").status_code == 404


@pytest.mark.django_db
def test_an_expired_stream_is_refilled_with_the_same_events(client, cleanup):
    run = stored_run(controls={8: [CRASH], 20: [{"action": "stop"}]})
    cleanup(run.id)
    original = orjson.dumps(events_of(run.id))
    last_t1 = stream_entries(run.id)[-2][1]["t1"]
    forget(run.id)
    frames = replays.refill(run.id)
    assert frames > 1 and replays.refill(run.id) == 0  # only once
    entries = stream_entries(run.id)
    assert [s for s, _ in entries] == list(range(1, frames + 2))
    assert orjson.dumps(events_of(run.id)) == original
    framed = [f for _, f in entries if "events" in f]
    assert all(a["t1"] == b["t0"] for a, b in pairwise(framed))
    assert framed[-1]["t1"] == last_t1  # the stop
    end = entries[-1][1]
    assert end["resimulated"] is True and end["status"] == "cancelled"
    assert end["summary"] == run.summary
    # A re-simulation is not compared with itself.
    result = verify(client, run.id)
    assert result["verified"] is None and "re-simulated" in result["reason"]


@pytest.mark.django_db
def test_a_failed_run_is_not_refilled(cleanup):
    run = stored_run()
    cleanup(run.id)
    forget(run.id)
    Run.objects.filter(id=run.id).update(status=Run.Status.FAILED)
    assert replays.refill(run.id) == 0
    assert not streams.client().exists(streams.stream_key(run.id))


# ---- with a real worker ---------------------------------------------------------------------

@pytest.mark.slow
def test_a_live_run_with_an_inject_and_a_stop_replays_byte_identically(client, worker,
                                                                       cleanup):
    run_id = start_run(client, slug="request-response", mode="live", speed=4)
    cleanup(run_id)
    r = streams.client()
    wait_for(lambda: streams.last_frame(r, run_id)[0] >= 8)
    streams.push_control(r, run_id, {"action": "inject", "fault": {
        "target": "api", "action": "crash", "until_s": 20}})
    at = streams.last_frame(r, run_id)[0]
    wait_for(lambda: streams.last_frame(r, run_id)[0] >= at + 10)
    streams.push_control(r, run_id, {"action": "stop"})
    run = wait_for(lambda: Run.objects.filter(id=run_id, status="cancelled").first())
    assert [i["action"] for i in run.interventions] == ["inject", "stop"]

    # The stored bytes, re-encoded, are the stored bytes; and the re-simulation matches.
    raw = [fields[b"f"] for _, fields in r.xrange(streams.stream_key(run_id)) if b"f" in fields]
    assert all(orjson.dumps(orjson.loads(b)) == b for b in raw)
    stored = b"".join(orjson.dumps(e) for b in raw for e in orjson.loads(b)["events"])
    replayed = b"".join(orjson.dumps(e)
                        for e in replay(run.document, run.interventions, run.mode))
    assert replayed == stored
    assert any(e["k"] == "node.down" for e in events_of(run_id))

    result = verify(client, run_id)
    assert result["verified"] is True and result["events"] == len(events_of(run_id))

    # Once its stream has expired, opening it again re-simulates it through a worker and
    # the websocket plays the same events.
    forget(run_id)
    got: list[dict] = []

    async def script(ws, connected, _):
        assert connected
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            message = json.loads(await ws.receive_from(timeout=30))
            if message.get("type") == "end":
                got.append(message)
                return
            got.append(message)
            await ws.send_to(text_data=json.dumps({"action": "ack", "seq": message["seq"]}))

    communicate(f"/ws/runs/{run_id}/", script)
    assert got[-1]["type"] == "end" and got[-1]["resimulated"] is True
    assert got[-1]["summary"] == run.summary
    assert b"".join(orjson.dumps(e) for f in got[:-1] for e in f["events"]) == stored
