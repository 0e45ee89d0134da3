"""Saga: a business transaction over several services' databases, undone step by step when
a later step fails, with no distributed lock and no two-phase commit.

Covers: the ``saga_orchestrator`` kind (steps with compensations, a pivot, a durable saga
log) and ``participant``s, each with its own transactional database and an inbox that
applies a re-sent command once.
Scenario: the ``shop`` starts 20 sagas a second. Each runs T1 ``orders.create`` (the order
row, APPROVAL_PENDING), T2 ``inventory.reserve`` (one unit of stock), T3
``payment.authorize`` (the pivot, lognormal median 100 ms, p99 400 ms), T4
``shipping.schedule`` and T5 ``orders.approve``. Payment declines 20% (a ``business``
error) and the orchestrator crashes from 20 s to 25 s. A declined saga is compensated,
last step first (C2 ``inventory.release``, then C1 ``orders.reject``); the orchestrator
reads its open sagas back from its log after the crash and re-sends their current
commands, which the participants' inboxes apply once. After the drain every saga is
completed or compensated, and the reserved units match the completed sagas.

Baseline: the same steps with no compensations and an in-memory coordinator: every
declined saga leaves its order pending and its unit reserved (``leaked_units``), and the
sagas in flight at the crash are lost half done.
"""

from __future__ import annotations

from typing import Any

from patterns.catalog.orchestration import truth
from patterns.catalog.registry import Pattern, edge, node, register_pattern, verdict_checks
from patterns.components.participant import OUT_OF_STOCK, Participant
from patterns.engine.invariants import Verdict
from patterns.engine.metrics import quantile_sorted
from patterns.engine.simulation import Simulation

RATE = 20.0  # sagas started per second
DECLINE_RATE = 0.2  # payment declines this share (business)
CRASH_FROM_S, CRASH_UNTIL_S = 20, 25  # the orchestrator is down
DURATION_S, DRAIN_S = 60, 20
STOCK = 100_000  # units in stock: plenty (scarce stock shows dirty reads)
LINK = {"dist": "lognormal", "median": 2.0, "p99": 15.0}
PARTICIPANTS = (
    # (id, label, service time)
    ("orders", "Orders", {"dist": "exponential", "mean": 10.0}),
    ("inventory", "Inventory", {"dist": "exponential", "mean": 10.0}),
    ("payment", "Payment (pivot)", {"dist": "lognormal", "median": 100.0, "p99": 400.0}),
    ("shipping", "Shipping", {"dist": "exponential", "mean": 10.0}),
)
ORCHESTRATOR = "saga"


@register_pattern
class Saga(Pattern):
    SLUG = "saga"
    NAME = "Saga"
    CATEGORY = "orchestration"
    SUMMARY = ("A long business transaction is a sequence of local transactions, each in "
               "its own service's database; when one fails, the ones already committed are "
               "undone by compensating transactions, last first.")
    PROBLEM = ("An order must create a row, reserve stock, take a payment and schedule a "
               "shipment, each in another service's database. No transaction spans them, "
               "and a failure halfway must not leave an order pending for ever with its "
               "stock held.")
    TRADEOFFS = ("Sagas give atomicity in the end (every saga completes or is undone) but "
                 "no isolation: others see a reservation that is later released. Every step "
                 "needs a compensation that always succeeds, every participant must apply a "
                 "re-sent command once, and the coordinator must persist its progress, or a "
                 "crash leaves sagas half done.")
    TEACHING_FAULT = ("Payment declines 20% of authorisations (a business error), and the "
                      "orchestrator crashes from 20 s to 25 s.")
    BASELINE = ("The same steps with no compensations and an in-memory coordinator: "
                "declined orders stay pending holding their stock, and the sagas in flight "
                "at the crash are lost half done.")
    OBSERVATIONS = (
        "Compensations (orange) travel back up the steps: inventory.release, then "
        "orders.reject; the participants say how many sagas are at their step or undoing it.",
        "Reserved units track completed sagas exactly; in the baseline they drift up by "
        "every declined order (leaked units).",
        "After the crash the orchestrator reads its open sagas back and re-sends their "
        "commands; the participants' inboxes ignore the repeats.",
        "The check 'every saga ends completed or compensated' is evaluated on what the "
        "participants committed, not on what the orchestrator believes.",
    )

    def canonical(self) -> dict[str, Any]:
        nodes = [
            node("shop", "client", 80, 255, "Shop", rate_rps=RATE),
            node(ORCHESTRATOR, "saga_orchestrator", 320, 255, "Saga orchestrator"),
        ]
        for i, (pid, label, service) in enumerate(PARTICIPANTS):
            params: dict[str, Any] = {"service_time_ms": service}
            if pid == "inventory":
                params["stock"] = STOCK
            # The participants in step order, top to bottom: compensations climb back up.
            nodes.append(node(pid, "participant", 580, 60 + 130 * i, label, **params))
        edges = [edge("shop", ORCHESTRATOR, latency_ms=LINK)]
        # Commands carry their deadline: a participant drops one its orchestrator gave up on
        # instead of working on it (without that, a slow spell turns retries into a storm).
        edges += [edge(ORCHESTRATOR, pid, latency_ms=LINK, deadline_propagation=True)
                  for pid, _, _ in PARTICIPANTS]
        return {
            "version": 1,
            "title": "Order saga: payment declines 20%, the orchestrator crashes",
            "pattern": self.SLUG,
            "nodes": nodes,
            "edges": edges,
            "scenario": {"duration_s": DURATION_S, "drain_s": DRAIN_S, "seed": 42, "faults": [
                {"at_s": 0, "until_s": DURATION_S, "target": "payment",
                 "action": "error_rate", "value": DECLINE_RATE, "error_class": "business"},
                {"at_s": CRASH_FROM_S, "until_s": CRASH_UNTIL_S, "target": ORCHESTRATOR,
                 "action": "crash"},
            ]},
        }

    def baseline(self, document: dict[str, Any]) -> dict[str, Any]:
        document["title"] = "No compensations, in-memory coordinator"
        for item in document["nodes"]:
            if item["kind"] == "saga_orchestrator":
                item["params"].update(compensate=False, durable=False)
        return document

    def figures(self, sim: Simulation) -> dict[str, Any]:
        return saga_figures(sim)

    def checks(self, sim: Simulation) -> list[dict[str, Any]]:
        truths = truth.flows(sim)
        steps = [s.action for o in truth.orchestrators(sim) for s in o.steps]
        return verdict_checks([
            ("every saga ends completed or compensated", truth.every_flow_ends(truths, "saga")),
            ("compensations run last step first", truth.compensations_in_reverse(truths, steps)),
            ("each step takes effect once", truth.applied_once(truths)),
            ("reserved units match completed sagas", units_match_completed(sim, truths)),
        ])


def saga_figures(sim: Simulation) -> dict[str, Any]:
    truths = truth.flows(sim)
    outcomes = truth.counts(truths)
    participants = [n for n in sim.nodes.values() if isinstance(n, Participant)]
    # Units out of stock that no completed saga accounts for (read from the stock itself).
    completed = sum(1 for t in truths if t.outcome == truth.COMPLETED)
    held = sum(max(0, p.p["stock"] - p.stock_free - completed) for p in stock_holders(sim))
    durations = sorted(sim.flows.durations())
    return {
        "sagas_started": len(truths),
        "sagas_completed": outcomes[truth.COMPLETED],
        "sagas_compensated": outcomes[truth.COMPENSATED],
        "sagas_partial": outcomes[truth.PARTIAL],
        "sagas_open": outcomes[truth.OPEN],
        "compensations": sum(len(t.undone) + t.noops for t in truths),
        "noop_compensations": sum(t.noops for t in truths),
        "compensation_retries": sum(
            1 for e in sim.records if e["k"] == "flow.step" and e.get("compensation")
            and e["status"] == "failed"),
        "duplicates_ignored": sum(p.duplicates_ignored for p in participants),
        "leaked_units": held,
        "dirty_rejections": dirty_rejections(sim, truths),
        "commands_resent": sum(o.resent for o in truth.orchestrators(sim)),
        "saga_duration_ms_p99": round(quantile_sorted(durations, 0.99), 3),
    }


def dirty_rejections(sim: Simulation, truths: list[truth.FlowTruth]) -> int:
    """Steps refused for want of stock while a unit of that same participant was held by a
    saga that was later compensated: what a saga's missing isolation costs others (they
    read a value that was never committed for good)."""
    holds: dict[str, list[tuple[float, float]]] = {}
    for t in truths:
        for action, released in t.undone.items():
            holds.setdefault(action.split(".", 1)[0], []).append((t.applied[action], released))
    count = 0
    for event in sim.records:
        if event["k"] == "tx.commit" and event.get("reason") == OUT_OF_STOCK and any(
                held <= event["t"] < released for held, released in holds.get(event["node"], ())):
            count += 1
    return count


def stock_holders(sim: Simulation) -> list[Participant]:
    return [n for n in sim.nodes.values() if isinstance(n, Participant) and n.p["stock"]]


def units_match_completed(sim: Simulation, truths: list[truth.FlowTruth]) -> Verdict:
    """Reserved units equal the sagas that completed with that participant's step: no unit
    leaked by a saga left half done, none taken or given back twice (read from the stock,
    not from the sagas)."""
    for holder in stock_holders(sim):
        reserved = holder.p["stock"] - holder.stock_free
        completed = sum(1 for t in truths if t.outcome == truth.COMPLETED
                        and any(a.split(".", 1)[0] == holder.id for a in t.applied))
        if reserved != completed:
            return Verdict(False, f"{holder.id}: {reserved} units reserved for {completed} "
                                  "completed sagas", {
                "t": sim.now, "nodes": [holder.id],
                "what": f"{holder.id} holds {reserved} units, but {completed} sagas "
                        f"completed ({reserved - completed:+d})"})
    return Verdict(True, "reserved units match completed sagas")
