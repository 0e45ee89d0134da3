"""Load balancing: the algorithms against queueing theory, hashing, health checks, faults."""

from __future__ import annotations

import copy

import pytest

from patterns import catalog
from patterns.catalog.registry import find
from patterns.components.load_balancer import HashRing, modulo_moved_on_removal
from patterns.engine import messages as m
from patterns.run import prepare, simulate
from tests.helpers import document, events, run

SLUG = "load-balancing"


def farm(algorithm: str, backends: int, *, rate_rps: float, service_ms: float = 1.0,
         workers: int = 1, duration_s: float = 20, seed: int = 1, latency_ms: float = 0.0,
         faults: list[dict] | None = None, weights: list[float] | None = None,
         **lb_params) -> dict:
    """client → lb → ``backends`` services with exponential work times."""
    nodes = [{"id": "load", "kind": "client", "params": {"rate_rps": rate_rps}},
             {"id": "lb", "kind": "load_balancer",
              "params": {"algorithm": algorithm, **lb_params}}]
    edges = [{"id": "in", "from": "load", "to": "lb", "params": {"latency_ms": latency_ms}}]
    for i in range(backends):
        nodes.append({"id": f"b{i}", "kind": "service", "params": {
            "workers": workers, "queue_capacity": 10_000_000,
            "service_time_ms": {"dist": "exponential", "mean": service_ms}}})
        params = {"latency_ms": latency_ms}
        if weights:
            params["weight"] = weights[i]
        edges.append({"id": f"lb-b{i}", "from": "lb", "to": f"b{i}", "params": params})
    return document(nodes, edges, duration_s=duration_s, seed=seed, faults=faults)


def routed_sequence(evs: list[dict]) -> list[str]:
    """Backends in the order client requests were forwarded to them (probes excluded)."""
    return [e["e"] for e in evs if e["k"] == "msg.send" and e["dir"] == "req"
            and e["e"].startswith("lb-") and e["req"] > 0]


def mean_in_service_times(algorithm: str, *, seed: int, duration_s: float) -> float:
    """Mean latency, in service times, of 10 single-worker backends at ρ = 0.9."""
    summary, _ = run(farm(algorithm, 10, rate_rps=9000, duration_s=duration_s, seed=seed))
    return summary["latency_ms"]["mean"] / 1.0


# -- spreading ------------------------------------------------------------------------------
def test_round_robin_spreads_counts_within_one_per_cycle():
    seq = routed_sequence(events(farm("round_robin", 5, rate_rps=500, service_ms=5,
                                      workers=4, duration_s=4)))
    assert len(seq) > 1500
    counts = dict.fromkeys({*seq}, 0)
    for i, backend in enumerate(seq):
        counts[backend] += 1
        assert max(counts.values()) - min(counts.values()) <= 1, f"after {i + 1} picks"
    # Every cycle of 5 picks visits every backend once, in the same order.
    first = seq[:5]
    assert sorted(first) == [f"lb-b{i}" for i in range(5)]
    assert all(seq[i:i + 5] == first for i in range(0, len(seq) - 4, 5))


def test_weighted_round_robin_is_smooth_like_nginx():
    # nginx's own example: weights 5, 1, 1 give a a b a c a a, not a a a a a b c.
    seq = routed_sequence(events(farm("weighted_round_robin", 3, rate_rps=300, service_ms=2,
                                      workers=4, duration_s=2, weights=[5, 1, 1])))
    assert len(seq) >= 7 * 50
    cycle = ["lb-b0", "lb-b0", "lb-b1", "lb-b0", "lb-b2", "lb-b0", "lb-b0"]
    usable = len(seq) // 7 * 7
    assert seq[:usable] == cycle * (usable // 7)


def test_weighted_round_robin_weight_zero_drains_a_backend():
    summary, _ = run(farm("weighted_round_robin", 3, rate_rps=300, service_ms=2, workers=4,
                          duration_s=5, weights=[2, 1, 0]))
    routed = summary["nodes"]["lb"]["backends"]
    assert routed["b2"]["routed"] == 0
    assert routed["b0"]["routed"] == pytest.approx(2 * routed["b1"]["routed"], abs=2)


# -- the supermarket model: 10 single-worker backends at ρ = 0.9 ---------------------------
def test_random_behaves_like_ten_mm1_queues():
    # Random splitting of Poisson arrivals gives 10 independent M/M/1 queues at ρ = 0.9:
    # mean time in system 1/(μ − λ) = S/(1 − ρ) = 10 service times. Near saturation the
    # mean converges slowly, so two replications are averaged.
    measured = [mean_in_service_times("random", seed=s, duration_s=40) for s in (1, 2)]
    assert sum(measured) / 2 == pytest.approx(1 / (1 - 0.9), rel=0.10)


def test_power_of_two_is_far_better_and_least_connections_at_least_as_good():
    random_mean = mean_in_service_times("random", seed=3, duration_s=20)
    two = mean_in_service_times("power_of_two", seed=3, duration_s=20)
    least = mean_in_service_times("least_connections", seed=3, duration_s=20)
    # Mitzenmacher's supermarket model: Σ λ^(2^i − 2) = 2.61 service times as N → ∞; with
    # N = 10 an independent 400k-arrival simulation gives 2.98.
    assert 2.6 <= two <= 3.2
    assert random_mean > 2.5 * two
    assert least <= two
    assert least < 2.2  # join-the-shortest-queue over 10 servers: ≈ 1.9


# -- consistent hashing ---------------------------------------------------------------------
KEYS = [f"k{i}" for i in range(20_000)]
MEMBERS = [f"b{i}" for i in range(10)]


def test_consistent_hash_moves_about_one_nth_of_keys_on_removal():
    ring = HashRing(MEMBERS, 160)
    before = {k: ring.owner(k) for k in KEYS}
    ring.remove("b3")
    after = {k: ring.owner(k) for k in KEYS}
    moved = [k for k in KEYS if before[k] != after[k]]
    assert len(moved) / len(KEYS) == pytest.approx(1 / 10, abs=0.03)
    # Only the removed backend's keys move, and they spread over the others.
    assert all(before[k] == "b3" for k in moved)
    assert len({after[k] for k in moved}) >= 8
    assert ring.moved_on_removal(KEYS, "b4") == pytest.approx(1 / 9, abs=0.03)


def test_modulo_hashing_moves_almost_every_key():
    ring_share = HashRing(MEMBERS, 160).moved_on_removal(KEYS, "b3")
    modulo_share = modulo_moved_on_removal(KEYS, MEMBERS, "b3")
    assert modulo_share > 0.8  # ≈ (N − 1)/N
    assert modulo_share > 6 * ring_share


def test_consistent_hash_adding_a_backend_takes_only_its_share():
    ring = HashRing(MEMBERS, 160)
    before = {k: ring.owner(k) for k in KEYS}
    ring.add("b10")
    moved = [k for k in KEYS if ring.owner(k) != before[k]]
    assert len(moved) / len(KEYS) == pytest.approx(1 / 11, abs=0.03)
    assert all(ring.owner(k) == "b10" for k in moved)


def test_balancer_keeps_keys_sticky_and_moves_only_an_ejected_backends_keys():
    sim = simulate(prepare(farm("consistent_hash", 4, rate_rps=1)), trace="off")
    lb = sim.nodes["lb"]

    def owners() -> dict[str, str]:
        return {k: lb.pick(m.Request(i, 0.0, key=k)).id for i, k in enumerate(KEYS[:4000])}

    before = owners()
    assert owners() == before  # the same key always lands on the same backend
    assert set(before.values()) == {"b0", "b1", "b2", "b3"}
    lb._mark(lb.backends[1], False, "test")
    after = owners()
    moved = {k for k in before if before[k] != after[k]}
    assert moved == {k for k in before if before[k] == "b1"}
    assert "b1" not in after.values()


def test_consistent_hash_figure_reports_keys_moved_on_removal():
    summary, _ = run(SLUG, assignments=["lb.algorithm=consistent_hash"], duration_s=5)
    figures = summary["pattern"]
    assert figures["keys_moved_on_removal"] == pytest.approx(0.25, abs=0.06)
    assert figures["modulo_keys_moved_on_removal"] > 0.65


# -- health checks --------------------------------------------------------------------------
def crash_window(algorithm: str, interval_ms: float | None, action: str = "crash",
                 **overrides) -> dict:
    doc = catalog.get(SLUG).canonical()
    doc["scenario"]["faults"] = [{"at_s": 10, "until_s": 40, "target": "b1",
                                  "action": action}]
    params = find(doc, "lb")["params"]
    params["algorithm"] = algorithm
    params["health_check_interval_ms"] = interval_ms
    params.update(overrides)
    return doc


def test_no_request_is_routed_to_a_backend_marked_down():
    doc = crash_window("least_connections", 1000.0)
    doc["scenario"]["duration_s"] = 50
    summary, sim = run(doc, trace="full")
    evs = sim.trace.drain()
    log = summary["nodes"]["lb"]["ejections"]
    assert [(e["backend"], e["to"]) for e in log] == [("b1", "ejected"), ("b1", "healthy")]
    ejected, back = log[0]["t"], log[1]["t"]
    # Three failed probes a second apart; two good ones after the restart.
    assert 11_000 < ejected < 13_000
    assert 40_000 < back < 42_500
    to_b1 = [e for e in evs if e["k"] == "msg.send" and e["e"] == "lb-b1" and e["dir"] == "req"]
    requests_in_window = [e for e in to_b1 if e["req"] > 0 and ejected <= e["t"] <= back]
    probes_in_window = [e for e in to_b1 if e["req"] < 0 and ejected <= e["t"] <= back]
    assert requests_in_window == []
    assert len(probes_in_window) >= 25  # probing goes on, which is how it comes back
    # The check is not vacuous: requests reach b1 before the ejection and after the return.
    assert any(e["req"] > 0 and 10_000 < e["t"] < ejected for e in to_b1)
    assert any(e["req"] > 0 and e["t"] > back for e in to_b1)
    states = [(e["to"], e["t"]) for e in evs if e["k"] == "node.state" and e["node"] == "lb"]
    assert [s for s, _ in states] == ["HEALTHY", "DEGRADED", "HEALTHY"]
    assert any(e["k"] == "note" and e["node"] == "lb" and "b1 ejected" in e["text"]
               for e in evs)
    assert all(c["ok"] for c in summary["checks"]), summary["checks"]


def test_a_hung_backend_is_ejected_by_probe_timeouts():
    summary, _ = run(crash_window("round_robin", 1000.0, action="hang"))
    log = summary["nodes"]["lb"]["ejections"]
    assert log[0]["backend"] == "b1" and log[0]["to"] == "ejected"
    assert "timeout" in log[0]["reason"]
    # Ejected once three probes timed out (500 ms each), back after the hang ends.
    assert 12_000 < log[0]["t"] < 13_000
    assert log[1]["to"] == "healthy" and log[1]["t"] > 40_000
    # Only requests sent before the ejection hang: about 2.5 s at a quarter of 400 req/s.
    assert summary["requests"]["in_flight"] < 400


def test_all_backends_down_gives_503():
    doc = farm("round_robin", 3, rate_rps=100, service_ms=5, workers=4, duration_s=20,
               health_check_interval_ms=500.0,
               faults=[{"at_s": 5, "until_s": 15, "target": f"b{i}", "action": "crash"}
                       for i in range(3)])
    summary, _ = run(doc, trace="fast")
    lb = summary["nodes"]["lb"]
    assert lb["no_backend"] > 700  # ≈ 100 req/s for the ~9 s nobody is in the pool
    assert summary["requests"]["rejected"] == lb["no_backend"]
    states = [s["to"] for s in lb["states"]]
    assert "NO_BACKENDS" in states and states[-1] == "HEALTHY"


# -- the teaching fault ---------------------------------------------------------------------
def test_slow_backend_explodes_round_robin_p99_but_not_load_aware():
    pattern, _ = run(SLUG)
    baseline, _ = run(SLUG, baseline=True)
    two, _ = run(SLUG, assignments=["lb.algorithm=power_of_two"])
    p99 = {name: s["latency_ms"]["p99"] for name, s in
           (("least", pattern), ("rr", baseline), ("two", two))}
    assert p99["rr"] > 5_000  # seconds: the slow backend's queue grew for 20 s
    assert p99["least"] < 400 and p99["two"] < 400
    assert p99["rr"] > 30 * max(p99["least"], p99["two"])
    # Round robin kept feeding the slow backend its quarter; the others sent it far less.
    assert baseline["pattern"]["share_by_backend"]["b1"] == pytest.approx(0.25, abs=0.001)
    assert pattern["pattern"]["share_by_backend"]["b1"] < 0.21
    assert two["pattern"]["share_by_backend"]["b1"] < 0.21
    assert baseline["pattern"]["max_in_flight_by_backend"]["b1"] > 500
    assert pattern["pattern"]["max_in_flight_by_backend"]["b1"] < 20
    # Probes skip the queue: health checks never see slowness.
    assert pattern["pattern"]["ejections"] == baseline["pattern"]["ejections"] == 0
    for summary in (pattern, baseline, two):
        assert all(c["ok"] for c in summary["checks"]), summary["checks"]
    assert baseline["requests"]["sent"] == pattern["requests"]["sent"]  # same load


def test_sinkholing_a_fast_failing_backend_attracts_least_connections():
    def crashed(algorithm: str, interval_ms: float | None) -> tuple[int, int]:
        summary, _ = run(crash_window(algorithm, interval_ms))
        return (summary["nodes"]["lb"]["backends"]["b1"]["routed"],
                summary["requests"]["failed"])

    sink_routed, sink_failed = crashed("least_connections", None)
    rr_routed, rr_failed = crashed("round_robin", None)
    checked_routed, checked_failed = crashed("least_connections", 1000.0)
    # b1 is down for 30 s of 60: round robin still sends it exactly a quarter, and a quarter
    # of the window's ~12,000 requests fail. Least connections sees it with nothing in flight
    # (it refuses at once) and sends it most of the traffic: more than half the window fails.
    assert rr_routed == pytest.approx(23_824 / 4, abs=2)
    assert sink_routed > 1.5 * rr_routed
    assert sink_failed > 2 * rr_failed
    assert sink_failed > 6_000
    # Health checks eject it after three probes: only ~2 s of calls fail.
    assert checked_failed < sink_failed / 10
    assert checked_routed < 0.7 * rr_routed


# -- the proxy itself -----------------------------------------------------------------------
def test_a_crashed_balancer_resets_its_callers():
    doc = farm("least_connections", 2, rate_rps=200, service_ms=20, workers=8, duration_s=10,
               latency_ms=0.5, service_time_ms=1.0,
               faults=[{"at_s": 5, "until_s": 6, "target": "lb", "action": "crash"}])
    doc["pattern"] = SLUG  # for the pattern's checks
    summary, _ = run(doc)
    # Calls inside the balancer or at a backend when it died are answered with a reset, and
    # the ones sent while it is down are refused: none waits forever.
    assert summary["requests"]["failed"] == pytest.approx(200, rel=0.2)
    assert summary["requests"]["in_flight"] < 15
    lb = summary["nodes"]["lb"]
    assert 0 < lb["reset"] < 15
    assert all(c["ok"] for c in summary["checks"]), summary["checks"]


def test_baseline_changes_only_the_algorithm():
    pattern = catalog.get(SLUG)
    doc = pattern.canonical()
    base = pattern.baseline_document(copy.deepcopy(doc))
    assert find(base, "lb")["params"]["algorithm"] == "round_robin"
    find(base, "lb")["params"]["algorithm"] = find(doc, "lb")["params"]["algorithm"]
    assert base["nodes"] == doc["nodes"] and base["edges"] == doc["edges"]
    assert base["scenario"] == doc["scenario"]


def test_a_caller_giving_up_resets_the_forwarded_call_with_deadline_propagation():
    doc = farm("least_connections", 2, rate_rps=200, service_ms=40, workers=2, duration_s=10,
               latency_ms=0.5)
    doc["pattern"] = SLUG
    doc["nodes"][0]["params"]["timeout_ms"] = 50.0
    for e in doc["edges"]:
        e["params"]["deadline_propagation"] = True
    summary, _ = run(doc)
    lb = summary["nodes"]["lb"]
    # Overloaded (ρ = 2): most callers give up, and the balancer stops their calls at once,
    # which frees the backends' workers (they skip or stop the work too).
    assert summary["requests"]["timed_out"] > 500
    assert lb["cancelled"] > 500
    assert sum(summary["nodes"][b]["expired_skipped"] for b in ("b0", "b1")) > 500
    assert all(c["ok"] for c in summary["checks"]), summary["checks"]
