"""Flows: business processes that span several nodes (a workflow, a saga, an order).

A flow has an id every message of it carries (``Request.flow``). Whoever drives it (an
orchestrator) or the engine itself says when it starts, each step it takes and how it ends;
each is an event (``flow.start``, ``flow.step``, ``flow.end``) kept in the run's records
whatever the trace level, so checks and figures read flows without asking any node.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from patterns.engine.simulation import Simulation


class Flows:
    def __init__(self, sim: Simulation) -> None:
        self.sim = sim
        self.started: dict[str, float] = {}
        self.ended: dict[str, tuple[float, str]] = {}

    def start(self, flow: str, node: str, **fields: Any) -> None:
        self.started[flow] = self.sim.kernel.now
        self.sim.record({"k": "flow.start", "flow": flow, "node": node, **fields})

    def step(self, flow: str, node: str, step: str, status: str, **fields: Any) -> None:
        """``status``: what happened to the step (sent, ok, failed, timed_out, retry…)."""
        self.sim.record({"k": "flow.step", "flow": flow, "node": node, "step": step,
                         "status": status, **fields})

    def end(self, flow: str, node: str, outcome: str, **fields: Any) -> None:
        self.ended[flow] = (self.sim.kernel.now, outcome)
        self.sim.record({"k": "flow.end", "flow": flow, "node": node, "outcome": outcome,
                         **fields})

    def open(self) -> list[str]:
        """Flows started and not ended, in the order they started."""
        return [flow for flow in self.started if flow not in self.ended]

    def durations(self) -> list[float]:
        """How long each ended flow took, in ms."""
        return [t - self.started[flow] for flow, (t, _) in self.ended.items()
                if flow in self.started]

    def summary(self) -> dict[str, Any]:
        outcomes: dict[str, int] = {}
        for _, outcome in self.ended.values():
            outcomes[outcome] = outcomes.get(outcome, 0) + 1
        return {"started": len(self.started), "open": len(self.open()),
                "ended": dict(sorted(outcomes.items()))}
