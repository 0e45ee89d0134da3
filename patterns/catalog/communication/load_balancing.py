"""Load balancing: one entry point spreads calls over interchangeable backends.

Covers: the ``load_balancer`` kind's algorithms (round robin, smooth weighted round robin,
random, least connections, power of two choices, consistent hashing) and its active health
checks, which eject a backend that stops answering and bring it back when it recovers.
Scenario: 400 req/s through a balancer to 4 services of 4 workers each; three serve in
20 ms on average, the fourth (an older machine) in 30 ms. From 20 s to 40 s one backend
becomes 10× slower: it can serve 20 req/s, a quarter of the load is 100 req/s. The balancer
routes by least connections with health checks every second (three failures eject, two
successes restore): the slow backend holds its calls longer, so it has more in flight and
is sent fewer, and p99 barely moves.

Baseline: the same system with round robin, health checks unchanged. Only the algorithm
differs, and that is the point: the slow backend still answers its probes at once (a probe
skips the queue), so health checks never eject it; round robin keeps sending it a quarter
of the calls, its queue grows by ~80 calls a second, and p99 explodes. Try
``--set lb.algorithm=power_of_two`` (two random picks, the less loaded), which does almost
as well, or ``random``, which does as badly as round robin.
"""

from __future__ import annotations

from typing import Any

from patterns.catalog.registry import Pattern, check, edge, find, node, register_pattern
from patterns.components.load_balancer import (
    HashRing,
    LoadBalancer,
    modulo_moved_on_removal,
)
from patterns.engine.simulation import Simulation

RATE_RPS = 400  # offered load: ρ ≈ 0.53 over the four backends
WORKERS = 4  # per backend
SERVICE_MS = 20.0  # mean work time of a normal backend
OLD_SERVICE_MS = 30.0  # the deliberately slower backend
SLOWDOWN = 10  # the teaching fault: one backend ×10 from 20 s to 40 s
HEALTH_CHECK_MS = 1000.0  # teaching: HAProxy probes every 2 s


@register_pattern
class LoadBalancing(Pattern):
    SLUG = "load-balancing"
    NAME = "Load balancing"
    CATEGORY = "communication"
    SUMMARY = ("A load balancer takes every call and forwards it to one of several "
               "interchangeable backends, chosen by an algorithm, skipping the ones its health "
               "checks marked down.")
    PROBLEM = ("One machine cannot serve all the load or survive its own failure; callers "
               "should not have to know how many copies there are, or which are alive.")
    TRADEOFFS = ("Blind algorithms (round robin, random) are simple and stateless but keep "
                 "feeding a slow backend; load-aware ones (least connections, power of two) "
                 "route around it but are drawn to a backend that fails fast (sinkholing) "
                 "unless health checks eject it. Consistent hashing keeps each key on one "
                 "backend (cache locality) at the price of uneven load. Health checks only "
                 "see what a probe sees, and take a few intervals to react.")
    TEACHING_FAULT = "One backend becomes 10× slower from 20 s to 40 s."
    BASELINE = ("Round robin, with the same health checks: the slow backend passes its "
                "probes, so it keeps a quarter of the calls.")
    OBSERVATIONS = (
        "With least connections the slow backend's share of calls drops while it is slow, "
        "and p99 stays within a few service times; with round robin its queue grows by "
        "~80 calls a second and p99 reaches seconds.",
        "Health checks never eject the slow backend: its probes are answered at once, so "
        "'ejections' stays empty. Health checks catch the dead, not the slow.",
        "Round robin gives every backend the same count, ±1; the slower backend's max in "
        "flight is the highest.",
        "Under least connections a backend that crashed and refuses at once has nothing in "
        "flight, so it attracts most calls (sinkholing) until health checks eject it.",
        "With consistent_hash, 'keys_moved_on_removal' is about 1/N, against (N−1)/N for "
        "hash mod N.",
    )

    def canonical(self) -> dict[str, Any]:
        def backend(i: int, y: float, mean_ms: float, label: str) -> dict[str, Any]:
            return node(f"b{i}", "service", 560, y, label, workers=WORKERS,
                        service_time_ms={"dist": "exponential", "mean": mean_ms})

        return {
            "version": 1,
            "title": "Four backends behind a load balancer, one turns slow",
            "pattern": self.SLUG,
            "nodes": [
                node("users", "client", 80, 250, "Users", rate_rps=RATE_RPS),
                node("lb", "load_balancer", 320, 250, "Load balancer",
                     algorithm="least_connections",
                     health_check_interval_ms=HEALTH_CHECK_MS,
                     health_check_timeout_ms=500.0,
                     unhealthy_threshold=3, healthy_threshold=2),
                backend(1, 100, SERVICE_MS, "Backend 1"),
                backend(2, 200, SERVICE_MS, "Backend 2"),
                backend(3, 300, SERVICE_MS, "Backend 3"),
                backend(4, 400, OLD_SERVICE_MS, "Backend 4 (older)"),
            ],
            "edges": [edge("users", "lb")] + [edge("lb", f"b{i}") for i in range(1, 5)],
            "scenario": {"duration_s": 60, "seed": 42, "faults": [
                {"at_s": 20, "until_s": 40, "target": "b1", "action": "slow",
                 "value": SLOWDOWN},
            ]},
        }

    def baseline(self, document: dict[str, Any]) -> dict[str, Any]:
        """Only the algorithm changes: round robin, the blind default of nginx and HAProxy."""
        document["title"] = "The same backends behind round robin"
        find(document, "lb")["params"]["algorithm"] = "round_robin"
        return document

    def figures(self, sim: Simulation) -> dict[str, Any]:
        out: dict[str, Any] = {"p99_ms": sim.latency.summary()["p99"]}
        for lb in _balancers(sim):
            stats = lb.stats(sim.duration_ms)
            backends = stats["backends"]
            total = sum(b["routed"] for b in backends.values()) or 1
            figures: dict[str, Any] = {
                "algorithm": stats["algorithm"],
                "share_by_backend": {k: round(b["routed"] / total, 4)
                                     for k, b in backends.items()},
                "requests_by_backend": {k: b["routed"] for k, b in backends.items()},
                "max_in_flight_by_backend": {k: b["max_in_flight"] for k, b in backends.items()},
                "ejections": len([e for e in stats["ejections"] if e["to"] == "ejected"]),
                "health_events": stats["ejections"],
                "no_backend_503": stats["no_backend"],
            }
            if stats["algorithm"] == "consistent_hash":
                figures.update(_keys_moved(sim, lb))
            # The canonical document has one balancer: its figures sit at the top level.
            if lb.id == "lb":
                out.update(figures)
            else:
                out[lb.id] = figures
        return out

    def checks(self, sim: Simulation) -> list[dict[str, Any]]:
        finished = sum(sim.outcomes.values())
        out = [check("every request ends in exactly one outcome", finished <= sim.sent,
                     f"{sim.sent} sent, {finished} finished")]
        for lb in _balancers(sim):
            backends = lb.backends
            strays = sum(b.routed_while_ejected for b in backends)
            out.append(check(f"{lb.id}: no request routed to a backend marked down",
                             strays == 0, f"{strays} routed while ejected"))
            in_flight = sum(b.in_flight for b in backends)
            ended = lb.relayed + lb.reset + lb.cancelled
            out.append(check(f"{lb.id}: every forwarded call relayed, reset or in flight",
                             lb.forwarded == ended + in_flight,
                             f"{lb.forwarded} forwarded, {lb.relayed} relayed, "
                             f"{lb.reset} reset by a crash, {lb.cancelled} given up by the "
                             f"caller, {in_flight} in flight"))
            if lb.p["algorithm"] == "round_robin" and not lb.ejections:
                counts = [b.routed for b in backends]
                out.append(check(f"{lb.id}: round robin counts within ±1",
                                 max(counts) - min(counts) <= 1, f"counts {counts}"))
        return out


def _balancers(sim: Simulation) -> list[LoadBalancer]:
    return [n for n in sim.nodes.values() if isinstance(n, LoadBalancer)]


def _keys_moved(sim: Simulation, lb: LoadBalancer) -> dict[str, Any]:
    """Share of the clients' keys that would move if the first backend left the pool."""
    members = [b.id for b in lb.backends]
    if len(members) < 2:
        return {}
    key_count = max((int(n.p["keys"]) for n in sim.nodes.values() if n.KIND == "client"),
                    default=1000)
    keys = [f"k{i}" for i in range(min(key_count, 100_000))]
    ring = HashRing(members, lb.p["virtual_nodes"])
    return {"keys_moved_on_removal": round(ring.moved_on_removal(keys, members[0]), 4),
            "modulo_keys_moved_on_removal":
                round(modulo_moved_on_removal(keys, members, members[0]), 4),
            "ideal_keys_moved": round(1 / len(members), 4)}
