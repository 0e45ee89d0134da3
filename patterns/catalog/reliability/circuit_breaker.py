"""Circuit breaker: stop calling a dependency that keeps failing, and fail fast instead.

Covers: the ``circuit_breaker`` kind, a proxy in the caller's path (client → breaker →
service) that follows Resilience4j's state machine and parameter names, and the
``circuit-breaker`` pattern.
Scenario: 50 req/s of payments through a breaker to a payments service (4 workers, 20 ms),
with a 1 s timeout on the breaker's call. From 20 s to 50 s payments is 20× slower: it can
serve 10 of the 50 calls a second, its queue grows, and calls end at the timeout. With the
breaker, callers fail in a fraction of a millisecond once it has opened and payments only sees
the trial calls; without it, every call waits for the timeout and payments' backlog of work
nobody waits for keeps it sick after the fault ends.

The kind's state machine is described in patterns/components/circuit_breaker.py.
"""

from __future__ import annotations

import math
from collections import defaultdict
from typing import Any

from patterns.catalog.registry import Pattern, check, edge, node, register_pattern
from patterns.components.circuit_breaker import CircuitBreaker
from patterns.engine.simulation import Simulation

RATE_RPS = 50  # payments per second
CALL_TIMEOUT_MS = 1000.0  # the breaker gives up on payments after this long
SLOWDOWN = 20  # the teaching fault: payments' work ×20 …
FAULT_AT_S, FAULT_UNTIL_S = 20, 50  # … for 30 s


def _breakers(sim: Simulation) -> list[CircuitBreaker]:
    return [n for n in sim.nodes.values() if isinstance(n, CircuitBreaker)]


def _seconds_p99_at(sim: Simulation, start_ms: float, end_ms: float,
                    limit_ms: float) -> tuple[int, int]:
    """(seconds in [start, end) whose requests' p99 reached ``limit_ms``, seconds counted).

    Requests are grouped by the second they were created in, which is how a learner reads
    the per-second latency chart during an outage.
    """
    by_second: defaultdict[int, list[float]] = defaultdict(list)
    for created, latency in zip(sim.done_created, sim.done_latency, strict=True):
        if start_ms <= created < end_ms:
            by_second[int(created // 1000.0)].append(latency)
    at_limit = 0
    for latencies in by_second.values():
        latencies.sort()
        p99 = latencies[max(1, math.ceil(0.99 * len(latencies))) - 1]
        at_limit += p99 >= limit_ms
    return at_limit, len(by_second)


@register_pattern
class CircuitBreakerPattern(Pattern):
    SLUG = "circuit-breaker"
    NAME = "Circuit breaker"
    CATEGORY = "reliability"
    SUMMARY = ("A proxy in the caller's path counts how calls to a dependency end. When too "
               "many of the recent ones failed or were slow it opens and rejects calls at once, "
               "then after a wait lets a few trial calls through to see whether the dependency "
               "has recovered.")
    PROBLEM = ("A caller that keeps calling a sick dependency makes every one of its own "
               "callers wait for the timeout, ties up its threads, and keeps the dependency "
               "buried under work nobody is waiting for.")
    TRADEOFFS = ("Callers fail fast instead of waiting, and the dependency gets room to "
                 "recover; but the breaker needs a window of failures before it opens (those "
                 "calls still wait), it rejects calls that might have succeeded, and its "
                 "thresholds, window and wait need tuning to the traffic.")
    TEACHING_FAULT = "Payments becomes 20× slower for 30 s (20 ms → 400 ms a call)."
    BASELINE = "The same system without the breaker: the client calls payments directly."
    OBSERVATIONS = (
        "About two seconds after payments slows down the breaker opens (a node.state event "
        "with the failure rate that tripped it); from then on calls fail in about 0.1 ms and "
        "payments receives nothing while the breaker is OPEN.",
        "The breaker cannot spare the calls it needs to learn: the ~100 calls of those first "
        "two seconds still wait for the 1 s timeout.",
        "Every 10 s the breaker lets exactly 10 trial calls through. The first time, payments' "
        "queue has drained and 20× slow is still under the timeout, so the trials pass and the "
        "breaker closes; the full load buries payments again and it reopens a few seconds "
        "later. The next trials time out and it stays OPEN.",
        "Without the breaker every call made during the outage waits for the 1 s timeout (the "
        "per-second p99 sits at the timeout for all 30 s), payments' queue fills to 1000 calls "
        "nobody waits for, and draining it keeps callers timing out after the fault ends.",
    )

    def canonical(self) -> dict[str, Any]:
        return {
            "version": 1,
            "title": "Payments behind a circuit breaker",
            "pattern": self.SLUG,
            "nodes": [
                node("users", "client", 80, 200, "Users", rate_rps=RATE_RPS),
                node("cb", "circuit_breaker", 260, 200, "Circuit breaker",
                     failure_rate_threshold=0.5, sliding_window_size=100,
                     minimum_number_of_calls=100, wait_in_open_s=10, half_open_calls=10),
                node("payments", "service", 440, 200, "Payments", workers=4,
                     service_time_ms={"dist": "exponential", "mean": 20}),
            ],
            "edges": [
                # The breaker is a library inside the caller: a loopback hop.
                edge("users", "cb", latency_ms=0.05),
                edge("cb", "payments", timeout_ms=CALL_TIMEOUT_MS,
                     latency_ms={"dist": "lognormal", "median": 2, "p99": 15}),
            ],
            "scenario": {"duration_s": 80, "seed": 42, "faults": [
                {"at_s": FAULT_AT_S, "until_s": FAULT_UNTIL_S, "target": "payments",
                 "action": "slow", "value": SLOWDOWN},
            ]},
        }

    def baseline(self, document: dict[str, Any]) -> dict[str, Any]:
        """Take every breaker out: its callers call its dependency over the breaker's own
        outgoing edge (same latency, same timeout, same id, so faults on it still apply)."""
        document["title"] = "Payments without a circuit breaker"
        removed = {n["id"] for n in document["nodes"] if n["kind"] == "circuit_breaker"}
        document["nodes"] = [n for n in document["nodes"] if n["id"] not in removed]
        edges = document["edges"]
        kept = [e for e in edges if e["from"] not in removed and e["to"] not in removed]
        for breaker in removed:
            ins = [e for e in edges if e["to"] == breaker]
            for out in (e for e in edges if e["from"] == breaker):
                for inn in ins:
                    edge_id = out["id"] if len(ins) == 1 else f"{inn['id']}-{out['id']}"
                    kept.append({"id": edge_id, "from": inn["from"], "to": out["to"],
                                 "params": dict(out.get("params", {}))})
        document["edges"] = kept
        scenario = document.get("scenario", {})
        scenario["faults"] = [f for f in scenario.get("faults", [])
                              if f["target"] not in removed]
        return document

    def figures(self, sim: Simulation) -> dict[str, Any]:
        out: dict[str, Any] = {}
        faults = [f for f in sim.document["scenario"]["faults"] if f.get("until_s")]
        if faults:
            outage = sim.latency_between(faults[0]["at_s"] * 1000.0,
                                         faults[0]["until_s"] * 1000.0)
            out["outage_requests"] = int(outage["requests"])
            out["outage_p50_ms"] = outage["p50"]
            out["outage_p90_ms"] = outage["p90"]
            out["outage_p99_ms"] = outage["p99"]
            timeouts = [e.timeout_ms for e in sim.network.edges.values() if e.timeout_ms]
            if timeouts:
                at_timeout, seconds = _seconds_p99_at(
                    sim, faults[0]["at_s"] * 1000.0, faults[0]["until_s"] * 1000.0,
                    max(timeouts))
                out["outage_seconds"] = seconds
                out["outage_seconds_p99_at_timeout"] = at_timeout
        out["calls_waiting_for_timeout"] = sum(e.timeouts for e in sim.network.edges.values())
        payments = sim.nodes.get("payments")
        if payments is not None:
            stats = payments.summary(sim.duration_ms)
            out["service_queue_max"] = stats["max_queue"]
            out["service_wasted_ms"] = stats.get("wasted_ms", 0.0)
        for breaker in _breakers(sim)[:1]:
            stats = breaker.summary(sim.duration_ms)
            out.update({
                "breaker_state": stats["state"],
                "breaker_time_open_s": stats["time_open_s"],
                "calls_permitted": stats["permitted"],
                "calls_rejected_fast": stats["rejected"],
                "calls_reaching_service_while_open": stats["sent_while_open"],
                "transitions": stats["transitions"],
                "times_opened": stats["times_opened"],
                "slow_calls": stats["slow_calls"],
                "half_open_trials": stats["half_open_trials"],
            })
        return out

    def checks(self, sim: Simulation) -> list[dict[str, Any]]:
        out = []
        for breaker in _breakers(sim):
            stats = breaker.summary(sim.duration_ms)
            out.append(check(
                "while OPEN, zero calls reach the service", stats["sent_while_open"] == 0,
                f"{breaker.id}: {stats['sent_while_open']} sent while OPEN over "
                f"{stats['time_open_s']:g} s"))
            early = [c for c in stats["opened_with_calls"] if c < stats["minimum_calls"]]
            out.append(check(
                "never OPEN before the minimum number of calls", not early,
                f"{breaker.id}: opened {stats['times_opened']} times from CLOSED, with "
                f"{stats['opened_with_calls'][:5]} calls in the window "
                f"(minimum {stats['minimum_calls']})"))
            trials = breaker.p["half_open_calls"]
            out.append(check(
                "HALF_OPEN admits exactly half_open_calls trials",
                all(n == trials for n in stats["half_open_trials"]),
                f"{breaker.id}: trials per probe {stats['half_open_trials'][:10]}"))
        return out
