"""Request-response: the caller waits, so a slow callee slows every caller."""

from collections import defaultdict

from tests.helpers import document, events, run

CONSTANT_CHAIN = document(
    [{"id": "c", "kind": "client", "params": {"rate_rps": 100}},
     {"id": "api", "kind": "service", "params": {"workers": 50, "service_time_ms": 3}},
     {"id": "db", "kind": "database", "params": {"pool_size": 50, "read_time_ms": 2}}],
    [{"id": "e1", "from": "c", "to": "api", "params": {"latency_ms": 1}},
     {"id": "e2", "from": "api", "to": "db", "params": {"latency_ms": 1}}],
    duration_s=10)


def test_latency_is_at_least_both_legs_plus_service_time():
    done = [e for e in events(CONSTANT_CHAIN) if e["k"] == "req.done"]
    assert len(done) > 900
    # 4 network legs of 1 ms, 3 ms in the api, 2 ms in the database.
    assert min(e["lat"] for e in done) >= 9.0 - 1e-9


def test_latency_covers_every_sampled_network_leg():
    doc = document(
        [{"id": "c", "kind": "client", "params": {"rate_rps": 200}},
         {"id": "s", "kind": "service", "params": {"workers": 8}}],
        [{"id": "e", "from": "c", "to": "s"}], duration_s=10)
    legs = defaultdict(float)
    done = {}
    for ev in events(doc):
        if ev["k"] == "msg.send":
            legs[ev["req"]] += ev["d"]
        elif ev["k"] == "req.done":
            done[ev["req"]] = ev["lat"]
    assert len(done) > 1500
    assert all(done[r] + 1e-6 >= legs[r] for r in done)
    # The reply leg is counted: every request has two legs, each drawn afresh.
    assert all(legs[r] > 0 for r in done)


def test_a_full_queue_rejects_and_never_drops_silently():
    doc = document(
        [{"id": "c", "kind": "client", "params": {"rate_rps": 400}},
         {"id": "s", "kind": "service", "params": {
             "workers": 2, "queue_capacity": 5, "service_time_ms": 10}}],
        [{"id": "e", "from": "c", "to": "s"}], duration_s=10)
    doc["scenario"]["drain_s"] = 1  # let the last replies arrive
    summary, _ = run(doc)
    req = summary["requests"]
    assert req["rejected"] > 1000
    assert req["rejected"] == summary["nodes"]["s"]["rejected"]
    assert req["succeeded"] + req["rejected"] == req["sent"]
    assert req["in_flight"] == 0
    assert summary["nodes"]["s"]["max_queue"] == 5


def test_slow_database_spreads_to_every_caller():
    summary, _ = run("request-response")
    figures = summary["pattern"]
    assert figures["caller_threads_busy_max"] == 8
    assert figures["api_queue_max"] > 100
    assert summary["latency_ms"]["p99"] > 1000
    healthy, _ = run("request-response", assignments=["db.read_time_ms=2"], duration_s=18)
    assert healthy["latency_ms"]["p99"] < 50


def test_the_asynchronous_baseline_keeps_the_caller_fast_and_grows_a_backlog():
    pattern, _ = run("request-response")
    baseline, _ = run("request-response", baseline=True)
    assert baseline["latency_ms"]["p99"] < 10
    assert pattern["latency_ms"]["p99"] > 100 * baseline["latency_ms"]["p99"]
    figures = baseline["pattern"]
    assert figures["backlog_max"] > 1000
    assert figures["end_to_end_p99_ms"] > 1000
    assert baseline["requests"]["succeeded"] == baseline["requests"]["sent"]
