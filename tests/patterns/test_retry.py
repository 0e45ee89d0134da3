"""Retry: bounded attempts, backoff that follows its formula, jitter, budget, and the storm."""

import math
from collections import Counter, defaultdict

import pytest

from tests.helpers import document, events, run

AGGRESSIVE = 'users-service.retry={"base_ms": 0, "jitter": "none"}'


def client_service(retry, *, rate=200, error_rate=0.0, service_ms=1.0, workers=100,
                   timeout_ms=None, duration_s=10, faults=None, seed=1, **service):
    return document(
        [{"id": "c", "kind": "client", "params": {"rate_rps": rate}},
         {"id": "s", "kind": "service", "params": {
             "workers": workers, "error_rate": error_rate, "service_time_ms": service_ms,
             **service}}],
        [{"id": "e", "from": "c", "to": "s",
          "params": {"retry": retry, "timeout_ms": timeout_ms}}],
        duration_s=duration_s, seed=seed, faults=faults)


def ks_uniform(samples):
    """Kolmogorov-Smirnov distance between samples in [0, 1] and uniform(0, 1)."""
    xs = sorted(samples)
    n = len(xs)
    return max(max((i + 1) / n - x, x - i / n) for i, x in enumerate(xs))


def ks_limit(n):
    # The 1% critical value of the one-sample KS statistic.
    return 1.63 / math.sqrt(n)


def retry_waits(jitter, **retry):
    """(retry number, wait, the wait before it) of every retry, and the run's events."""
    spec = {"max_attempts": 5, "base_ms": 100, "cap_ms": 500, "multiplier": 2,
            "jitter": jitter, **retry}
    evs = events(client_service(spec, rate=200, error_rate=1.0, duration_s=10))
    waits, previous = [], {}
    for ev in evs:
        if ev["k"] == "req.retry":
            waits.append((ev["attempt"] - 1, ev["wait"], previous.get(ev["req"], 0.0)))
            previous[ev["req"]] = ev["wait"]
    return waits, evs


def test_no_request_exceeds_max_attempts():
    evs = events(client_service({"max_attempts": 3, "base_ms": 1}, error_rate=0.6))
    attempts = Counter(ev["req"] for ev in evs if ev["k"] == "msg.send" and ev["dir"] == "req")
    assert max(attempts.values()) == 3
    # Not vacuous: many requests used every attempt.
    assert sum(1 for n in attempts.values() if n == 3) > 300


def test_waits_without_jitter_follow_the_formula_exactly():
    waits, evs = retry_waits("none")
    assert len(waits) > 5000
    for n, wait, _ in waits:
        assert wait == pytest.approx(min(500, 100 * 2 ** (n - 1)))
    # The wait is really spent: the next attempt leaves exactly that long after the reply.
    sent, recv_of = {}, {}
    for ev in evs:
        if ev["k"] == "msg.send" and ev["dir"] == "req":
            sent[(ev["req"], ev["attempt"])] = ev["t"]
            recv_of[ev["id"]] = (ev["req"], ev["attempt"])
    measured = 0
    for ev in evs:
        if ev["k"] == "msg.recv" and ev["dir"] == "rep":
            req, attempt = recv_of[ev["id"]]
            nxt = sent.get((req, attempt + 1))
            if nxt is not None:
                assert nxt - ev["t"] == pytest.approx(min(500, 100 * 2 ** (attempt - 1)),
                                                      abs=2e-3)
                measured += 1
    assert measured > 5000


@pytest.mark.parametrize("jitter", ["full", "equal"])
def test_jittered_waits_are_uniform_over_their_range(jitter):
    waits, _ = retry_waits(jitter)
    by_retry = defaultdict(list)
    for n, wait, _ in waits:
        ceiling = min(500, 100 * 2 ** (n - 1))
        low = 0.0 if jitter == "full" else ceiling / 2
        assert low - 1e-3 <= wait <= ceiling + 1e-3
        by_retry[n].append((wait - low) / (ceiling - low))
    assert sorted(by_retry) == [1, 2, 3, 4]
    for n, xs in by_retry.items():
        assert len(xs) > 1500
        assert ks_uniform(xs) < ks_limit(len(xs)), f"retry {n}"
        assert sum(xs) / len(xs) == pytest.approx(0.5, abs=0.03)


def test_decorrelated_waits_draw_between_base_and_three_times_the_last():
    waits, _ = retry_waits("decorrelated")
    uncapped, capped = [], 0
    for _, wait, before in waits:
        prev = before or 100.0
        high = 3 * prev
        assert 100 - 1e-3 <= wait <= min(500, high) + 1e-3
        if high <= 500:
            uncapped.append((wait - 100) / (high - 100))
        elif wait == pytest.approx(500, abs=1e-3):
            capped += 1
    assert len(uncapped) > 3000
    assert ks_uniform(uncapped) < ks_limit(len(uncapped))
    assert capped > 100  # the cap is reached and holds


def test_without_jitter_retries_after_a_shared_outage_come_in_waves():
    def peak_over_mean(jitter):
        # ~1000 calls in progress when the service crashes: all reset at the same instant.
        doc = client_service({"max_attempts": 4, "base_ms": 1000, "cap_ms": 10_000,
                              "jitter": jitter},
                             rate=500, service_ms=2000, workers=2000, duration_s=20,
                             faults=[{"at_s": 10, "until_s": 17, "target": "s",
                                      "action": "crash"}])
        evs = events(doc)
        reset = {ev["req"] for ev in evs if ev["k"] == "req.retry" and ev["attempt"] == 2
                 and 10_000 <= ev["t"] < 10_010}
        assert len(reset) > 800
        bins = Counter(int(ev["t"] // 100) for ev in evs
                       if ev["k"] == "msg.send" and ev["dir"] == "req"
                       and ev["attempt"] >= 2 and ev["req"] in reset)
        window = [bins.get(b, 0) for b in range(100, 180)]
        return max(window) / (sum(window) / len(window))

    waves, spread = peak_over_mean("none"), peak_over_mean("full")
    # Measured: ~27 without jitter (each wave lands in one 100 ms bin), ~4 with full jitter.
    assert waves > 20
    assert spread < 6
    assert waves > 4 * spread


def test_with_a_budget_total_attempts_stay_within_it():
    budget = {"max_attempts": 5, "base_ms": 1, "budget": 0.1, "min_retries": 10}
    _, sim = run(client_service(budget, error_rate=0.5, duration_s=20))
    edge = sim.network.edges["e"]
    requests = edge.retry.first_attempts
    assert requests > 3500
    assert edge.sent <= 1.1 * requests + 10
    assert edge.sent > 1.1 * requests * 0.97  # the budget is what binds
    assert edge.retry.budget_exhausted > 1000
    unbounded = {**budget, "budget": None}
    _, free = run(client_service(unbounded, error_rate=0.5, duration_s=20))
    assert free.network.edges["e"].sent > 1.8 * requests  # 1 + p + p² + p³ + p⁴ ≈ 1.94


@pytest.mark.parametrize("attempts", [1, 2, 3, 4])
def test_success_rate_under_independent_errors_is_one_minus_p_to_the_k(attempts):
    p = 0.5
    summary, _ = run(client_service({"max_attempts": attempts, "base_ms": 1},
                                    rate=500, error_rate=p, duration_s=10, seed=attempts))
    req = summary["requests"]
    rate = req["succeeded"] / (req["succeeded"] + req["failed"])
    assert req["succeeded"] + req["failed"] > 4500
    assert rate == pytest.approx(1 - p ** attempts, abs=0.02)


def test_only_retryable_failures_are_retried():
    business = [{"at_s": 0, "target": "s", "action": "error_rate", "value": 1.0,
                 "error_class": "business"}]
    _, sim = run(client_service({"max_attempts": 3, "base_ms": 1}, faults=business))
    edge = sim.network.edges["e"]
    assert edge.retry.retries == 0 and edge.sent == edge.retry.first_attempts > 1000
    # retry_on narrows further: a timed-out attempt is not retried without "timeout".
    hung = [{"at_s": 0, "target": "s", "action": "hang"}]
    no_timeouts = {"max_attempts": 3, "base_ms": 1, "retry_on": ["transient", "unavailable"]}
    _, sim = run(client_service(no_timeouts, timeout_ms=50, faults=hung))
    assert sim.network.edges["e"].timeouts > 1000
    assert sim.network.edges["e"].retry.retries == 0
    _, sim = run(client_service({**no_timeouts, "retry_on": ["timeout"]}, timeout_ms=50,
                                faults=hung))
    assert sim.network.edges["e"].retry.retries > 1000


def test_the_canonical_run_recovers_and_the_aggressive_one_stays_down():
    pattern, _ = run("retry")
    aggressive, _ = run("retry", assignments=[AGGRESSIVE])
    baseline, _ = run("retry", baseline=True)
    good = {name: s["pattern"]["goodput_rps"]
            for name, s in (("pattern", pattern), ("aggressive", aggressive),
                            ("baseline", baseline))}
    offered = 320
    # Before the outage retries hide the 5% transient errors: 1 − 0.05³.
    assert good["pattern"]["before_outage"] > 0.98 * offered
    assert good["baseline"]["before_outage"] == pytest.approx(0.95 * offered, rel=0.03)
    # After it, the pattern and the baseline serve again; aggressive retries do not.
    assert good["pattern"]["after_outage"] > 0.95 * offered
    assert good["baseline"]["after_outage"] > 0.9 * offered
    assert good["aggressive"]["after_outage"] < 0.05 * offered
    figures = aggressive["pattern"]
    assert figures["amplification_factor"] > 2
    assert figures["wasted_work_s"] > 100  # the service works for callers who left
    assert figures["budget_exhausted"] == 0
    assert pattern["pattern"]["amplification_factor"] < 1.1 + 10 / pattern["requests"]["sent"]
    assert pattern["pattern"]["budget_exhausted"] > 1000
    assert pattern["pattern"]["wasted_work_s"] < 1
    assert pattern["pattern"]["success_rate"] > baseline["pattern"]["success_rate"] + 0.03
    assert all(c["ok"] for c in pattern["checks"] + aggressive["checks"])


def test_after_the_outage_aggressive_retries_triple_the_load():
    evs = events("retry", assignments=[AGGRESSIVE])
    first = sum(1 for ev in evs if ev["k"] == "msg.send" and ev["dir"] == "req"
                and ev["t"] >= 40_000 and ev["attempt"] == 1)
    every = sum(1 for ev in evs if ev["k"] == "msg.send" and ev["dir"] == "req"
                and ev["t"] >= 40_000)
    assert every / first == pytest.approx(3, rel=0.05)


def test_the_storm_needs_the_wasted_work():
    # The same aggressive retries recover when the service drops attempts already given up.
    summary, _ = run("retry", assignments=[AGGRESSIVE,
                                           "users-service.deadline_propagation=true"])
    assert summary["pattern"]["goodput_rps"]["after_outage"] > 300
