"""Invariants evaluated on a run's event stream, each with its first counterexample.

Each checker reads events (dicts with ``t`` and ``k``, as the trace carries them, or as
:attr:`Simulation.records` keeps them whatever the trace level) and returns a
:class:`Verdict`: whether the invariant held and, if not, the first counterexample (when,
which nodes, what happened), so the playground can jump to that moment of the run.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

Events = Iterable[dict[str, Any]]


@dataclass
class Verdict:
    ok: bool
    detail: str
    counterexample: dict[str, Any] | None = field(default=None)


def _counterexample(t: float, nodes: list[str], what: str) -> dict[str, Any]:
    return {"t": t, "nodes": nodes, "what": what}


def one_leader_per_term(events: Events) -> Verdict:
    """Election Safety: at most one node becomes leader in any term (``raft.leader``)."""
    leaders: dict[int, list[str]] = {}
    first: dict[str, Any] | None = None
    for ev in events:
        if ev["k"] != "raft.leader":
            continue
        term, node = ev["term"], ev["node"]
        names = leaders.setdefault(term, [])
        if node not in names:
            names.append(node)
        if len(names) > 1 and first is None:
            first = _counterexample(ev["t"], list(names),
                                    f"{node} became leader of term {term}, which "
                                    f"{names[0]} already leads")
    most = max((len(v) for v in leaders.values()), default=0)
    return Verdict(first is None, f"{len(leaders)} terms with a leader, at most {most} "
                   "leader(s) in one", first)


def one_vote_per_term(events: Events) -> Verdict:
    """Each node grants at most one vote per term (``vote.grant``, a self-vote included)."""
    votes: dict[tuple[str, int], str] = {}
    count = 0
    for ev in events:
        if ev["k"] != "vote.grant":
            continue
        count += 1
        key = (ev["node"], ev["term"])
        earlier = votes.setdefault(key, ev["candidate"])
        if earlier != ev["candidate"]:
            return Verdict(False, f"{ev['node']} voted twice in term {ev['term']}",
                           _counterexample(ev["t"], [ev["node"], earlier, ev["candidate"]],
                                           f"{ev['node']} voted for {ev['candidate']} in term "
                                           f"{ev['term']} after voting for {earlier}"))
    return Verdict(True, f"{count} votes, none twice in a term")


def terms_never_decrease(events: Events) -> Verdict:
    """A node's term only rises (``raft.term`` with ``from`` and ``to``)."""
    changes = 0
    for ev in events:
        if ev["k"] != "raft.term":
            continue
        changes += 1
        if ev["to"] < ev["from"]:
            return Verdict(False, f"{ev['node']}'s term went down",
                           _counterexample(ev["t"], [ev["node"]],
                                           f"{ev['node']}'s term went from {ev['from']} to "
                                           f"{ev['to']}"))
    return Verdict(True, f"{changes} term changes, all upward")


def one_unexpired_lease(events: Events) -> Verdict:
    """A lease store never grants a key to one holder while another's grant of it is
    unexpired (``lease.grant`` with ``holder`` and ``expires_at``, None: never)."""
    current: dict[tuple[str, str], tuple[str, float]] = {}
    grants = handovers = 0
    for ev in events:
        if ev["k"] != "lease.grant":
            continue
        grants += 1
        key = (ev["node"], ev["key"])
        holder, t = ev["holder"], ev["t"]
        expires = ev["expires_at"] if ev["expires_at"] is not None else float("inf")
        earlier = current.get(key)
        if earlier is not None and earlier[0] != holder:
            handovers += 1
            if t < earlier[1]:
                left = "never expires" if earlier[1] == float("inf") \
                    else f"expires at {earlier[1] / 1000:.3f} s"
                return Verdict(False, f"{ev['key']} granted to two holders at once",
                               _counterexample(t, [earlier[0], holder],
                                               f"{ev['node']} granted {ev['key']} to {holder} "
                                               f"(version {ev['version']}) while "
                                               f"{earlier[0]}'s lease {left}"))
        current[key] = (holder, expires)
    return Verdict(True, f"{grants} grants, {handovers} handovers, never two unexpired "
                   "leases")


def lease_failover_within(events: Events, bound_ms: float, end_ms: float) -> Verdict:
    """After a lease holder crashes (``lease.stepdown`` why ``crashed``), an elector leads
    again (``lease.leader``; the holder itself, restarted in time, counts) within
    ``bound_ms``; a run that ends sooner proves nothing."""
    crashes: list[dict[str, Any]] = []
    starts: list[dict[str, Any]] = []
    for ev in events:
        if ev["k"] == "lease.stepdown" and ev["why"] == "crashed":
            crashes.append(ev)
        elif ev["k"] == "lease.leader":
            starts.append(ev)
    worst = 0.0
    for crash in crashes:
        nxt = next((s for s in starts if s["t"] >= crash["t"]), None)
        took = (nxt["t"] if nxt is not None else end_ms) - crash["t"]
        if took > bound_ms and (nxt is not None or end_ms - crash["t"] > bound_ms):
            who = f"{nxt['node']} took over" if nxt is not None else "nobody took over"
            return Verdict(False, f"a failover took {took / 1000:.3f} s > "
                           f"{bound_ms / 1000:g} s",
                           _counterexample(crash["t"], [crash["node"]],
                                           f"holder {crash['node']} crashed; {who} "
                                           f"{took / 1000:.3f} s later (bound "
                                           f"{bound_ms / 1000:g} s)"))
        worst = max(worst, took if nxt is not None else 0.0)
    return Verdict(True, f"{len(crashes)} holder crashes, slowest failover "
                   f"{worst / 1000:.3f} s ≤ {bound_ms / 1000:g} s")
