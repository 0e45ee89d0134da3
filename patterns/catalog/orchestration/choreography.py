"""Choreography: services react to each other's events on a log; no one holds the flow.

Covers: ``reactor``s (a local transaction per event, an inbox, an outbox relayed in
process), the ``event_log`` they all read and write (3 partitions keyed by order id), and a
passive ``flow_monitor``.
Scenario: the ``shop`` places 20 orders a second with ``orders``, which saves the order and
answers at once (202), emitting OrderPlaced. ``payment`` reacts with PaymentTaken,
``inventory`` with StockReserved, ``shipping`` with ShipmentScheduled, and ``orders`` marks
the order COMPLETED. ``notify`` reads OrderPlaced too and changes nothing for the others.
Inventory crashes from 20 s to 40 s: nobody else notices. The shop sees no error, payment
keeps taking 20 payments a second, and inventory's backlog on the log climbs to ≈ 400
events, drained in seconds once it is back; no event is lost, and the events processed
again after its restart (it had not committed their offsets) change nothing, thanks to its
inbox.

Baseline: orchestration, with the orchestrator as the flow's middle node: the same crash
there stops every participant and fails ≈ 400 orders at the door.
"""

from __future__ import annotations

import copy
from typing import Any, ClassVar

from patterns.catalog.orchestration import orchestration
from patterns.catalog.registry import (
    Pattern,
    edge,
    node,
    register_pattern,
    verdict_checks,
)
from patterns.components.reactor import FlowMonitor, Reactor
from patterns.engine.invariants import Verdict
from patterns.engine.simulation import Simulation

RATE = 20.0  # orders a second
CRASH_FROM_S, CRASH_UNTIL_S = 20, 40
DURATION_S, DRAIN_S = 60, 20
LOG = "order_events"
SERVICE = {"dist": "exponential", "mean": 10.0}
LINK = {"dist": "lognormal", "median": 2.0, "p99": 15.0}
# Reactors: (id, label, rules, x, y)
REACTORS = (
    ("orders", "Orders", ["start>OrderPlaced", "ShipmentScheduled>!"], 250, 60),
    ("payment", "Payment", ["OrderPlaced>PaymentTaken"], 250, 170),
    ("inventory", "Inventory", ["PaymentTaken>StockReserved"], 250, 280),
    ("shipping", "Shipping", ["StockReserved>ShipmentScheduled"], 250, 390),
    ("notify", "Notify", ["OrderPlaced>"], 250, 500),
)


@register_pattern
class Choreography(Pattern):
    SLUG = "choreography"
    NAME = "Choreography"
    CATEGORY = "orchestration"
    SUMMARY = ("Each service reacts to the events of the others (a local transaction, "
               "then its own event); the process emerges from the reactions, and no node "
               "knows where an order is.")
    PROBLEM = ("An order goes through payment, inventory and shipping. Services must not "
               "stop when one of them is down, nor depend on a central coordinator that "
               "every step waits on.")
    TRADEOFFS = ("No single point of failure and loose coupling: a down service only "
                 "builds a backlog, and a new subscriber changes nothing for the others. "
                 "But nobody holds the flow: an event skipped after its retries leaves the "
                 "order pending for ever with every error counter at zero, so a monitor "
                 "must watch the flows, and every service needs an inbox and an outbox.")
    TEACHING_FAULT = "Inventory crashes from 20 s to 40 s."
    BASELINE = ("Orchestration, where the same crash hits the orchestrator, the flow's "
                "middle: every participant stops and the shop's orders fail.")
    # The flow's middle node: inventory here, the orchestrator in the baseline.
    BASELINE_NODE_MAP: ClassVar[dict[str, str]] = {"inventory": orchestration.ORCHESTRATOR}
    OBSERVATIONS = (
        "While inventory is down, payment keeps its 20 events a second and the shop sees "
        "no error; inventory's lag on the log climbs linearly.",
        "Once inventory is back its backlog drains in seconds; the events it processes "
        "again are skipped by its inbox (duplicates ignored).",
        "The flow monitor flags the orders waiting on inventory once they have been silent "
        "10 s (they complete later); inject a business error rate on inventory and it "
        "flags the skipped ones for good, which no error counter shows.",
    )

    def canonical(self) -> dict[str, Any]:
        nodes, edges = event_driven(
            LOG, "Order events", 3,
            [(rid, label, x, y, {"rules": rules, "service_time_ms": SERVICE})
             for rid, label, rules, x, y in REACTORS], monitor_at=(40, 400))
        return {
            "version": 1,
            "title": "Orders by events: inventory crashes for 20 s",
            "pattern": self.SLUG,
            "nodes": nodes,
            "edges": edges,
            "scenario": {"duration_s": DURATION_S, "drain_s": DRAIN_S, "seed": 42, "faults": [
                {"at_s": CRASH_FROM_S, "until_s": CRASH_UNTIL_S, "target": "inventory",
                 "action": "crash"},
            ]},
        }

    def baseline(self, document: dict[str, Any]) -> dict[str, Any]:
        """Orchestration with the same load, seed and faults, the middle node's faults on
        the orchestrator."""
        out = orchestration.Orchestration().canonical()
        out["title"] = "Orchestration: the orchestrator is the flow's middle node"
        return carry_scenario(document, out, self.SLUG, self.BASELINE_NODE_MAP)

    def figures(self, sim: Simulation) -> dict[str, Any]:
        if not any(isinstance(n, Reactor) for n in sim.nodes.values()):
            return orchestration.workflow_figures(sim)  # the baseline
        return choreography_figures(sim)

    def checks(self, sim: Simulation) -> list[dict[str, Any]]:
        if not any(isinstance(n, Reactor) for n in sim.nodes.values()):
            return orchestration.Orchestration().checks(sim)
        return verdict_checks([
            ("no event lost", no_event_lost(sim)),
            ("each event takes effect once per service", applied_once(sim)),
            ("the monitor flags every flow left stalled", monitor_flags_stalled(sim)),
        ])


def event_driven(log: str, log_label: str, partitions: int,
                 services: list[tuple[str, str, float, float, dict[str, Any]]],
                 monitor_at: tuple[float, float], **monitor: Any
                 ) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Nodes and edges of an event-driven system: the shop calls the first service; every
    service (id, label, x, y, params) reacts on one event log, which a flow monitor reads
    from the start too."""
    nodes = [node("shop", "client", 40, 60, "Shop", rate_rps=RATE),
             node(log, "event_log", 560, 280, log_label, partitions=partitions)]
    edges = [edge("shop", services[0][0], latency_ms=LINK)]
    for sid, label, x, y, params in services:
        nodes.append(node(sid, "reactor", x, y, label, **params,
                          auto_offset_reset="earliest"))
        edges.append(edge(sid, log, latency_ms=LINK))
    nodes.append(node("monitor", "flow_monitor", *monitor_at, "Flow monitor", **monitor,
                      auto_offset_reset="earliest"))
    edges.append(edge("monitor", log, latency_ms=LINK))
    return nodes, edges


def carry_scenario(source: dict[str, Any], target: dict[str, Any], slug: str,
                   node_map: dict[str, str]) -> dict[str, Any]:
    """``target`` (another pattern's topology) with ``source``'s scenario: the same seed,
    load and faults, each fault moved to the node ``node_map`` names, and dropped when
    the other topology has nothing by that id. Runs under ``slug``, whose figures and
    checks know both topologies."""
    scenario = copy.deepcopy(source["scenario"])
    ids = {n["id"] for n in target["nodes"]} | {e["id"] for e in target["edges"]}
    faults = []
    for fault in scenario.get("faults", []):
        moved = node_map.get(fault["target"], fault["target"])
        if moved in ids:
            faults.append({**fault, "target": moved})
    scenario["faults"] = faults
    target["scenario"] = scenario
    target["pattern"] = slug
    return target


def reactors(sim: Simulation) -> list[Reactor]:
    return [n for n in sim.nodes.values() if isinstance(n, Reactor)]


def monitors(sim: Simulation) -> list[FlowMonitor]:
    return [n for n in sim.nodes.values() if isinstance(n, FlowMonitor)]


def choreography_figures(sim: Simulation) -> dict[str, Any]:
    flows = sim.flows
    ended = len(flows.ended)
    ledger = sim.ledger.counts()
    return {
        "flows_started": len(flows.started),
        "flows_completed": ended,
        "flows_stalled": len(flows.started) - ended,
        "flows_flagged": sum(len(m.flagged) for m in monitors(sim)),
        "redeliveries": sum(r.redeliveries for r in reactors(sim)),
        "duplicates_ignored": sum(r.duplicates_ignored for r in reactors(sim)),
        "events_skipped": sum(r.skipped for r in reactors(sim)),
        "events_lost": ledger.get("lost", 0),
        "backlog_max": max((r.backlog_max for r in reactors(sim)), default=0),
        "flagged_then_completed": sum(1 for m in monitors(sim) for f in m.flagged
                                      if f in flows.ended),
        "user_errors": sim.outcomes["failed"] + sim.outcomes["rejected"]
        + sim.outcomes["timed_out"],
    }


def no_event_lost(sim: Simulation) -> Verdict:
    """Every event committed by a service reached the service that carries its flow on (or
    is still on its way): none vanished (the ledger's ground truth)."""
    lost = sim.ledger.lost()
    if not lost:
        return Verdict(True, f"{len(sim.ledger.messages)} events, none lost")
    first = min(lost, key=lambda msg: msg.produced)
    return Verdict(False, f"{len(lost)} events lost", {
        "t": first.produced, "nodes": [first.producer],
        "what": f"{first.producer} committed {first.msg_id} and it never reached anyone"})


def applied_once(sim: Simulation) -> Verdict:
    """No service applied the same event of a flow twice (redeliveries change nothing)."""
    seen: dict[tuple[str, str, str], float] = {}
    for event in sim.records:
        if event["k"] != "tx.commit" or "on" not in event:
            continue
        key = (event["node"], event["flow"], event["on"])
        if key in seen:
            return Verdict(False, "an event took effect twice", {
                "t": event["t"], "nodes": [event["node"]],
                "what": f"{event['node']} applied {event['on']} of {event['flow']} again "
                        f"(first at {seen[key] / 1000:.3f} s)"})
        seen[key] = event["t"]
    return Verdict(True, f"{len(seen)} effects, each once")


def monitor_flags_stalled(sim: Simulation) -> Verdict:
    """Every flow that never completed was flagged by the monitor (a flow only delayed, by
    a crashed service, may be flagged too: it was silent that long)."""
    watchers = monitors(sim)
    if not watchers:
        return Verdict(True, "no monitor in this topology")
    flagged = {flow for m in watchers for flow in m.flagged}
    stalled = [flow for flow in sim.flows.started if flow not in sim.flows.ended]
    missed = [flow for flow in stalled if flow not in flagged]
    if missed:
        return Verdict(False, f"{len(missed)} stalled flows never flagged", {
            "t": sim.flows.started[missed[0]], "nodes": [w.id for w in watchers],
            "what": f"{missed[0]} stalled and the monitor never said so"})
    return Verdict(True, f"{len(stalled)} flows stalled, every one flagged "
                         f"({len(flagged)} flagged in all)")
