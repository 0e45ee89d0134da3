"""Leader election: a Raft-style cluster agrees on one leader per term.

Covers: Raft's election (randomised timeouts, one durable vote per term, pre-vote and
check-quorum) among 5 ``raft_elector`` nodes in a cluster group with 1 ms links; only the
leader runs the singleton job (1 tick/s).
Scenario: the leader is crashed at 10 s (``leader:raft``, resolved when the fault fires)
and restarts at 20 s: a new leader in ≈ 160 ms, its term one higher, at most one job tick
missed. At 30 s a follower is cut off for 5 s: with pre-vote its term stays put; without
(``--set n1.pre_vote=false`` on every node) it comes back ~20 terms ahead and deposes the
leader. The baseline is a static primary: the job stops for the whole 10 s.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from patterns.catalog.registry import (
    Pattern,
    edge,
    node,
    on_ring,
    register_pattern,
    verdict_checks,
)
from patterns.engine import invariants
from patterns.engine.metrics import quantile_sorted
from patterns.engine.simulation import Simulation

CLUSTER = "raft"
MEMBERS = 5
LINK_MS = 1.0  # one way, constant: the entry's 1 ms LAN
LEASE = "lease"  # the lease variant's cluster, and the key its electors compete for
LEASE_MEMBERS = 3
LEASE_KINDS = ("lease_elector",)


def members(document: dict[str, Any]) -> list[dict[str, Any]]:
    return [n for n in document["nodes"] if n["kind"] in ("raft_elector", *LEASE_KINDS)]


def lease_document() -> dict[str, Any]:
    """The lease variant's canonical document (Kubernetes Lease, client-go defaults)."""
    nodes = [node(f"e{i}", "lease_elector", *on_ring(i, LEASE_MEMBERS, 200, 240, 130, 150),
                  f"e{i}", cluster=LEASE)
             for i in range(1, LEASE_MEMBERS + 1)]
    nodes.append(node("store", "lease_store", 480, 240, "Lease store"))
    link = {"dist": "constant", "value": LINK_MS}
    return {
        "version": 1,
        "title": "Three electors compete for a lease; the holder crashes, then pauses",
        "pattern": LeaderElection.SLUG,
        "nodes": nodes,
        "edges": [edge(n["id"], "store", latency_ms=link) for n in nodes[:-1]],
        "scenario": {"duration_s": 75, "seed": 42, "faults": [
            {"at_s": 10, "until_s": 30, "target": f"leader:{LEASE}", "action": "crash"},
            {"at_s": 40, "until_s": 60, "target": f"leader:{LEASE}", "action": "pause"},
        ]},
    }


@register_pattern
class LeaderElection(Pattern):
    SLUG = "leader-election"
    NAME = "Leader election"
    CATEGORY = "coordination"
    SUMMARY = ("Nodes elect one leader per term with randomised election timeouts and "
               "majority votes; only the leader runs the singleton job.")
    PROBLEM = ("Some work must be done by exactly one node at a time (a scheduler, a "
               "primary), and that node can crash: the others must notice and agree on a "
               "successor without two of them acting at once.")
    TRADEOFFS = ("Failover takes an election timeout plus a few round trips, and a majority "
                 "must be up; timeouts too short cause needless elections, too long slow "
                 "failover. Two nodes may believe they lead at once (in different terms), so "
                 "the work they guard still needs fencing.")
    TEACHING_FAULT = ("The leader crashes at 10 s and restarts at 20 s; a follower is cut "
                      "off from 30 s to 35 s.")
    BASELINE = "A static primary: no election, so the job stops while the primary is down."
    OBSERVATIONS = (
        "The leader badge moves within a fraction of a second of the crash and the term "
        "steps up by one.",
        "The singleton job misses at most one tick; with the static primary it stops for "
        "the whole 10 s.",
        "With pre-vote the cut-off follower rejoins at the same term; without it, it "
        "rejoins far ahead and forces a needless election.",
        "At most one leader per term, checked on the run's events.",
    )

    def canonical(self) -> dict[str, Any]:
        nodes = [
            node(f"n{i}", "raft_elector", *on_ring(i, MEMBERS, 320, 240, 180, 160), f"n{i}",
                 cluster=CLUSTER, peer_latency_ms=LINK_MS)
            for i in range(1, MEMBERS + 1)
        ]
        return {
            "version": 1,
            "title": "Five Raft electors; the leader crashes",
            "pattern": self.SLUG,
            "nodes": nodes,
            "edges": [],
            "scenario": {"duration_s": 60, "seed": 42, "faults": [
                {"at_s": 10, "until_s": 20, "target": f"leader:{CLUSTER}", "action": "crash"},
                {"at_s": 30, "until_s": 35, "target": f"follower:{CLUSTER}",
                 "action": "partition"},
            ]},
        }

    def lease(self) -> dict[str, Any]:
        """The lease variant's canonical document (see the module docstring)."""
        return lease_document()

    def variants(self) -> dict[str, Callable[[], dict[str, Any]]]:
        return {"lease": lease_document}

    def baseline(self, document: dict[str, Any]) -> dict[str, Any]:
        document["title"] = "A static primary: no election"
        for member in members(document):
            member["params"]["election"] = "static"
        return document

    def figures(self, sim: Simulation) -> dict[str, Any]:
        if not _is_lease(sim):
            return election_figures(sim)
        return lease_figures(sim)

    def checks(self, sim: Simulation) -> list[dict[str, Any]]:
        if not _is_lease(sim):
            return verdict_checks((
                ("at most one leader per term", invariants.one_leader_per_term(sim.records)),
                ("at most one vote per node per term",
                 invariants.one_vote_per_term(sim.records)),
                ("terms never decrease on a node",
                 invariants.terms_never_decrease(sim.records)),
            ))
        return verdict_checks((
            ("at most one unexpired lease at any instant",
             invariants.one_unexpired_lease(sim.records)),
            ("failover ≤ lease_duration + 2 × retry_period",
             invariants.lease_failover_within(sim.records, lease_failover_bound_ms(sim),
                                              sim.end_ms)),
        ))


def _is_lease(sim: Simulation) -> bool:
    """A lease-variant run: lease electors and no Raft elector."""
    kinds = {n.KIND for n in sim.nodes.values()}
    return "lease_elector" in kinds and "raft_elector" not in kinds


def _lease_electors(sim: Simulation) -> list[Any]:
    return [n for n in sim.nodes.values() if n.KIND in LEASE_KINDS]


def lease_failover_bound_ms(sim: Simulation) -> float:
    """The entry's bound on a lease failover: lease_duration + 2 × retry_period (the
    largest any elector is configured with)."""
    return max((float(n.p["lease_duration_s"]) + 2 * float(n.p["retry_period_s"])) * 1000.0
               for n in _lease_electors(sim))



def leadership(sim: Simulation, prefix: str = "raft",
               term_field: str = "term") -> list[tuple[float, float, str, int]]:
    """Each leadership as (start, end, node, term), end = the run's end if it lasted, from
    ``<prefix>.leader`` and ``<prefix>.stepdown`` records (``lease``: a lease's version
    stands for the term)."""
    open_: dict[str, tuple[float, int]] = {}
    spans: list[tuple[float, float, str, int]] = []
    began, ended = f"{prefix}.leader", f"{prefix}.stepdown"
    for ev in sim.records:
        if ev["k"] == began:
            open_[ev["node"]] = (ev["t"], ev[term_field])
        elif ev["k"] == ended and ev["node"] in open_:
            start, term = open_.pop(ev["node"])
            spans.append((start, ev["t"], ev["node"], term))
    spans += [(start, sim.end_ms, n, term) for n, (start, term) in open_.items()]
    spans.sort()
    return spans


def _covered(spans: list[tuple[float, float]], need: int) -> float:
    """Milliseconds during which at least ``need`` of the spans overlap."""
    edges = sorted([(s, 1) for s, _ in spans] + [(e, -1) for _, e in spans],
                   key=lambda x: (x[0], x[1]))
    total, depth, since = 0.0, 0, 0.0
    for t, step in edges:
        if depth >= need:
            total += t - since
        depth += step
        since = t
    return total


def election_figures(sim: Simulation) -> dict[str, Any]:
    """The entry's figures, from the run's records."""
    records = sim.records
    spans = leadership(sim)
    intervals = [(s, e) for s, e, _, _ in spans]
    leaders_by_term: dict[int, set[str]] = {}
    for _, _, n, term in spans:
        leaders_by_term.setdefault(term, set()).add(n)
    candidates: dict[int, set[str]] = {}
    for ev in records:
        if ev["k"] == "raft.candidate":
            candidates.setdefault(ev["term"], set()).add(ev["node"])
    # A split vote: two or more candidates in a term, and nobody won it.
    split_terms = {ev["term"] for ev in records if ev["k"] == "raft.split"
                   and ev["term"] not in leaders_by_term
                   and len(candidates.get(ev["term"], ())) >= 2}
    failovers: list[float] = []
    leader_starts = sorted((s, n) for s, _, n, _ in spans)
    for ev in records:
        if ev["k"] == "raft.stepdown" and ev["why"] == "crashed":
            later = [s for s, _ in leader_starts if s >= ev["t"]]
            if later:
                failovers.append(later[0] - ev["t"])
    failovers.sort()
    ticks, missed, doubled = _job_ticks(sim, CLUSTER)
    terms = max((ev["to"] for ev in records if ev["k"] == "raft.term"), default=0)
    return {
        "terms": terms,
        "elections": len(candidates),
        "split_votes": len(split_terms),
        "leaderless_ms_total": round(sim.end_ms - _covered(intervals, 1), 3),
        "failover_ms": {
            "count": len(failovers),
            "p50": round(quantile_sorted(failovers, 0.5), 3) if failovers else None,
            "max": round(failovers[-1], 3) if failovers else None,
        },
        "max_leaders_per_term": max((len(v) for v in leaders_by_term.values()), default=0),
        "disruptive_elections": sum(1 for ev in records if ev["k"] == "raft.stepdown"
                                    and ev["why"] == "higher_term"),
        "singleton_ticks": ticks,
        "singleton_ticks_missed": missed,
        "singleton_ticks_doubled": doubled,
        "dual_leader_ms": round(_covered(intervals, 2), 3),
    }


def _job_ticks(sim: Simulation, cluster_name: str) -> tuple[int, int, int]:
    """The singleton job's ticks: (ticks, slots missed since the first, slots ticked twice)."""
    ticks: dict[int, int] = {}
    for ev in sim.records:
        if ev["k"] == "job.tick":
            ticks[ev["slot"]] = ticks.get(ev["slot"], 0) + 1
    missed = 0
    doubled = 0
    if ticks:
        cluster = sim.clusters.get(cluster_name)
        period = cluster.members[0].p["job_period_ms"] if cluster else 1000.0
        last_slot = int(sim.duration_ms // period)
        missed = sum(1 for s in range(min(ticks), last_slot + 1) if s not in ticks)
        doubled = sum(1 for c in ticks.values() if c > 1)
    return sum(ticks.values()), missed, doubled


def lease_figures(sim: Simulation) -> dict[str, Any]:
    """The lease variant's figures: failover after a holder crash, time with no leader and
    with two (``dual_leader_ms``: two electors both believed they led), the job's ticks."""
    records = sim.records
    spans = leadership(sim, "lease", "version")
    intervals = [(s, e) for s, e, _, _ in spans]
    failovers: list[float] = []
    for ev in records:
        if ev["k"] == "lease.stepdown" and ev["why"] == "crashed":
            later = [s for s, _, _, _ in spans if s >= ev["t"]]
            if later:
                failovers.append(min(later) - ev["t"])
    failovers.sort()
    electors = _lease_electors(sim)
    cluster = electors[0].p["cluster"] if electors else LEASE
    ticks, missed, doubled = _job_ticks(sim, cluster)
    grants = [ev for ev in records if ev["k"] == "lease.grant"]
    stores = [n for n in sim.nodes.values() if n.KIND == "lease_store"]
    return {
        "acquisitions": len(spans),
        "lease_grants": len(grants),
        "lease_renewals": sum(1 for ev in grants if ev["renew"]),
        "cas_conflicts": sum(getattr(n, "cas_conflicts", 0) for n in stores),
        "leaderless_ms_total": round(sim.end_ms - _covered(intervals, 1), 3),
        "failover_ms": {
            "count": len(failovers),
            "p50": round(quantile_sorted(failovers, 0.5), 3) if failovers else None,
            "max": round(failovers[-1], 3) if failovers else None,
        },
        "stepdowns": {why: sum(1 for ev in records if ev["k"] == "lease.stepdown"
                               and ev["why"] == why)
                      for why in ("crashed", "deadline", "taken")},
        "singleton_ticks": ticks,
        "singleton_ticks_missed": missed,
        "singleton_ticks_doubled": doubled,
        "dual_leader_ms": round(_covered(intervals, 2), 3),
    }
