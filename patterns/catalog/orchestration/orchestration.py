"""Orchestration: one orchestrator carries each order through payment, inventory and
shipping, step by step, and knows where every order is.

Covers: the ``orchestrator`` kind (steps in order, a timeout and retries per step, a
durable log of every workflow) and ``participant``s that apply each command once.
Scenario: the ``shop`` starts 20 orders a second; each is charged, its stock reserved and
its shipment scheduled. Inventory refuses 5% of reservations (a ``business`` error, which no
retry fixes) and the orchestrator crashes from 20 s to 25 s. A refused order ends FAILED
with its reason, seen by the orchestrator at once; during the crash nothing starts (≈ 100
starts refused) and every participant idles; after it, the orchestrator reads its open
workflows back from its log, re-sends their commands, and every one of them finishes.

Baseline: choreography (the ``choreography`` pattern's topology: services react to each
other's events through topics, no one holds the flow), where a refused reservation is
retried by the topic and then skipped: the order stays PENDING for ever, every node healthy.
"""

from __future__ import annotations

from typing import Any, ClassVar

from patterns.catalog.orchestration import truth
from patterns.catalog.registry import Pattern, edge, node, register_pattern, verdict_checks
from patterns.components.participant import Participant
from patterns.engine.invariants import Verdict
from patterns.engine.simulation import Simulation

RATE = 20.0  # workflows started per second
REFUSAL_RATE = 0.05  # inventory refuses this share (business)
CRASH_FROM_S, CRASH_UNTIL_S = 20, 25
DURATION_S, DRAIN_S = 60, 20
LINK = {"dist": "lognormal", "median": 2.0, "p99": 15.0}
PARTICIPANTS = ("payment", "inventory", "shipping")
STEPS = ["payment.charge", "inventory.reserve", "shipping.schedule"]
ORCHESTRATOR = "orchestrator"


@register_pattern
class Orchestration(Pattern):
    SLUG = "orchestration"
    NAME = "Orchestration"
    CATEGORY = "orchestration"
    SUMMARY = ("One orchestrator sends each step's command in turn, waits for its reply, "
               "retries what failed for a passing reason, and records where every "
               "workflow is.")
    PROBLEM = ("An order goes through payment, inventory and shipping. Someone must know "
               "which step each order is at, retry a step that timed out, and say clearly "
               "when an order cannot go on, instead of leaving it stuck somewhere.")
    TRADEOFFS = ("The process is in one place: easy to follow, to change and to report on, "
                 "and a refused step is a visible FAILED with its reason. But the "
                 "orchestrator is on every step's path: while it is down nothing moves, it "
                 "must persist its state to survive a crash, and the participants must "
                 "apply a re-sent command once.")
    TEACHING_FAULT = ("Inventory refuses 5% of reservations (a business error), and the "
                      "orchestrator crashes from 20 s to 25 s.")
    BASELINE = ("Choreography: the services react to each other's events with no "
                "orchestrator; a refused reservation is retried by the topic, then skipped, "
                "and the order stays pending for ever while every node looks healthy.")
    # The flow's middle node: the orchestrator here, inventory in the baseline.
    BASELINE_NODE_MAP: ClassVar[dict[str, str]] = {ORCHESTRATOR: "inventory"}
    OBSERVATIONS = (
        "The orchestrator says how many workflows are at each step; each participant shows "
        "the ones waiting on it.",
        "While the orchestrator is down, every participant's throughput drops to zero "
        "together, and the shop's starts fail.",
        "After the crash the orchestrator reads its open workflows back and re-sends their "
        "commands; participants ignore the repeats (duplicates ignored).",
        "Refused orders end FAILED with the reason; none is left open after the drain.",
    )

    def canonical(self) -> dict[str, Any]:
        nodes = [
            node("shop", "client", 80, 185, "Shop", rate_rps=RATE),
            node(ORCHESTRATOR, "orchestrator", 320, 185, "Orchestrator", steps=STEPS,
                 max_attempts=0, retry_max_ms=20_000.0),
        ]
        nodes += [node(pid, "participant", 580, 60 + 125 * i, pid.capitalize())
                  for i, pid in enumerate(PARTICIPANTS)]
        edges = [edge("shop", ORCHESTRATOR, latency_ms=LINK)]
        edges += [edge(ORCHESTRATOR, pid, latency_ms=LINK, deadline_propagation=True)
                  for pid in PARTICIPANTS]
        return {
            "version": 1,
            "title": "Orders through payment, inventory and shipping; the orchestrator "
                     "crashes",
            "pattern": self.SLUG,
            "nodes": nodes,
            "edges": edges,
            "scenario": {"duration_s": DURATION_S, "drain_s": DRAIN_S, "seed": 42, "faults": [
                {"at_s": 0, "until_s": DURATION_S, "target": "inventory",
                 "action": "error_rate", "value": REFUSAL_RATE, "error_class": "business"},
                {"at_s": CRASH_FROM_S, "until_s": CRASH_UNTIL_S, "target": ORCHESTRATOR,
                 "action": "crash"},
            ]},
        }

    def baseline(self, document: dict[str, Any]) -> dict[str, Any]:
        """Choreography with the same load, seed and faults; the orchestrator's faults go to
        inventory, the flow's middle node there."""
        from patterns.catalog.orchestration import choreography

        out = choreography.Choreography().canonical()
        out["title"] = "Choreography: services react to events, no orchestrator"
        out["scenario"] = {}
        return choreography.carry_scenario(document, out, self.SLUG, self.BASELINE_NODE_MAP)

    def figures(self, sim: Simulation) -> dict[str, Any]:
        from patterns.catalog.orchestration import choreography

        if choreography.reactors(sim):
            return choreography.choreography_figures(sim)  # the baseline
        return workflow_figures(sim)

    def checks(self, sim: Simulation) -> list[dict[str, Any]]:
        from patterns.catalog.orchestration import choreography

        if choreography.reactors(sim):
            return choreography.Choreography().checks(sim)
        truths = truth.flows(sim)
        return verdict_checks([
            ("every workflow ends completed or failed", every_workflow_ends(sim)),
            ("each step only after the previous one succeeded",
             steps_in_order(truths, sim)),
            ("each step takes effect once", truth.applied_once(truths)),
        ])


def workflow_figures(sim: Simulation) -> dict[str, Any]:
    orchestrators = truth.orchestrators(sim)
    ended: dict[str, int] = {}
    for _, outcome in sim.flows.ended.values():
        ended[outcome] = ended.get(outcome, 0) + 1
    open_now = sum(len(o.open_flows()) for o in orchestrators)
    started = len(sim.flows.started)
    sent = [e for e in sim.records if e["k"] == "flow.step" and e["status"] == "sent"
            and not e.get("compensation")]
    steps_reached = {(e["flow"], e["step"]) for e in sent}
    busy = sum(o.busy_ms for o in orchestrators)
    workers = sum(o.p["workers"] for o in orchestrators) or 1
    return {
        "workflows_started": started,
        "workflows_completed": ended.get("COMPLETED", 0),
        "workflows_failed": ended.get("FAILED", 0),
        "workflows_open": open_now,
        "workflows_orphaned": started - sum(ended.values()) - open_now,
        "step_attempts_mean": round(len(sent) / len(steps_reached), 4) if steps_reached else 0,
        "step_timeouts": sum(o.step_timeouts for o in orchestrators),
        "commands_resent": sum(o.resent for o in orchestrators),
        "duplicates_ignored": sum(n.duplicates_ignored for n in sim.nodes.values()
                                  if isinstance(n, Participant)),
        "orchestrator_utilisation": round(busy / (sim.duration_ms * workers), 4),
    }


def every_workflow_ends(sim: Simulation) -> Verdict:
    """Started = completed + failed + open, and open = 0 after the drain: nothing orphaned."""
    unfinished = [flow for flow in sim.flows.started if flow not in sim.flows.ended]
    if not unfinished:
        return Verdict(True, f"{len(sim.flows.started)} workflows: every one completed or "
                             "failed")
    held = {f for o in truth.orchestrators(sim) for f in o.open_flows()}
    first = unfinished[0]
    state = "still open" if first in held else "lost by its orchestrator (orphaned)"
    return Verdict(False, f"{len(unfinished)} workflows never ended", {
        "t": sim.flows.started[first], "nodes": [],
        "what": f"workflow {first} is {state}"})


def steps_in_order(truths: list[truth.FlowTruth], sim: Simulation) -> Verdict:
    """A step took effect only once every earlier step had (commands in order)."""
    for o in truth.orchestrators(sim):
        actions = [s.action for s in o.steps]
        for flow in truths:
            if flow.node != o.id:
                continue
            for i, action in enumerate(actions[1:], start=1):
                if action not in flow.applied:
                    continue
                before = actions[i - 1]
                if before not in flow.applied or flow.applied[before] > flow.applied[action]:
                    return Verdict(False, "a step took effect before the previous one", {
                        "t": flow.applied[action], "nodes": [o.id],
                        "what": f"{flow.flow}: {action} took effect before {before}"})
    return Verdict(True, "every step took effect after the previous one")
