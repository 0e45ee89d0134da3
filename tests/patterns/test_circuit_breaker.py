"""Circuit breaker: CLOSED → OPEN → HALF_OPEN as Resilience4j does it, and why it matters."""

import itertools
import json

import pytest

from patterns.catalog import get
from patterns.components.circuit_breaker import CountWindow, TimeWindow
from patterns.run import prepare, simulate
from patterns.topology import TopologyError
from tests.helpers import document, events, run

EDGE = "cb-svc"  # the breaker's call to the service in the test topology
CANONICAL_EDGE = "cb-payments"


def breaker_doc(*, faults=(), duration_s=30, seed=3, rate_rps=50, timeout_ms=1000,
                service=None, edge=None, **breaker):
    """client → circuit_breaker → service; the client-breaker hop is loopback (0.05 ms)."""
    return document(
        [{"id": "c", "kind": "client", "params": {"rate_rps": rate_rps}},
         {"id": "cb", "kind": "circuit_breaker", "params": breaker},
         {"id": "svc", "kind": "service", "params": service or {"workers": 4}}],
        [{"id": "c-cb", "from": "c", "to": "cb", "params": {"latency_ms": 0.05}},
         {"id": EDGE, "from": "cb", "to": "svc",
          "params": {"timeout_ms": timeout_ms, **(edge or {})}}],
        duration_s=duration_s, seed=seed, faults=list(faults))


def failing_from(at_s, until_s=None, target="svc"):
    fault = {"at_s": at_s, "target": target, "action": "error_rate", "value": 1.0}
    if until_s is not None:
        fault["until_s"] = until_s
    return fault


def state_changes(evs, node="cb"):
    return [e for e in evs if e["k"] == "node.state" and e["node"] == node]


def intervals(evs, state, end_ms, node="cb"):
    """[(start, end)] of every span the breaker spent in ``state``."""
    out, start = [], None
    for change in state_changes(evs, node):
        if change["to"] == state:
            start = change["t"]
        elif change["from"] == state and start is not None:
            out.append((start, change["t"]))
            start = None
    if start is not None:
        out.append((start, end_ms))
    return out


def within(t, spans):
    return any(a <= t < b for a, b in spans)


def forwarded(evs, edge):
    """Request messages the breaker sent to the service: (time, request id)."""
    return [(e["t"], e["req"]) for e in evs
            if e["k"] == "msg.send" and e["e"] == edge and e["dir"] == "req"]


def call_ends(evs, edge, timeout_ms):
    """When each call over ``edge`` ended for the caller: its reply, or its timeout."""
    sent, replied = {}, {}
    for e in evs:
        if e["k"] == "msg.send" and e["e"] == edge and e["dir"] == "req":
            sent[e["id"]] = (e["t"], e["req"])
        elif e["k"] == "msg.recv" and e["e"] == edge and e["dir"] == "rep":
            replied[e["id"]] = e["t"]
    return {rid: min(replied.get(mid, t + timeout_ms), t + timeout_ms)
            for mid, (t, rid) in sent.items()}


# -- minimum number of calls --------------------------------------------------------------------
def test_it_opens_at_the_minimum_number_of_calls_not_before():
    # The service fails every call from the start: a breaker that ignored the minimum would
    # open on the very first failure.
    doc = breaker_doc(faults=[failing_from(0)], duration_s=5, minimum_number_of_calls=40)
    evs = events(doc)
    opened = state_changes(evs)[0]
    assert (opened["from"], opened["to"]) == ("CLOSED", "OPEN")
    assert "100% of the last 40 calls failed" in opened["reason"]
    replies = [e for e in evs if e["k"] == "msg.recv" and e["e"] == EDGE and e["dir"] == "rep"
               and e["t"] <= opened["t"]]
    assert len(replies) == 40


def test_a_time_window_waits_for_the_minimum_across_its_seconds():
    doc = breaker_doc(faults=[failing_from(0)], duration_s=8, sliding_window_type="time",
                      sliding_window_size=10, minimum_number_of_calls=200)
    summary, _ = run(doc)
    cb = summary["nodes"]["cb"]
    assert cb["opened_with_calls"] == [200]
    # 200 calls at 50 req/s take about 4 s.
    assert cb["states"][0]["t"] == pytest.approx(4000, abs=600)


def test_a_count_window_caps_the_minimum_at_its_size():
    # Resilience4j: min(minimum_number_of_calls, sliding_window_size) for a count window.
    doc = breaker_doc(faults=[failing_from(0)], duration_s=3, sliding_window_size=20,
                      minimum_number_of_calls=100)
    summary, _ = run(doc)
    assert summary["nodes"]["cb"]["opened_with_calls"] == [20]


# -- OPEN: fail fast, nothing downstream ----------------------------------------------------------
def test_while_open_no_call_reaches_the_service():
    evs = events("circuit-breaker")
    open_spans = intervals(evs, "OPEN", 80_000)
    assert sum(b - a for a, b in open_spans) >= 20_000
    sent = forwarded(evs, CANONICAL_EDGE)
    assert [t for t, _ in sent if within(t, open_spans)] == []
    # Not vacuous: calls did arrive during those spans, and were turned away at once.
    rejected = [e for e in evs if e["k"] == "req.done" and e["outcome"] == "rejected"
                and within(e["t"], open_spans)]
    assert len(rejected) > 900


def test_rejected_calls_fail_in_about_zero_ms():
    evs = events(breaker_doc(faults=[failing_from(5)], duration_s=20))
    sent = {rid for _, rid in forwarded(evs, EDGE)}
    fast = [e for e in evs if e["k"] == "req.done" and e["req"] not in sent]
    assert len(fast) > 400
    assert {e["outcome"] for e in fast} == {"rejected"}
    assert {e["status"] for e in fast} == {503}
    # Two loopback legs of 0.05 ms and nothing else: no waiting, no downstream call.
    assert max(e["lat"] for e in fast) <= 0.1 + 1e-9


# -- HALF_OPEN: exactly half_open_calls trials ----------------------------------------------------
@pytest.mark.parametrize("trials", [10, 3])
def test_half_open_lets_exactly_half_open_calls_trials_through(trials):
    evs = events("circuit-breaker", assignments=[f"cb.half_open_calls={trials}"])
    probes = intervals(evs, "HALF_OPEN", 80_000)
    assert len(probes) >= 3
    sent = forwarded(evs, CANONICAL_EDGE)
    trial_ends = call_ends(evs, CANONICAL_EDGE, timeout_ms=1000)
    for a, b in probes:
        trial_ids = [rid for t, rid in sent if a <= t < b]
        assert len(trial_ids) == trials
        # The others are rejected until every trial has completed, and the decision comes
        # with the last trial's reply.
        rejected = [e for e in evs if e["k"] == "req.done" and e["outcome"] == "rejected"
                    and a <= e["t"] < b]
        assert rejected
        assert max(trial_ends[rid] for rid in trial_ids) == pytest.approx(b, abs=1e-3)


def test_calls_let_through_before_opening_do_not_count_as_trials():
    # Payments hangs; calls time out after 2 s but the breaker waits only 0.5 s in OPEN, so
    # calls let through while CLOSED are still timing out during the first HALF_OPEN.
    hang = [{"at_s": 5, "target": "svc", "action": "hang"}]
    evs = events(breaker_doc(faults=hang, duration_s=14, timeout_ms=2000, wait_in_open_s=0.5))
    probes = intervals(evs, "HALF_OPEN", 14_000)
    sent = forwarded(evs, EDGE)
    ends = call_ends(evs, EDGE, timeout_ms=2000)
    first_open = intervals(evs, "OPEN", 14_000)[0][0]
    assert any(ends[rid] > probes[0][0] for t, rid in sent if t < first_open)
    for a, b in probes[:-1]:
        trial_ids = [rid for t, rid in sent if a <= t < b]
        assert len(trial_ids) == 10
        assert max(ends[rid] for rid in trial_ids) == pytest.approx(b, abs=1e-3)


def test_half_open_decides_on_the_trials_failure_rate():
    summary, _ = run("circuit-breaker")
    changes = [(s["from"], s["to"]) for s in summary["nodes"]["cb"]["states"]]
    assert changes[:3] == [("CLOSED", "OPEN"), ("OPEN", "HALF_OPEN"), ("HALF_OPEN", "CLOSED")]
    assert ("HALF_OPEN", "OPEN") in changes
    reopened = next(s for s in summary["nodes"]["cb"]["states"]
                    if (s["from"], s["to"]) == ("HALF_OPEN", "OPEN"))
    assert reopened["reason"].startswith("10 of 10 trial calls failed")
    # Every OPEN lasts wait_in_open_s.
    states = summary["nodes"]["cb"]["states"]
    for enter, leave in itertools.pairwise(states):
        if enter["to"] == "OPEN":
            assert leave["t"] - enter["t"] == pytest.approx(10_000)


# -- healthy service ------------------------------------------------------------------------------
def test_with_the_service_healthy_the_breaker_never_opens():
    # 20% of calls fail, well under the 50% threshold, for 2,500 calls.
    doc = breaker_doc(duration_s=50, service={"workers": 4, "error_rate": 0.2})
    summary, _ = run(doc)
    cb = summary["nodes"]["cb"]
    assert cb["states"] == []
    assert cb["rejected"] == 0
    assert cb["failed"] > 300
    # The same errors against a lower threshold do open it: the threshold decides.
    doc["nodes"][1]["params"]["failure_rate_threshold"] = 0.15
    lowered, _ = run(doc)
    assert lowered["nodes"]["cb"]["times_opened"] >= 1


# -- windows --------------------------------------------------------------------------------------
def test_a_count_window_keeps_the_last_n_calls():
    window = CountWindow(100)
    for i in range(150):
        window.record(float(i), failed=i < 50, slow=i % 10 == 0)
    assert window.totals(150.0) == (100, 0, 10)


def test_a_time_window_keeps_per_second_buckets_of_the_last_n_seconds():
    window = TimeWindow(5)
    window.record(100.0, failed=True, slow=False)     # second 0
    window.record(1500.0, failed=False, slow=True)    # second 1
    window.record(4900.0, failed=True, slow=False)    # second 4
    assert window.totals(4999.0) == (3, 2, 1)
    assert window.totals(5000.0) == (2, 1, 1)  # second 0 has left the window
    assert window.totals(8999.0) == (1, 1, 0)  # only second 4 is left
    assert window.totals(9000.0) == (0, 0, 0)
    window.record(60_000.0, failed=True, slow=True)
    assert window.totals(60_500.0) == (1, 1, 1)


def _opening_delay_s(**breaker):
    doc = breaker_doc(faults=[failing_from(10)], duration_s=20, **breaker)
    summary, _ = run(doc)
    first = summary["nodes"]["cb"]["states"][0]
    assert first["to"] == "OPEN"
    return first["t"] / 1000 - 10, first["reason"]


def test_count_and_time_windows_both_open_on_a_failure_burst():
    # A full count window of 100 successes needs 50 failures: about 1 s at 50 req/s.
    delay, reason = _opening_delay_s()
    assert 0.8 <= delay <= 1.4
    assert "of the last 100 calls failed" in reason
    # A 5 s time window holds ~250 calls and needs half of them failed: about 2.5 s.
    delay, reason = _opening_delay_s(sliding_window_type="time", sliding_window_size=5,
                                     minimum_number_of_calls=20)
    assert 1.8 <= delay <= 3.0
    assert "calls of the last 5 s failed" in reason


# -- slow calls -----------------------------------------------------------------------------------
def test_slowness_alone_opens_the_breaker():
    # From 10 s every call takes 600 ms and still succeeds (enough workers, 2 s timeout).
    service = {"workers": 64, "service_time_ms": 20}
    slow = [{"at_s": 10, "target": "svc", "action": "slow", "value": 30}]
    doc = breaker_doc(faults=slow, duration_s=20, timeout_ms=2000, service=service,
                      slow_call_duration_ms=500)
    summary, _ = run(doc)
    first = summary["nodes"]["cb"]["states"][0]
    assert first["to"] == "OPEN"
    assert "100% of the last 100 calls took longer than 500 ms" in first["reason"]
    assert summary["requests"]["failed"] == summary["requests"]["timed_out"] == 0
    # The same slowness under a higher slow-call duration never opens it.
    doc["nodes"][1]["params"]["slow_call_duration_ms"] = 700
    relaxed, _ = run(doc)
    assert relaxed["nodes"]["cb"]["states"] == []


# -- the teaching fault against the baseline ------------------------------------------------------
def test_with_the_breaker_callers_fail_fast_without_it_they_wait_for_the_timeout():
    pattern, _ = run("circuit-breaker")
    baseline, _ = run("circuit-breaker", baseline=True)
    with_cb, without = pattern["pattern"], baseline["pattern"]
    assert with_cb["outage_requests"] == without["outage_requests"] > 1400
    # Without the breaker every call of the outage waits for the 1 s timeout: p99 (and p50)
    # sit at the timeout, in every one of the 30 seconds.
    assert without["outage_p50_ms"] >= 1000
    assert without["outage_p99_ms"] >= 1000
    assert without["outage_seconds_p99_at_timeout"] == without["outage_seconds"] == 30
    assert without["calls_waiting_for_timeout"] > 1400
    # With it most calls fail in ≈ 0 ms. The calls it needs to learn (≈ 100) and its trials
    # still wait: p99 over the whole outage cannot drop below the timeout, since those are
    # ≥ timeout × rate / outage ≈ 3% of the outage's calls. It does for the seconds it is open.
    assert with_cb["outage_p50_ms"] < 1
    assert with_cb["outage_seconds_p99_at_timeout"] <= 12
    assert with_cb["calls_waiting_for_timeout"] < 0.25 * without["calls_waiting_for_timeout"]
    assert with_cb["calls_rejected_fast"] > 1000
    assert with_cb["calls_reaching_service_while_open"] == 0
    assert with_cb["breaker_time_open_s"] >= 20
    # Room to recover: payments' queue of work nobody waits for stays small.
    assert without["service_queue_max"] == 1000
    assert with_cb["service_queue_max"] < 200
    assert with_cb["service_wasted_ms"] < 0.75 * without["service_wasted_ms"]


def test_calls_made_while_open_are_fast_where_the_baseline_waits():
    # Same seed, same arrivals: compare the very requests made during the OPEN spans.
    evs = events("circuit-breaker")
    open_spans = intervals(evs, "OPEN", 80_000)

    def p99_while_open(stream):
        lat = sorted(e["lat"] for e in stream
                     if e["k"] == "req.done" and within(e["t"] - e["lat"], open_spans)
                     and e["t"] - e["lat"] < 50_000)
        return lat[int(0.99 * len(lat)) - 1], len(lat)

    with_cb, n = p99_while_open(evs)
    _, sim = run("circuit-breaker", baseline=True, trace="full")
    without, m = p99_while_open(sim.trace.drain())
    assert n == m > 1000
    assert with_cb <= 0.1 + 1e-9
    assert without >= 1000


def test_the_baseline_has_no_breaker_and_keeps_the_call_timeout():
    _, sim = run("circuit-breaker", baseline=True)
    assert [n.KIND for n in sim.nodes.values()] == ["client", "service"]
    (edge,) = sim.network.edges.values()
    assert (edge.src.id, edge.dst.id, edge.timeout_ms) == ("users", "payments", 1000.0)


# -- the run's checks -----------------------------------------------------------------------------
def test_the_checks_pass_on_the_canonical_run():
    summary, _ = run("circuit-breaker")
    names = {c["name"]: c["ok"] for c in summary["checks"]}
    assert names == {"while OPEN, zero calls reach the service": True,
                     "never OPEN before the minimum number of calls": True,
                     "HALF_OPEN admits exactly half_open_calls trials": True}


def test_the_check_sees_retries_behind_the_breaker_reach_the_service():
    # A retry policy on the breaker's outgoing edge retries inside one permitted call, so
    # retries of calls let through before the breaker opened reach payments while it is OPEN.
    retry = {"max_attempts": 3, "base_ms": 200, "jitter": "none"}
    summary, _ = run("circuit-breaker", assignments=[f"{CANONICAL_EDGE}.retry={json.dumps(retry)}"])
    check = next(c for c in summary["checks"] if c["name"].startswith("while OPEN"))
    assert not check["ok"]
    assert summary["pattern"]["calls_reaching_service_while_open"] > 0


def test_the_minimum_calls_check_reads_what_the_breaker_recorded():
    sim = simulate(prepare("circuit-breaker"), trace="off").run()
    sim.nodes["cb"].opened_with_calls.append(5)  # as a breaker that opened too early would
    check = next(c for c in get("circuit-breaker").checks(sim) if c["name"].startswith("never"))
    assert not check["ok"]


def test_a_breaker_takes_one_outgoing_edge():
    doc = breaker_doc()
    doc["nodes"].append({"id": "svc2", "kind": "service"})
    doc["edges"].append({"id": "cb-svc2", "from": "cb", "to": "svc2"})
    with pytest.raises(TopologyError, match="at most 1 outgoing edge"):
        run(doc)


def test_a_restarted_breaker_has_forgotten_its_state():
    # The breaker is in the caller's memory: crashed while OPEN, it comes back CLOSED.
    crash = {"at_s": 25, "until_s": 27, "target": "cb", "action": "crash"}
    summary, _ = run("circuit-breaker", duration_s=30)
    assert summary["nodes"]["cb"]["state"] == "OPEN"
    doc = prepare("circuit-breaker", duration_s=30)
    doc["scenario"]["faults"].append(crash)
    restarted, _ = run(doc)
    last = restarted["nodes"]["cb"]["states"][-1]
    assert (last["t"], last["from"], last["to"]) == (27_000, "OPEN", "CLOSED")
    assert last["reason"].startswith("restarted")
    # While it was down its callers were refused (connection refused, not circuit_open).
    assert restarted["requests"]["failed"] >= 80
