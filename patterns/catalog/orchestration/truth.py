"""What really happened to each flow, read from the participants' commits.

The orchestrator's view of a flow (``flow.end``) is a claim; the participants' committed
transactions (``tx.commit`` events: flow, action, the step it belongs to, and its effect)
are the truth. :func:`flows` classifies every flow that started from the commits alone:

- ``open``: its orchestrator still holds the flow (it is still working on it);
- ``completed``: every step took effect and none was undone;
- ``compensated``: every step that took effect was undone, and the pivot (if any) never took
  effect;
- ``partial``: none of these, and nobody is working on it any more: the inconsistency stays.

So a saga whose orchestrator lost it in a crash, or a flow that failed without undoing its
earlier steps, counts as partial however its orchestrator reported it.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from itertools import pairwise
from typing import Any

from patterns.components.orchestrator import Orchestrator
from patterns.components.participant import APPLIED, NOOP, UNDONE
from patterns.engine.invariants import Verdict
from patterns.engine.simulation import Simulation

COMPLETED, COMPENSATED, OPEN, PARTIAL = "completed", "compensated", "open", "partial"


@dataclass
class FlowTruth:
    flow: str
    started: float
    node: str  # the orchestrator that started it
    # Step action -> when its effect committed (first time) / when it was undone.
    applied: dict[str, float] = field(default_factory=dict)
    undone: dict[str, float] = field(default_factory=dict)
    noops: int = 0
    # How many times a step's effect was applied, or undone, when more than once.
    repeats: dict[str, int] = field(default_factory=dict)
    undo_repeats: dict[str, int] = field(default_factory=dict)
    outcome: str = PARTIAL

    def apply(self, step: str, t: float) -> None:
        if step in self.applied:
            self.repeats[step] = self.repeats.get(step, 1) + 1
        else:
            self.applied[step] = t

    def undo(self, step: str, t: float) -> None:
        if step in self.undone:
            self.undo_repeats[step] = self.undo_repeats.get(step, 1) + 1
        else:
            self.undone[step] = t


def orchestrators(sim: Simulation) -> list[Orchestrator]:
    return [n for n in sim.nodes.values() if isinstance(n, Orchestrator)]


def flows(sim: Simulation, records: Iterable[dict[str, Any]] | None = None) -> list[FlowTruth]:
    """Every flow an orchestrator started, classified as the module docstring says."""
    by_flow: dict[str, FlowTruth] = {}
    for event in sim.records if records is None else records:
        kind = event["k"]
        if kind == "flow.start":
            by_flow[event["flow"]] = FlowTruth(event["flow"], event["t"], event["node"])
        elif kind == "tx.commit" and event.get("flow") in by_flow and "effect" in event:
            truth = by_flow[event["flow"]]
            effect, step = event["effect"], event["of"]
            if effect == APPLIED:
                truth.apply(step, event["t"])
            elif effect == UNDONE:
                truth.undo(step, event["t"])
            elif effect == NOOP:
                truth.noops += 1
    holders = orchestrators(sim)
    open_now = {flow for o in holders for flow in o.open_flows()}
    for o in holders:
        steps = [s.action for s in o.steps]
        pivot = o.steps[o.pivot].action if o.pivot is not None else None
        classify([t for t in by_flow.values() if t.node == o.id], steps, pivot, open_now)
    return list(by_flow.values())


def classify(truths: Iterable[FlowTruth], steps: list[str], pivot: str | None,
             open_now: set[str]) -> None:
    """Set each flow's outcome from what took effect (see the module docstring)."""
    for truth in truths:
        live = [a for a in truth.applied if a not in truth.undone]
        if truth.flow in open_now:
            truth.outcome = OPEN  # someone is still working on it
        elif len(truth.applied) == len(steps) and not truth.undone:
            truth.outcome = COMPLETED
        elif not live and pivot not in truth.applied:
            truth.outcome = COMPENSATED
        else:
            truth.outcome = PARTIAL


def counts(truths: list[FlowTruth]) -> dict[str, int]:
    out = dict.fromkeys((COMPLETED, COMPENSATED, OPEN, PARTIAL), 0)
    for truth in truths:
        out[truth.outcome] += 1
    return out


def every_flow_ends(truths: list[FlowTruth], what: str) -> Verdict:
    """After the drain, every flow is completed or compensated (none partial, none open)."""
    bad = [t for t in truths if t.outcome in (PARTIAL, OPEN)]
    if not bad:
        return Verdict(True, f"{len(truths)} {what}s: every one completed or compensated")
    first = min(bad, key=lambda t: t.started)
    done = ", ".join(f"{a}" + (" (undone)" if a in first.undone else "")
                     for a in first.applied) or "nothing"
    return Verdict(False, f"{len(bad)} {what}s left {first.outcome}", {
        "t": first.started, "nodes": [],
        "what": f"{what} {first.flow} is {first.outcome}: took effect: {done}"})


def compensations_in_reverse(truths: list[FlowTruth], steps: list[str]) -> Verdict:
    """Each compensated step was undone after every later step (Cᵢ commits after Cᵢ₊₁)."""
    order = {action: i for i, action in enumerate(steps)}
    checked = 0
    for truth in truths:
        undone = sorted(truth.undone.items(), key=lambda item: order.get(item[0], 0))
        checked += bool(undone)
        for (earlier, t_earlier), (later, t_later) in pairwise(undone):
            if t_earlier < t_later:
                return Verdict(False, "a compensation committed before a later step's", {
                    "t": t_earlier, "nodes": [],
                    "what": f"{truth.flow}: {earlier} undone at {t_earlier:.1f} ms, before "
                            f"{later} at {t_later:.1f} ms"})
    return Verdict(True, f"{checked} flows undone last step first")


def applied_once(truths: list[FlowTruth]) -> Verdict:
    """No step took effect, or was undone, twice in one flow (re-sent commands and
    compensations are applied once)."""
    for truth in truths:
        for action, times in truth.repeats.items():
            return Verdict(False, "a step took effect twice", {
                "t": truth.applied[action], "nodes": [],
                "what": f"{truth.flow}: {action} applied {times} times"})
        for action, times in truth.undo_repeats.items():
            return Verdict(False, "a step was undone twice", {
                "t": truth.undone[action], "nodes": [],
                "what": f"{truth.flow}: {action} undone {times} times"})
    return Verdict(True, "every step took effect, and was undone, at most once per flow")
