"""Timeout: stop waiting for a call that takes too long, so a slow callee cannot hold you.

Covers: the edge's ``timeout_ms`` (the caller gives up on an attempt after that long: the
call ends ``timed_out``, a reply that still comes is ignored and counted late), and its
``deadline_propagation`` (off: the callee never learns that the caller gave up and finishes
the work for nobody, counted as its ``wasted_ms``; on: the callee stops that work the moment
the caller gives up, skips queued calls and downstream calls for an expired request, and
counts them ``expired_skipped``), and the ``timeout`` pattern.

Scenario: 100 req/s → service A (16 workers, 5 ms of its own work) → service B (a
high-concurrency backend, 200 workers, lognormal latency with median 20 ms and p99 80 ms, so
p99.9 ≈ 126 ms). A calls B synchronously, holding a worker, with a 150 ms timeout: just
above B's healthy p99.9, so a healthy B almost never trips it (≈0.04% of calls).
Teaching fault: from 20 s to 40 s, 10% of B's calls take 5 s (a ``set`` of B's
``service_time_ms`` to a mixture). A gives up on those after 150 ms and answers 502 at once:
10% of requests fail fast, the others are as fast as ever. The baseline has no timeout: each
A worker is held 5 s by one call in ten, the 16 workers are all stuck (A needs ~52 for this
load), A's queue fills, and the latency of every request, slow call or not, follows B's tail
and then A's queue.
"""

from __future__ import annotations

from typing import Any

from patterns.catalog.registry import Pattern, check, edge, find, node, register_pattern
from patterns.engine.simulation import Simulation

RATE_RPS = 100  # offered load
A_WORKERS = 16  # A's threads, each held for the whole call to B
B_HEALTHY = {"dist": "lognormal", "median": 20, "p99": 80}  # p99.9 ≈ 126 ms
TIMEOUT_MS = 150  # A's timeout on B: B's healthy p99.9 plus the network
TAIL_SHARE = 0.1  # the teaching fault: this share of B's calls ...
TAIL_MS = 5000  # ... takes this long
FAULT = (20, 40)
EDGE_ID = "a-b"


def _tail(share: float, tail_ms: float) -> dict[str, Any]:
    """B's latency with a tail: most calls as healthy, ``share`` of them ``tail_ms`` long."""
    return {"dist": "mixture", "weights": [1 - share, share], "parts": [B_HEALTHY, tail_ms]}


def _p99(sim: Simulation, start_s: float, end_s: float) -> float:
    return sim.latency_between(start_s * 1000.0, end_s * 1000.0)["p99"]


@register_pattern
class Timeout(Pattern):
    SLUG = "timeout"
    NAME = "Timeout"
    CATEGORY = "reliability"
    SUMMARY = ("A caller waits for a reply at most a set time, then gives up and moves on, "
               "so that a slow dependency costs it a bounded wait rather than a worker held "
               "for as long as the dependency likes.")
    PROBLEM = ("A synchronous call holds the caller's thread until the reply. When a "
               "dependency slows down, every thread ends up waiting on it and the caller "
               "stops answering anyone, including requests that do not need the slow part.")
    TRADEOFFS = ("Too long and it protects nothing; too short and healthy but slow calls "
                 "fail (set it from the callee's healthy p99.9). A timed-out call may still "
                 "complete on the callee (wasted work, and a side effect the caller does not "
                 "know about) unless the deadline is propagated; a retry after a timeout adds "
                 "load exactly when the callee is slow.")
    TEACHING_FAULT = "From 20 s to 40 s, 10% of service B's calls take 5 s."
    BASELINE = "No timeout: A waits on B for as long as B takes."
    OBSERVATIONS = (
        "With the 150 ms timeout, 10% of requests fail fast (502 after ~150 ms) while the "
        "fault lasts, the others keep their healthy latency, A's utilisation only goes from "
        "~20% to ~28% and its queue stays empty: the failure stays contained.",
        "Without it, all 16 A workers are busy waiting on B within two seconds of the fault, "
        "A's queue fills to 1000 and rejects, and the p99 of the requests sent during the "
        "fault goes from ~85 ms to ~15 s, slow call or not.",
        "No call on A → B ever waits longer than 150 ms (caller_wait_max_ms), and every "
        "timed-out call is counted once: timed_out_calls.",
        "B still does the 5 s of work for every call A gave up on: wasted_work_s. With "
        "--set a-b.deadline_propagation=true, B stops that work when A gives up "
        "(b_skipped_expired) and the waste shrinks to ~150 ms per call.",
    )

    def canonical(self) -> dict[str, Any]:
        return {
            "version": 1,
            "title": "A timeout contains a dependency's slow tail",
            "pattern": self.SLUG,
            "nodes": [
                node("users", "client", 80, 220, "Users", rate_rps=RATE_RPS),
                node("a", "service", 320, 220, "Service A", workers=A_WORKERS,
                     queue_capacity=1000,
                     service_time_ms={"dist": "exponential", "mean": 5}),
                node("b", "service", 560, 220, "Service B", workers=200, queue_capacity=1000,
                     service_time_ms=dict(B_HEALTHY)),
            ],
            "edges": [edge("users", "a", "users-a"),
                      edge("a", "b", EDGE_ID, timeout_ms=TIMEOUT_MS,
                           deadline_propagation=False)],
            "scenario": {"duration_s": 60, "seed": 42, "faults": [
                {"at_s": FAULT[0], "until_s": FAULT[1], "target": "b", "action": "set",
                 "param": "service_time_ms", "value": _tail(TAIL_SHARE, TAIL_MS)},
            ]},
        }

    def baseline(self, document: dict[str, Any]) -> dict[str, Any]:
        """The same call without a timeout."""
        document["title"] = "No timeout: A waits for B as long as B takes"
        find(document, EDGE_ID)["params"]["timeout_ms"] = None
        return document

    def figures(self, sim: Simulation) -> dict[str, Any]:
        call = sim.network.edges.get(EDGE_ID)
        a = sim.nodes["a"].stats(sim.duration_ms) if "a" in sim.nodes else {}
        b = sim.nodes["b"].stats(sim.duration_ms) if "b" in sim.nodes else {}
        out: dict[str, Any] = {
            "timed_out_calls": call.timeouts if call else 0,
            "caller_wait_max_ms": round(call.max_wait, 3) if call else 0.0,
            "late_replies": call.late_replies if call else 0,
            "a_workers_busy_max": a.get("max_busy", 0),
            "a_utilisation": a.get("utilisation", 0.0),
            "a_queue_max": a.get("max_queue", 0),
            "a_rejected": a.get("rejected", 0),
            "wasted_work_s": round(b.get("wasted_ms", 0.0) / 1000.0, 1),
            "b_skipped_expired": b.get("expired_skipped", 0),
        }
        fault = next((f for f in sim.document["scenario"]["faults"]
                      if f.get("until_s") is not None), None)
        if fault is not None:
            out["p99_before_fault_ms"] = _p99(sim, 0.0, fault["at_s"])
            out["p99_during_fault_ms"] = _p99(sim, fault["at_s"], fault["until_s"])
        return out

    def checks(self, sim: Simulation) -> list[dict[str, Any]]:
        out = []
        for e in sim.network.edges.values():
            if e.timeout_ms is not None:
                out.append(check(
                    f"no caller waits longer than its timeout on {e.id}",
                    e.max_wait <= e.timeout_ms + 1e-9,
                    f"longest wait {e.max_wait:.3f} ms, timeout {e.timeout_ms:g} ms"))
            out.append(check(
                f"every call on {e.id} ends once: answered in time or timed out",
                e.answered + e.timeouts <= e.sent,
                f"{e.sent} sent, {e.answered} answered, {e.timeouts} timed out, "
                f"{e.late_replies} late replies ignored"))
        return out
