"""Consensus: Raft log replication under a key-value state machine.

Covers: 5 ``raft_node`` members in a cluster group (1 ms links, WAL fsync lognormal median
2 ms, p99 10 ms) and two ``raft_client`` apps, ``app_a`` beside n1, n2 and ``app_b`` beside
n3–n5, each sending 50 puts/s; a put is acknowledged only once committed and applied.
Scenario: at 20 s the cluster is split {n1, n2, app_a} | {n3, n4, n5, app_b} for 10 s, then
the leader is crashed at 40 s for 5 s (``leader:raft``). Raft: the majority side elects and
keeps committing; the minority commits nothing, app_a's writes fail or time out and none is
acknowledged; after the heal the minority truncates; no acknowledged write is lost. Baseline
(``primary_backup``): both sides have a primary, each acknowledges writes, and the heal
discards one side's; the crash loses up to a replication interval.

The checks read the run's records and the members' end state: at most one leader per term,
leader append-only, log matching, commit rule, committed entries kept, state machine safety
and no acknowledged write lost (acked ops against the surviving state machine).
"""

from __future__ import annotations

import hashlib
import math
from typing import Any

from patterns.catalog.coordination.leader_election import _covered, leadership
from patterns.catalog.registry import (
    Pattern,
    edge,
    node,
    on_ring,
    register_pattern,
    verdict_checks,
)
from patterns.components.consensus import PrimaryBackup, RaftNode
from patterns.engine import invariants
from patterns.engine.invariants import Verdict
from patterns.engine.metrics import quantile_sorted
from patterns.engine.node import Node
from patterns.engine.simulation import Simulation

CLUSTER = "raft"
MEMBERS = 5
LINK_MS = 1.0
MINORITY = ["n1", "n2", "app_a"]
MAJORITY = ["n3", "n4", "n5", "app_b"]


def members(document: dict[str, Any]) -> list[dict[str, Any]]:
    return [n for n in document["nodes"] if n["kind"] in ("raft_node", "primary_backup")]


@register_pattern
class Consensus(Pattern):
    SLUG = "consensus"
    NAME = "Consensus (Raft log replication)"
    CATEGORY = "coordination"
    SUMMARY = ("A Raft cluster replicates a log of writes and applies it to a key-value "
               "store; a write is acknowledged only once a majority has it.")
    PROBLEM = ("Several replicas must agree on one order of writes, and a write a client was "
               "told succeeded must survive crashes and partitions, even of the leader.")
    TRADEOFFS = ("Every write waits for a majority's disk (an RTT plus an fsync); a side "
                 "without a majority cannot write at all (consistency over availability); "
                 "a leader change costs an election timeout.")
    TEACHING_FAULT = ("At 20 s the cluster splits {n1, n2, app_a} | {n3, n4, n5, app_b} for "
                      "10 s; at 40 s the leader crashes for 5 s.")
    BASELINE = ("Primary/backup with asynchronous replication: the primary acknowledges at "
                "once and ships writes every 100 ms; a backup promotes itself after 1 s "
                "without the primary. No quorum, no terms.")
    OBSERVATIONS = (
        "In the split, the minority's commit index goes flat while the majority's keeps "
        "rising; app_a's writes all fail or time out (a CP choice).",
        "After the heal the old leader steps down and discards its uncommitted entries.",
        "The leader crash costs one election of ≈ 0.2 s; no acknowledged write is lost.",
        "The baseline never refuses a write, and loses the acknowledged writes of one side "
        "of the split, and up to a replication interval at the crash.",
    )

    def canonical(self) -> dict[str, Any]:
        nodes = [
            node(f"n{i}", "raft_node", *on_ring(i, MEMBERS, 420, 260, 170, 150), f"n{i}",
                 cluster=CLUSTER, peer_latency_ms=LINK_MS)
            for i in range(1, MEMBERS + 1)
        ]
        nodes += [node("app_a", "raft_client", 120, 120, "app_a", rate=50.0),
                  node("app_b", "raft_client", 720, 420, "app_b", rate=50.0)]
        edges = [edge(app, f"n{i}", latency_ms=LINK_MS)
                 for app in ("app_a", "app_b") for i in range(1, MEMBERS + 1)]
        return {
            "version": 1,
            "title": "Five Raft nodes replicate a key-value store; the cluster splits",
            "pattern": self.SLUG,
            "nodes": nodes,
            "edges": edges,
            "scenario": {"duration_s": 60, "seed": 42, "faults": [
                {"at_s": 20, "until_s": 30, "target": CLUSTER, "action": "partition",
                 "groups": [MINORITY, MAJORITY]},
                {"at_s": 40, "until_s": 45, "target": f"leader:{CLUSTER}", "action": "crash"},
            ]},
        }

    def baseline(self, document: dict[str, Any]) -> dict[str, Any]:
        document["title"] = "Primary/backup with asynchronous replication"
        for member in members(document):
            member["kind"] = "primary_backup"
            keep = ("cluster", "peer_latency_ms")
            member["params"] = {k: v for k, v in member["params"].items() if k in keep}
        return document

    def figures(self, sim: Simulation) -> dict[str, Any]:
        return consensus_figures(sim)

    def checks(self, sim: Simulation) -> list[dict[str, Any]]:
        return verdict_checks((
            ("at most one leader per term", invariants.one_leader_per_term(sim.records)),
            ("only followers truncate (leader append-only)", leader_append_only(sim.records)),
            ("logs match (same index and term, same prefix)", logs_match(cluster_nodes(sim))),
            ("commit only entries of the leader's term", commit_rule(sim.records)),
            ("committed entries are never overwritten", committed_kept(sim.records)),
            ("no two nodes apply different commands at an index",
             state_machine_safety(sim.records)),
            ("no acknowledged write lost", acked_kept(sim)),
        ))



# -- end state ----------------------------------------------------------------------------------
def cluster_nodes(sim: Simulation) -> list[Node]:
    cluster = sim.clusters.get(CLUSTER)
    return list(cluster.members) if cluster is not None else []


def applied_ops(member: Node) -> set[int]:
    """The op ids in a member's state machine."""
    if isinstance(member, RaftNode):
        return set(member.applied_ops)
    if isinstance(member, PrimaryBackup):
        return {cmd["op"] for cmd in member.log}
    return set()


def progress(member: Node) -> int:
    if isinstance(member, RaftNode):
        return member.last_applied
    if isinstance(member, PrimaryBackup):
        return len(member.log)
    return 0


def survivor(sim: Simulation) -> Node | None:
    """The state machine that survives the run: the live leader's (the highest term's), or
    else the live member that applied the most."""
    cluster = sim.clusters.get(CLUSTER)
    if cluster is None:
        return None
    leader = cluster.holder("leader")
    if leader is not None:
        return leader
    live = [n for n in cluster.members if not n.down]
    return max(live, key=progress) if live else None


# -- checks -------------------------------------------------------------------------------------
def leader_append_only(records: list[dict[str, Any]]) -> Verdict:
    count = 0
    for ev in records:
        if ev["k"] == "raft.truncate":
            count += 1
            if ev["role"] == "leader":
                return Verdict(False, f"leader {ev['node']} truncated its log",
                               {"t": ev["t"], "nodes": [ev["node"]],
                                "what": f"leader {ev['node']} deleted entries from index "
                                        f"{ev['from']}"})
    return Verdict(True, f"{count} truncations, all by followers")


def _digests(log: list[Any]) -> list[str]:
    """Running digest of each prefix of a log: equal digests mean equal prefixes."""
    out, h = [], hashlib.sha1()
    for term, cmd in log:
        h.update(repr((term, None if cmd is None else cmd["op"])).encode())
        out.append(h.copy().hexdigest())
    return out


def logs_match(nodes: list[Node]) -> Verdict:
    """Log Matching at the end of the run: two logs with an entry of the same index and term
    hold identical prefixes up to it."""
    logs = {n.id: n.log for n in nodes if isinstance(n, RaftNode)}
    if not logs:
        return Verdict(True, "no terms, no Raft logs to compare")
    seen: dict[tuple[int, int], tuple[str, str]] = {}
    for nid, log in logs.items():
        for i, digest in enumerate(_digests(log)):
            key = (i + 1, log[i][0])
            first = seen.setdefault(key, (nid, digest))
            if first[1] != digest:
                return Verdict(False, f"{first[0]} and {nid} disagree before index {i + 1}",
                               {"t": None, "nodes": [first[0], nid],
                                "what": f"{first[0]} and {nid} both hold index {i + 1} of term "
                                        f"{log[i][0]} but their logs differ before it"})
    longest = max(len(log) for log in logs.values())
    return Verdict(True, f"{len(logs)} logs (up to {longest} entries) agree wherever they "
                   "share an index and term")


def commit_rule(records: list[dict[str, Any]]) -> Verdict:
    commits = 0
    for ev in records:
        if ev["k"] == "raft.commit":
            commits += 1
            if ev["entry_term"] != ev["term"]:
                return Verdict(False, f"{ev['node']} committed an entry of an older term",
                               {"t": ev["t"], "nodes": [ev["node"]],
                                "what": f"{ev['node']} (leader of term {ev['term']}) committed "
                                        f"index {ev['index']} of term {ev['entry_term']} by "
                                        f"counting {ev['replicas']} replicas"})
    return Verdict(True, f"{commits} commits, each of an entry of the leader's term")


def committed_kept(records: list[dict[str, Any]]) -> Verdict:
    """Leader Completeness, as the stream shows it: an entry some node applied (so it was
    committed) is never deleted from any log."""
    applied: dict[int, tuple[int, str]] = {}
    for ev in records:
        if ev["k"] == "raft.apply":
            applied.setdefault(ev["index"], (ev["term"], ev["node"]))
        elif ev["k"] == "raft.truncate":
            for j, term in enumerate(ev["terms"]):
                index = ev["from"] + j
                hit = applied.get(index)
                if hit is not None and hit[0] == term:
                    return Verdict(False, f"{ev['node']} deleted committed index {index}",
                                   {"t": ev["t"], "nodes": [ev["node"], hit[1]],
                                    "what": f"{ev['node']} deleted index {index} of term "
                                            f"{term}, which {hit[1]} had committed and "
                                            "applied"})
    return Verdict(True, f"{len(applied)} committed entries, none deleted")


def divergent_applies(records: list[dict[str, Any]]) -> tuple[int, dict[str, Any] | None]:
    first: dict[int, tuple[Any, str]] = {}
    count, example = 0, None
    for ev in records:
        if ev["k"] != "raft.apply":
            continue
        op, nid = ev["op"], ev["node"]
        earlier = first.setdefault(ev["index"], (op, nid))
        if earlier[0] != op:
            count += 1
            if example is None:
                example = {"t": ev["t"], "nodes": [earlier[1], nid],
                           "what": f"{nid} applied op {op} at index {ev['index']}, where "
                                   f"{earlier[1]} applied op {earlier[0]}"}
    return count, example


def state_machine_safety(records: list[dict[str, Any]]) -> Verdict:
    count, example = divergent_applies(records)
    applies = sum(1 for ev in records if ev["k"] == "raft.apply")
    if count:
        return Verdict(False, f"{count} applies disagree with an earlier one", example)
    return Verdict(True, f"{applies} applies, one command per index")


def lost_writes(sim: Simulation) -> tuple[list[Any], Node | None]:
    """Acknowledged puts missing from the surviving state machine, in order of their ack."""
    keeper = survivor(sim)
    kept = applied_ops(keeper) if keeper is not None else set()
    acked = [op for op in sim.history.ops if op.result == "ok"]
    acked.sort(key=lambda op: op.end or 0.0)
    return [op for op in acked if op.id not in kept], keeper


def acked_kept(sim: Simulation) -> Verdict:
    lost, keeper = lost_writes(sim)
    acked = sum(1 for op in sim.history.ops if op.result == "ok")
    where = keeper.id if keeper is not None else "nobody"
    if lost:
        op = lost[0]
        return Verdict(False, f"{len(lost)} of {acked} acknowledged writes are not in {where}'s "
                       "state", {"t": round(op.end or 0.0, 3), "nodes": [op.process, where],
                                 "what": f"op {op.id} (put {op.value['key']}={op.value['value']}"
                                         f" by {op.process}) was acknowledged, and {where}'s "
                                         "state machine does not have it"})
    return Verdict(True, f"all {acked} acknowledged writes are in {where}'s state")


# -- figures ------------------------------------------------------------------------------------
def commit_latencies(records: list[dict[str, Any]]) -> list[float]:
    """Per entry: from the leader's append to its commit (the commit of a later index counts)."""
    pending: dict[tuple[str, int], list[tuple[int, float]]] = {}
    out: list[float] = []
    for ev in records:
        if ev["k"] == "raft.append":
            pending.setdefault((ev["node"], ev["term"]), []).append((ev["index"], ev["t"]))
        elif ev["k"] == "raft.commit":
            queue = pending.get((ev["node"], ev["term"]), [])
            while queue and queue[0][0] <= ev["index"]:
                out.append(ev["t"] - queue.pop(0)[1])
    out.sort()
    return out


def minority_commits(sim: Simulation) -> int:
    """Commits, by a leader on the minority side of a cluster split, of entries it appended
    after the split began (acknowledgements already on their way at the cut may still
    commit earlier entries: those were stored on a majority before it)."""
    cluster = sim.clusters.get(CLUSTER)
    if cluster is None:
        return 0
    ids = {n.id for n in cluster.members}
    spans = []
    for fault in sim.document["scenario"].get("faults", []):
        if fault["action"] == "partition" and fault["target"] == CLUSTER and fault.get("groups"):
            for group in fault["groups"]:
                side = {n for n in group if n in ids}
                if len(side) < cluster.majority:
                    until = fault.get("until_s")
                    spans.append((fault["at_s"] * 1000, math.inf if until is None
                                  else until * 1000, side))
    appended: dict[tuple[str, int, int], float] = {}
    count = 0
    for ev in sim.records:
        if ev["k"] == "raft.append":
            appended[(ev["node"], ev["term"], ev["index"])] = ev["t"]
        elif ev["k"] == "raft.commit":
            since = appended.get((ev["node"], ev["term"], ev["index"]), -math.inf)
            count += any(a <= since and ev["t"] < b and ev["node"] in side
                         for a, b, side in spans)
    return count


def consensus_figures(sim: Simulation) -> dict[str, Any]:
    records = sim.records
    spans = leadership(sim)
    leaders_by_term: dict[int, set[str]] = {}
    for _, _, n, term in spans:
        leaders_by_term.setdefault(term, set()).add(n)
    latencies = commit_latencies(records)
    ops = sim.history.ops
    lost, _ = lost_writes(sim)
    divergent, _ = divergent_applies(records)
    write_ms = sorted((op.end or 0.0) - op.invoked for op in ops if op.result == "ok")
    return {
        "terms": max((ev["to"] for ev in records if ev["k"] == "raft.term"), default=0),
        "leader_changes": sum(1 for ev in records if ev["k"] == "raft.leader"),
        "commits": max((ev["index"] for ev in records if ev["k"] == "raft.commit"),
                       default=0),
        "commit_latency_ms": _quantiles(latencies),
        "write_latency_ms": _quantiles(write_ms),
        "unavailable_ms": round(sim.end_ms - _covered([(s, e) for s, e, _, _ in spans], 1), 3),
        "writes": len(ops),
        "acked_writes": sum(1 for op in ops if op.result == "ok"),
        "failed_writes": sum(1 for op in ops if op.result == "fail"),
        "indeterminate_writes": sum(1 for op in ops if op.result in ("info", None)),
        "acked_writes_lost": len(lost),
        "divergent_applies": divergent,
        "entries_truncated": sum(len(ev["terms"]) for ev in records
                                 if ev["k"] == "raft.truncate"),
        "max_leaders_per_term": max((len(v) for v in leaders_by_term.values()), default=0),
        "minority_commits": minority_commits(sim),
    }


def _quantiles(sorted_ms: list[float]) -> dict[str, Any]:
    if not sorted_ms:
        return {"count": 0, "p50": None, "p99": None}
    return {"count": len(sorted_ms), "p50": round(quantile_sorted(sorted_ms, 0.5), 3),
            "p99": round(quantile_sorted(sorted_ms, 0.99), 3)}
