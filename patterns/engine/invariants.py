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
