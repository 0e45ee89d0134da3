"""Timeout: bounded waits, timed-out calls counted, wasted work, deadline propagation."""

import pytest

from patterns.catalog.reliability.timeout import TAIL_MS, TIMEOUT_MS
from tests.helpers import document, events, run

PROPAGATE = "a-b.deadline_propagation=true"


def chain(*, a_ms=1.0, b_ms=1.0, a_workers=50, b_workers=50, ab_timeout=None,
          client_timeout=None, propagation=False, rate=100, duration_s=10, faults=None):
    """client → a → b, with the timeout and propagation under test."""
    return document(
        [{"id": "c", "kind": "client", "params": {"rate_rps": rate,
                                                 "timeout_ms": client_timeout}},
         {"id": "a", "kind": "service", "params": {"workers": a_workers,
                                                  "service_time_ms": a_ms}},
         {"id": "b", "kind": "service", "params": {"workers": b_workers,
                                                  "service_time_ms": b_ms}}],
        [{"id": "c-a", "from": "c", "to": "a",
          "params": {"deadline_propagation": propagation}},
         {"id": "a-b", "from": "a", "to": "b",
          "params": {"timeout_ms": ab_timeout, "deadline_propagation": propagation}}],
        duration_s=duration_s, faults=faults)


def call_waits(evs, edge_id):
    """{message id: (how long the caller waited, how the call ended)} on one edge."""
    sent, ends = {}, {}
    for ev in evs:
        if ev.get("e") != edge_id:
            continue
        if ev["k"] == "msg.send" and ev["dir"] == "req":
            sent[ev["id"]] = ev["t"]
        elif ev["k"] == "msg.recv" and ev["dir"] == "rep":
            assert ev["id"] not in ends, "a call ends once"
            ends[ev["id"]] = (ev["t"] - sent[ev["id"]], "answered")
        elif ev["k"] == "msg.timeout":
            assert ev["id"] not in ends, "a call ends once"
            ends[ev["id"]] = (ev["t"] - sent[ev["id"]], "timed_out")
    return ends


def test_no_caller_waits_longer_than_its_timeout():
    # b takes 0–400 ms; a gives up after 100 ms.
    doc = chain(b_ms={"dist": "uniform", "low": 0, "high": 400}, ab_timeout=100)
    evs = events(doc)
    ends = call_waits(evs, "a-b")
    assert len(ends) > 900
    assert max(wait for wait, _ in ends.values()) <= 100 + 1e-6
    timed_out = [wait for wait, how in ends.values() if how == "timed_out"]
    assert len(timed_out) == pytest.approx(0.75 * len(ends), rel=0.1)
    assert all(wait == pytest.approx(100, abs=1e-3) for wait in timed_out)
    # The client waits a's work, the timeout and two network legs at most.
    done = [ev["lat"] for ev in evs if ev["k"] == "req.done"]
    assert max(done) <= 1 + 100 + 2 * 20  # LAN legs are lognormal, p99 2 ms


def test_a_client_timeout_ends_the_request_timed_out():
    hung = [{"at_s": 0, "target": "a", "action": "hang"}]
    summary, _ = run(chain(client_timeout=200, faults=hung))
    req = summary["requests"]
    assert req["timed_out"] > 900
    assert req["timed_out"] + req["in_flight"] == req["sent"]
    assert summary["latency_ms"]["max"] == pytest.approx(200, abs=1e-6)


def test_timed_out_calls_are_counted_timed_out_and_their_late_replies_ignored():
    doc = chain(b_ms={"dist": "uniform", "low": 0, "high": 400}, ab_timeout=100)
    evs = events(doc)
    ends = call_waits(evs, "a-b")
    timed_out = {mid for mid, (_, how) in ends.items() if how == "timed_out"}
    _, sim = run(doc)
    edge = sim.network.edges["a-b"]
    assert edge.timeouts == len(timed_out) > 500
    # b still answers them, too late: the reply travels but is not delivered.
    late = {ev["id"] for ev in evs if ev["k"] == "msg.send" and ev.get("e") == "a-b"
            and ev["dir"] == "rep" and ev["id"] in timed_out}
    assert len(late) > 0.95 * len(timed_out)
    assert edge.late_replies == pytest.approx(len(late), abs=5)
    assert edge.answered + edge.timeouts <= edge.sent
    # a answers its caller with a failure that names the timeout.
    failed = sum(1 for ev in evs if ev["k"] == "req.done" and ev["outcome"] == "failed")
    assert failed == len(timed_out)


def test_without_propagation_the_callee_finishes_abandoned_work_as_waste():
    doc = chain(b_ms=500, ab_timeout=100, b_workers=100)
    summary, sim = run(doc)
    b = summary["nodes"]["b"]
    timeouts = sim.network.edges["a-b"].timeouts
    assert timeouts > 900
    assert b["expired_skipped"] == 0
    # Every call b finished was given up on: 500 ms of waste each.
    assert b["wasted_ms"] == pytest.approx(500 * b["processed"], rel=1e-6)
    assert b["processed"] >= timeouts - 50


def test_with_propagation_the_callee_stops_when_the_caller_gives_up():
    doc = chain(b_ms=500, ab_timeout=100, b_workers=100, propagation=True)
    summary, sim = run(doc)
    b = summary["nodes"]["b"]
    timeouts = sim.network.edges["a-b"].timeouts
    assert b["expired_skipped"] == timeouts > 900
    assert b["processed"] == 0
    # Only the work until the timeout was spent (100 ms less the request's network leg).
    assert b["wasted_ms"] / timeouts == pytest.approx(99.5, abs=1.0)
    assert sim.network.edges["a-b"].late_replies == 0


def test_with_propagation_downstream_work_for_an_expired_request_is_skipped():
    # a is slow (one worker, 8 ms a call at 100 req/s: a queue builds), the client gives up
    # after 100 ms. With propagation a skips the requests already given up and never calls
    # b for them; without it, a and b both work for requests nobody waits for.
    def b_calls_after_deadline(propagation):
        doc = chain(a_ms=8, a_workers=1, client_timeout=100, propagation=propagation,
                    rate=150)
        evs = events(doc)
        created = {}
        late = 0
        for ev in evs:
            if ev["k"] == "msg.send" and ev.get("e") == "c-a" and ev["dir"] == "req":
                created[ev["req"]] = ev["t"]
            elif ev["k"] == "msg.send" and ev.get("e") == "a-b" and ev["dir"] == "req":
                late += ev["t"] > created[ev["req"]] + 100
        summary, _ = run(doc)
        return late, summary

    late_without, without = b_calls_after_deadline(False)
    late_with, with_ = b_calls_after_deadline(True)
    assert late_without > 500
    assert late_with == 0
    assert with_["nodes"]["a"]["expired_skipped"] > 500
    assert with_["nodes"]["b"]["processed"] < without["nodes"]["b"]["processed"]
    assert with_["requests"]["succeeded"] > without["requests"]["succeeded"]


def test_the_teaching_fault_gives_b_a_five_second_tail_for_one_call_in_ten():
    evs = events("timeout", assignments=["a-b.timeout_ms=null"], duration_s=40)
    sent = {}
    slow = fast = 0
    for ev in evs:
        if ev.get("e") != "a-b":
            continue
        if ev["k"] == "msg.send" and ev["dir"] == "req" and ev["t"] >= 20_000:
            sent[ev["id"]] = ev["t"]
        elif ev["k"] == "msg.recv" and ev["dir"] == "rep" and ev["id"] in sent:
            if ev["t"] - sent[ev["id"]] >= TAIL_MS:
                slow += 1
            else:
                fast += 1
    assert slow / (slow + fast) == pytest.approx(0.1, abs=0.02)


def test_a_timeout_contains_the_slow_tail_and_no_timeout_lets_it_spread():
    pattern, _ = run("timeout")
    baseline, _ = run("timeout", baseline=True)
    p, b = pattern["pattern"], baseline["pattern"]
    # Healthy, the timeout almost never fires: it sits above B's p99.9.
    assert p["p99_before_fault_ms"] == b["p99_before_fault_ms"] < 100
    # With the timeout, A stays responsive: p99 ≈ the timeout, no queue, no rejections.
    assert p["p99_during_fault_ms"] < TIMEOUT_MS + 20
    assert p["a_queue_max"] == 0 and p["a_rejected"] == 0
    assert p["timed_out_calls"] == pytest.approx(0.1 * 100 * 20, rel=0.15)
    assert p["caller_wait_max_ms"] <= TIMEOUT_MS
    assert pattern["requests"]["failed"] == p["timed_out_calls"]
    # Without it, every A worker is stuck on B and everything behind A follows B's tail.
    assert b["a_workers_busy_max"] == 16
    assert b["a_queue_max"] == 1000 and b["a_rejected"] > 100
    assert b["p99_during_fault_ms"] > 2 * TAIL_MS
    assert b["caller_wait_max_ms"] >= TAIL_MS
    # B did the 5 s of work for every call A gave up on.
    assert p["wasted_work_s"] == pytest.approx(p["timed_out_calls"] * TAIL_MS / 1000, rel=0.05)
    assert all(c["ok"] for c in pattern["checks"] + baseline["checks"])


def test_propagating_the_deadline_cuts_the_wasted_work():
    summary, _ = run("timeout", assignments=[PROPAGATE])
    figures = summary["pattern"]
    assert figures["b_skipped_expired"] == figures["timed_out_calls"] > 150
    assert figures["wasted_work_s"] == pytest.approx(
        figures["timed_out_calls"] * TIMEOUT_MS / 1000, rel=0.05)
